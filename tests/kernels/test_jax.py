"""The jax backend against the float64 reference through the contract's prepared path:
every variant, lengths 0 and T, float64 and float32, forward and every gradient.

Each (variant, dtype, shape, lengths or not) compiles once, a few seconds on a busy
machine: the cases share a handful of shapes so that CI compiles little."""
import dataclasses
import sys

import numpy as np
import pytest

from grubench import backends
from grubench.kernels import jax as jax_backend
from grubench.kernels.contract import BackendUnavailable
from grubench.case import Case
from oracle import assert_matches_reference, reference_step

jax = pytest.importorskip("jax", reason="the peers extra is not installed")

T, B = 7, 4
LENGTHS = [0, T, 3, 0]          # empty and full sequences in one batch
CASES = [
    Case("gru", T, B, 3, 5, dtype="float64", variable_lengths=True),
    Case("gru", T, B, 3, 5, dtype="float64", variant="reset_before", variable_lengths=True),
    Case("lstm", T, B, 3, 5, dtype="float64", variable_lengths=True),
    Case("gru", 6, 2, 8, 8, dtype="float32"),
    Case("gru", 6, 2, 8, 8, dtype="float32", variant="reset_before"),
    Case("lstm", 6, 2, 8, 8, dtype="float32"),
]


def make_args(case, seed=7):
    args = case.make_args(seed=seed, with_grads=True)
    if case.variable_lengths:
        args.lengths[:] = LENGTHS
    return args


@pytest.mark.parametrize("case", CASES, ids=lambda p: f"{p.cell}-{p.reset_after}-"
                         f"{p.variable_lengths}-{p.dtype}")
def test_training_step_and_forward_match_reference(case):
    args = make_args(case)
    expected = reference_step(args)
    prepared = jax_backend.prepare(args)
    result = prepared.training_step()
    prepared.synchronize()
    outputs, grads = prepared.to_numpy(result)
    assert_matches_reference(outputs, grads, args, expected)
    assert_matches_reference(prepared.to_numpy(prepared.forward()), None, args, expected)


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_padding_never_reaches_outputs_or_gradients(cell):
    """NaN past each length (ONNX never reads it, nor does the reference): outputs and
    every gradient stay finite and equal the reference's."""
    args = make_args(next(p for p in CASES if p.cell == cell and p.variable_lengths))
    for b, length in enumerate(args.lengths):
        args.x[length:, b] = np.nan
    prepared = jax_backend.prepare(args)
    outputs, grads = prepared.to_numpy(prepared.training_step())
    assert all(np.isfinite(g).all() for g in grads.values())
    assert_matches_reference(outputs, grads, args)


def test_all_sequences_empty_pass_the_state_through():
    args = dataclasses.replace(make_args(CASES[0]), lengths=np.zeros(B, dtype=np.int64))
    prepared = jax_backend.prepare(args)
    (y, h_n), grads = prepared.to_numpy(prepared.training_step())
    assert not y.any() and np.array_equal(h_n, args.h0)
    assert np.array_equal(grads["h0"], args.dh_n) and not grads["w_hh"].any()


def test_cases_of_one_shape_share_one_compilation():
    first, second = (jax_backend.prepare(make_args(CASES[0], seed)) for seed in (1, 2))
    assert first._forward is second._forward
    first.forward()
    compiled_shapes = first._forward._cache_size()
    second.forward()
    assert first._forward._cache_size() == compiled_shapes


def test_saved_bytes_are_the_residuals_and_synchronize_waits():
    args = make_args(CASES[3])
    prepared = jax_backend.prepare(args)
    assert prepared.saved_bytes is None
    outputs, vjp = prepared.forward_train()
    # at least the hidden state of every step: T*B*H float32 values
    assert prepared.saved_bytes >= args.T * args.B * args.H * 4
    prepared.synchronize()
    assert prepared._pending is None
    assert all(leaf.is_ready() for leaf in jax.tree_util.tree_leaves(outputs))


def test_registry_declares_no_memory_counter():
    # XLA's allocator reuses pages it holds: the resident set does not see its outputs
    assert backends.get("jax").entry.memory == "none"
    assert backends.get("jax").entry.unsupported == {}


def test_missing_package_makes_it_unavailable_with_the_reason(monkeypatch):
    monkeypatch.setitem(sys.modules, "jax", None)     # import raises ImportError
    jax_backend._jax.cache_clear()
    try:
        ok, why = jax_backend.availability()
        assert not ok and "peers extra" in why
        with pytest.raises(BackendUnavailable, match="peers extra"):
            jax_backend.prepare(make_args(CASES[3]))
    finally:
        jax_backend._jax.cache_clear()


def test_no_gpu_says_why():
    if any(d.platform == "gpu" for d in jax.devices()):
        pytest.skip("a GPU is present")
    ok, why = jax_backend.availability("cuda")
    assert not ok and "no gpu device" in why


def test_version_names_jax():
    assert jax_backend.version().startswith(f"jax {jax.__version__}")
