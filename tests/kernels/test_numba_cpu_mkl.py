"""numba-cpu's second per-step product, MKL's packed GEMM: where it serves, that it computes
what the tiles compute bit for bit, and a clear refusal where it cannot serve."""
import numba
import numpy as np
import pytest

from grubench.case import Case
from grubench.kernels import numba_cpu
from grubench.kernels.numba_cpu import mkl

MKL_WHY = mkl.library()[1]
needs_mkl = pytest.mark.skipif(MKL_WHY is not None, reason=f"{MKL_WHY}")

CELLS = [("gru", "reset_after"), ("gru", "reset_before"), ("lstm", None)]


@pytest.fixture
def threads(request):
    before = numba.get_num_threads()
    numba.set_num_threads(request.param)
    yield request.param
    numba.set_num_threads(before)


@needs_mkl
@pytest.mark.parametrize("threads", [1, 2], indirect=True)
@pytest.mark.parametrize("cell,variant", CELLS)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_mkl_computes_what_the_tiles_compute(threads, cell, variant, dtype):
    # B = 16 with 64 units: two threads each step 8 whole sequences, as MKL needs
    case = Case(cell, 6, 16, 5, 64, variant=variant, mode="training", dtype=dtype,
                variable_lengths=True)
    args = case.make_args(seed=2)
    assert numba_cpu.usable_products(args) == ("tiles", "mkl")
    results = {}
    for product in ("tiles", "mkl"):
        prepared = numba_cpu.prepare(args, product)
        assert prepared.product == product
        results[product] = prepared.to_numpy(prepared.training_step())
        assert all(np.array_equal(a, b) for a, b in
                   zip(results[product][0], prepared.to_numpy(prepared.forward())))
    (outputs_t, grads_t), (outputs_m, grads_m) = results["tiles"], results["mkl"]
    for tiles, mkl in zip(outputs_t, outputs_m):
        np.testing.assert_array_equal(tiles, mkl)
    for name in grads_t:
        np.testing.assert_array_equal(grads_t[name], grads_m[name], err_msg=name)


@needs_mkl
def test_mkl_is_really_called():
    # MKL's packed weights of another matrix change the result: the path is not the tiles'
    args = Case("gru", 4, 3, 5, 16).make_args(seed=1)
    prepared = numba_cpu.prepare(args, "mkl")
    before = prepared.to_numpy(prepared.forward())[0]
    prepared.mkl_w_hh = mkl.packed_weights(np.zeros_like(args.w_hh), [3])
    assert not np.array_equal(before, prepared.to_numpy(prepared.forward())[0])


@needs_mkl
@pytest.mark.parametrize("threads", [2], indirect=True)
def test_mkl_refused_where_threads_split_units(threads):
    # B = 2 < 2 threads * PANEL_ROWS with a step big enough to share: units are split
    args = Case("gru", 3, 2, 8, 256).make_args()
    assert numba_cpu.usable_products(args) == ("tiles",)
    with pytest.raises(ValueError, match=r"product 'mkl' is not usable here \(the threads "
                                         r"split the hidden units \(a small batch\)\); usable: tiles"):
        numba_cpu.prepare(args, "mkl")


def test_without_mkl_only_the_tiles(monkeypatch):
    monkeypatch.setattr(mkl, "library", lambda: (None, "MKL is not installed"))
    args = Case("lstm", 3, 4, 5, 8).make_args()
    assert numba_cpu.usable_products(args) == ("tiles",)
    with pytest.raises(ValueError, match=r"\(MKL is not installed\); usable: tiles"):
        numba_cpu.prepare(args, "mkl")
    with pytest.raises(ValueError, match=r"'blas' is not usable here \(unknown product\)"):
        numba_cpu.prepare(args, "blas")
