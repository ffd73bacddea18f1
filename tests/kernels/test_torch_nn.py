"""The torch backends against the float64 reference, through the contract's prepared path."""
import dataclasses

import numpy as np
import pytest

from grubench.kernels import torch_nn
from grubench.kernels.contract import BackendUnavailable
from grubench.case import Case
from oracle import assert_matches_reference, reference_step

torch = pytest.importorskip("torch")

CASES = [
    Case("gru", 5, 3, 4, 6, dtype="float64"),
    Case("gru", 5, 3, 4, 6, dtype="float64", variant="reset_before"),
    Case("gru", 7, 4, 3, 5, dtype="float64", variable_lengths=True),
    Case("gru", 7, 4, 3, 5, dtype="float64", variant="reset_before", variable_lengths=True),
    Case("lstm", 5, 3, 4, 6, dtype="float64"),
    Case("lstm", 7, 4, 3, 5, dtype="float64", variable_lengths=True),
    Case("gru", 6, 2, 8, 8, dtype="float32"),
    Case("lstm", 6, 2, 8, 8, dtype="float32"),
]


@pytest.mark.parametrize("case", CASES, ids=lambda p: f"{p.cell}-{p.reset_after}-"
                         f"{p.variable_lengths}-{p.dtype}")
def test_training_step_matches_reference(case):
    args = case.make_args(seed=7, with_grads=True)
    if case.variable_lengths:
        args.lengths[0] = 0            # torch cannot pack length 0: the backend routes it
        args.lengths[-1] = case.T
    expected = reference_step(args)
    prepared = torch_nn.prepare(args)
    outputs, grads = prepared.to_numpy(prepared.training_step())
    assert_matches_reference(outputs, grads, args, expected)
    assert_matches_reference(prepared.to_numpy(prepared.forward()), None, args, expected)


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_all_sequences_empty(cell):
    """Packing refuses an empty batch; the contract wants zero outputs and the initial
    states back, and gradients that pass dh_n (dc_n) straight to h0 (c0)."""
    args = Case(cell, 3, 2, 4, 5, dtype="float64").make_args(seed=2, with_grads=True)
    args = dataclasses.replace(args, lengths=np.zeros(2, dtype=np.int64))
    prepared = torch_nn.prepare(args)
    outputs, grads = prepared.to_numpy(prepared.training_step())
    assert_matches_reference(outputs, grads, args)
    assert np.all(outputs[0] == 0) and np.array_equal(outputs[1], args.h0)


def test_saved_bytes_counts_what_autograd_keeps():
    args = Case("gru", 10, 4, 8, 16).make_args(with_grads=True)
    prepared = torch_nn.prepare(args)
    assert prepared.saved_bytes is None
    prepared.training_step()
    # at least the gates of every step are saved: T*B*3H float32 values
    assert prepared.saved_bytes >= 10 * 4 * 3 * 16 * 4
    first = prepared.saved_bytes
    prepared.training_step()
    assert prepared.saved_bytes == first


def test_cuda_unavailable_says_why():
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    ok, why = torch_nn.availability("cuda")
    assert not ok and why == "torch.cuda.is_available() is False"
    with pytest.raises(BackendUnavailable, match="is_available"):
        torch_nn.prepare(Case("gru", 2, 1, 2, 2).make_args(), device="cuda")


def test_version_names_torch():
    assert torch_nn.version().startswith(f"torch {torch.__version__}")


@pytest.mark.parametrize("cell", ["gru", "lstm"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_a_network_is_one_torch_module_matching_the_reference_network(cell, dtype):
    """num_layers and bidirectional in one torch.nn module, lengths packed (an empty and a
    full sequence among them): forward and every gradient against the reference kernels
    in kernels.network's Network, in float64."""
    from grubench.case import Case
    from grubench.kernels import reference
    from grubench.kernels.network import Network
    from grubench import tolerances

    inputs = Case(cell, 6, 4, 3, 5, layers=3, directions=2, lengths="any", mode="training",
                  dtype=dtype).make_args(seed=5)
    inputs.lengths[:2] = (0, 6)
    prepared = torch_nn.prepare_network(inputs)
    assert (prepared.module.num_layers, prepared.module.bidirectional) == (3, True)
    outputs, grads = prepared.to_numpy(prepared.training_step())
    wide = inputs.astype(np.float64)
    network = Network(reference, wide.spec)
    want, saved = network.forward_train(wide.x, wide.params, wide.h0, wide.c0,
                                        lengths=wide.lengths)
    want_grads = network.backward(saved, *wide.upstream())
    forward = tolerances.forward_tolerance(dtype)
    assert len(outputs) == len(want) == len(inputs.spec.spec.outputs)
    for name, got, expected in zip(inputs.spec.spec.outputs, outputs, want, strict=True):
        assert got.dtype == np.dtype(dtype)
        forward.assert_close(got, expected, name)
    assert list(grads) == list(want_grads)
    for name, expected in want_grads.items():
        tolerances.gradient_tolerance(dtype).assert_close(grads[name], expected, name)
    forward.assert_close(prepared.to_numpy(prepared.forward())[0], want[0], "y")
    assert prepared.saved_bytes > 0


def test_a_reset_before_network_is_not_something_torch_runs():
    from grubench.case import Case

    inputs = Case("gru", 3, 2, 2, 3, directions=2, variant="reset_before").make_args()
    with pytest.raises(NotImplementedError, match="torch has no reset-before GRU"):
        torch_nn.prepare_network(inputs)
