"""grubench.prepare: a case's inputs on a backend: one layer through its prepare, a
network through kernels.network's Network or the backend's own, lengths dropped for a
backend that ignores them."""
import dataclasses

import numpy as np
import pytest

from grubench import backends, tolerances
from grubench.accuracy import compute_reference, named_arrays
from grubench.case import Case, NetworkInputs
from grubench.kernels import reference
from grubench.kernels.contract import RNNArgs
from grubench.kernels.network import Network
from grubench.prepare import NetworkCall, case_inputs, prepare_case, prepare_inputs

NETWORK = Case("lstm", 5, 4, 3, 4, layers=2, directions=2, lengths="any", mode="training",
               dtype="float64")


def run(prepared, case):
    result = prepared.training_step() if case.training else prepared.forward()
    return named_arrays(case.cell, prepared.to_numpy(result), case.training)


def test_a_network_call_is_the_network_on_the_case_inputs():
    inputs = NETWORK.make_args(seed=1)
    call = prepare_inputs(backends.get("numpy"), inputs)
    assert isinstance(call, NetworkCall) and call.saved_bytes is None
    outputs, grads = call.training_step()
    network = Network(reference, inputs.spec)
    want_outputs, saved = network.forward_train(inputs.x, inputs.params, inputs.h0,
                                                inputs.c0, lengths=inputs.lengths)
    want_grads = network.backward(saved, *inputs.upstream())
    assert all(np.array_equal(a, b) for a, b in zip(outputs, want_outputs, strict=True))
    assert list(grads) == list(want_grads)
    assert all(np.array_equal(grads[k], want_grads[k]) for k in grads)
    # every (layer, direction) call's saved state, summed
    assert call.saved_bytes == sum(p.saved_bytes for layer in saved.layers for p, _ in layer)
    assert all(np.array_equal(a, b) for a, b in zip(call.forward(), want_outputs))


def test_a_network_call_without_upstream_gradients_says_so():
    inputs = NETWORK.make_args(seed=1, with_grads=False)
    with pytest.raises(ValueError, match="no upstream gradients"):
        NetworkCall(backends.get("numpy"), inputs).training_step()


def test_each_case_goes_where_its_backend_runs_it():
    pytest.importorskip("torch")
    single = Case("gru", 3, 2, 2, 3)
    assert isinstance(prepare_case(backends.get("numpy"), single, 0),
                      reference.ReferencePrepared)
    network = Case("gru", 3, 2, 2, 3, directions=2)
    assert isinstance(prepare_case(backends.get("numpy"), network, 0), NetworkCall)
    from grubench.kernels.torch_nn import TorchPrepared
    native = prepare_case(backends.get("torch-cpu"), network, 0)
    assert isinstance(native, TorchPrepared) and native.module.bidirectional


@pytest.mark.parametrize("case", [NETWORK, Case("gru", 5, 4, 3, 4, lengths="uniform")])
def test_ignoring_lengths_drops_them_and_nothing_else(case):
    kept, dropped = case_inputs(case, 2), case_inputs(case, 2, ignore_lengths=True)
    assert isinstance(kept, NetworkInputs if case.is_network else RNNArgs)
    assert kept.lengths is not None and dropped.lengths is None
    for field in dataclasses.fields(kept):
        if field.name != "lengths":
            a, b = getattr(kept, field.name), getattr(dropped, field.name)
            if isinstance(a, dict):
                assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
            elif isinstance(a, np.ndarray):
                assert np.array_equal(a, b), field.name
            else:
                assert a == b, field.name


def _available_cpu(names):
    return [name for name in names if backends.get(name).available]


@pytest.mark.parametrize("backend", _available_cpu(["numba-cpu", "torch-cpu", "jax"]))
@pytest.mark.parametrize("case", [
    NETWORK,
    Case("gru", 6, 3, 4, 5, layers=3, lengths="short-tail", mode="training", dtype="float64"),
    Case("gru", 6, 3, 4, 5, directions=2, variant="reset_before", dtype="float64"),
], ids=lambda c: c.key)
def test_every_cpu_backend_runs_networks_to_the_reference(backend, case):
    """Forward and every gradient of a network case against the float64 reference
    (accuracy.compute_reference), through whatever path the backend's entry declares."""
    try:
        prepared = prepare_case(backends.get(backend), case, seed=3)
    except NotImplementedError as error:       # torch has no reset-before GRU
        assert backend == "torch-cpu" and "reset-before" in str(error)
        return
    got, want = run(prepared, case), compute_reference(case, seed=3)
    assert list(got) == list(want)
    for name, value in want.items():
        tolerances.FLOAT64.assert_close(got[name], value, name)


def test_the_padded_baseline_matches_the_reference_run_to_T():
    """torch-cpu-padded runs every sequence to T: not the case's reference, but exactly
    the reference without lengths, which the runner compares it with."""
    pytest.importorskip("torch")
    case = dataclasses.replace(NETWORK, lengths="uniform")
    got = run(prepare_case(backends.get("torch-cpu-padded"), case, seed=0), case)
    to_t = compute_reference(case, seed=0, ignore_lengths=True)
    with_lengths = compute_reference(case, seed=0)
    for name, value in to_t.items():
        tolerances.FLOAT64.assert_close(got[name], value, name)
    assert not np.allclose(got["y"], with_lengths["y"])
