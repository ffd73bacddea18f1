"""Accuracy: the worst array is named, errors match hand-computed values, the reference
cache computes once and honours its size cap."""
import numpy as np
import pytest

from grubench import accuracy, worker
from grubench.case import Case
from grubench.tolerances import (FLOAT32_GRADIENT, FLOAT64, FORWARD_REL_ERR_TARGET,
                                  GRADIENT_REL_ERR_TARGET)


def test_compare_reports_the_worst_array():
    reference = {"y": np.array([1.0, 2.0]), "h_n": np.array([3.0, 4.0])}
    result = {"y": np.array([1.0, 2.5]), "h_n": np.array([3.0, 4.0]), "extra": np.zeros(1)}
    max_abs, rel, worst = accuracy.compare(result, reference)
    assert max_abs == 0.5
    assert rel == pytest.approx(0.5 / np.sqrt(5.0))
    assert worst == "y"


def test_compare_refuses_a_missing_array():
    with pytest.raises(ValueError, match="result lacks grad_x"):
        accuracy.compare({"y": np.zeros(1)}, {"y": np.zeros(1), "grad_x": np.zeros(1)})


def test_named_arrays_for_training_results():
    outputs = (np.zeros(1), np.ones(1), np.full(1, 2.0))
    named = accuracy.named_arrays("lstm", (outputs, {"x": np.zeros(2)}), training=True)
    assert list(named) == ["y", "h_n", "c_n", "grad_x"]


def test_as_float64_casts_every_array_and_keeps_the_values():
    args = Case("lstm", 3, 2, 4, 5).make_args(1, with_grads=True)
    wide = accuracy.as_float64(args)
    for name in ("x", "h0", "c0", "w_ih", "w_hh", "b_ih", "b_hh", "dy", "dh_n", "dc_n"):
        assert getattr(wide, name).dtype == np.float64
        np.testing.assert_array_equal(getattr(wide, name), getattr(args, name))


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_reference_is_close_to_a_float32_run_of_the_same_inputs(cell):
    from grubench import backends

    problem = Case(cell, 5, 3, 4, 6, mode="training")
    reference = accuracy.compute_reference(problem, seed=2, training=True)
    prepared = backends.get("numpy").prepare(problem.make_args(2))
    arrays = accuracy.named_arrays(cell, prepared.to_numpy(prepared.training_step()), True)
    _, rel, _ = accuracy.compare(arrays, reference)
    assert rel < FLOAT32_GRADIENT.rtol
    # a different seed gives different inputs: the comparison must see it
    other = accuracy.compute_reference(problem, seed=3, training=True)
    assert accuracy.compare(arrays, other)[1] > 0.1


def test_reference_cache_computes_once_and_caps_sizes(tmp_path, monkeypatch):
    cache = accuracy.ReferenceCache(tmp_path, max_flops=1e6)
    small = Case("gru", 4, 2, 3, 5)
    first = cache.ensure(small, 0, training=False)
    np.testing.assert_array_equal(accuracy.load(first)["y"],
                                  accuracy.compute_reference(small, 0, False)["y"])
    cache.close()

    def no_worker(*_args, **_kwargs):
        raise AssertionError("computed again")

    monkeypatch.setattr(worker, "Worker", no_worker)
    assert cache.ensure(small, 0, training=False) == first      # cached: no worker
    monkeypatch.undo()
    assert cache.ensure(small, 0, training=True) != first     # other inputs: other file
    assert cache.ensure(small, 1, training=False) != first    # another seed: other inputs
    cache.close()
    assert set(accuracy.load(first)) == {"y", "h_n"}
    assert cache.skip_reason(small) is None
    big = Case("gru", 100, 64, 512, 512)
    assert "only up to 1e+06 training FLOPs" in cache.skip_reason(big)
    with pytest.raises(accuracy.ReferenceSkipped, match="only up to 1e"):
        cache.ensure(big, 0, training=True)


def test_a_reference_over_the_timeout_is_killed_and_noted(tmp_path):
    """FLOPs do not bound the reference's time: 20,000 steps of size 1 are few FLOPs and
    seconds of Python. The timeout does, and the note says so (once per problem)."""
    cache = accuracy.ReferenceCache(tmp_path, timeout=120)
    small = Case("gru", 3, 1, 1, 1)
    assert cache.ensure(small, 0, training=False).exists()    # its worker has started
    cache.timeout = 0.5
    long = Case("gru", 20000, 1, 1, 1)
    with pytest.raises(accuracy.ReferenceSkipped, match="took longer than the case timeout"):
        cache.ensure(long, 0, training=True)
    with pytest.raises(accuracy.ReferenceSkipped):      # remembered: not tried again
        cache.ensure(long, 0, training=True)
    assert not cache.path(long, 0, True).exists()
    cache.timeout = 120
    assert cache.ensure(small, 0, training=True).exists()     # a fresh worker
    cache.close()


def test_rel_err_targets():
    assert accuracy.rel_err_target("float32", training=False) == FORWARD_REL_ERR_TARGET
    assert accuracy.rel_err_target("float64", training=True) < 1e-8


def test_compare_names_the_first_of_equally_wrong_arrays():
    reference = {"y": np.array([2.0]), "h_n": np.array([4.0])}
    result = {"y": np.array([3.0]), "h_n": np.array([6.0])}       # both 50% off
    assert accuracy.compare(result, reference) == (2.0, 0.5, "y")


def test_compare_of_an_exact_result_is_zero_error():
    reference = {"y": np.array([1.0, -2.0])}
    assert accuracy.compare(dict(reference), reference) == (0.0, 0.0, "y")


def test_compare_lists_every_missing_array():
    with pytest.raises(ValueError, match=r"^result lacks grad_h0, grad_x$"):
        accuracy.compare({"y": np.zeros(1)}, {"y": np.zeros(1), "grad_x": np.zeros(1),
                                              "grad_h0": np.zeros(1)})


def test_rel_err_target_of_float32_training_is_the_gradient_target():
    assert accuracy.rel_err_target("float32", training=True) == GRADIENT_REL_ERR_TARGET
    assert accuracy.rel_err_target("float64", training=False) == FLOAT64.rtol


def test_reference_cap_is_inclusive_and_says_why(tmp_path):
    problem = Case("gru", 4, 2, 3, 5)        # 3 * 2*3*5*8*2*4 = 5760 training FLOPs
    assert accuracy.ReferenceCache(tmp_path, max_flops=5760).skip_reason(problem) is None
    assert accuracy.ReferenceCache(tmp_path, max_flops=5759).skip_reason(problem) == (
        "accuracy not measured: the float64 reference is computed only up to 6e+03 "
        "training FLOPs")
