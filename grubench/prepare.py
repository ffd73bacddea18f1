"""A case's inputs prepared on a backend, ready to run repeatedly: what the worker times
and the float64 reference computes.

One layer in one direction goes through the backend's own ``prepare(args)`` (the
contract, :mod:`grubench.kernels.contract`). A stacked or bidirectional case goes through
:class:`grubench.kernels.network.Network` over that same ``prepare`` (``networks =
"layered"`` in the backend's registry entry), or through the kernel module's own
``prepare_network(inputs)`` (``"native"``: torch.nn.GRU/LSTM with ``num_layers`` and
``bidirectional``). A backend whose entry ``ignores_lengths`` gets the inputs without
their lengths: every sequence runs to T (the padded baseline).
"""
from __future__ import annotations

import dataclasses

from grubench.case import Case, NetworkInputs
from grubench.kernels.network import Network


class NetworkCall:
    """A network case on a layered backend, with the interface the worker uses of a
    contract call (``forward``, ``training_step``, ``synchronize``, ``to_numpy``,
    ``saved_bytes``). Results are NumPy arrays: outputs (y, h_n[, c_n]) and gradients
    keyed x, h0[, c0] and the parameters' torch names."""

    saved_bytes: int | None = None

    def __init__(self, backend, inputs: NetworkInputs):
        self.inputs = inputs
        self.network = Network(backend, inputs.spec, reset_after=inputs.reset_after)

    def _call_args(self) -> tuple[tuple, dict]:
        i = self.inputs
        return (i.x, i.params, i.h0, i.c0), {"lengths": i.lengths}

    def forward(self):
        args, keywords = self._call_args()
        return self.network.forward(*args, **keywords)

    def training_step(self):
        if not self.inputs.has_grads:
            raise ValueError("no upstream gradients were given (dy, dh_n[, dc_n])")
        args, keywords = self._call_args()
        outputs, saved = self.network.forward_train(*args, **keywords)
        grads = self.network.backward(saved, *self.inputs.upstream())
        layer_bytes = [prepared.saved_bytes for layer in saved.layers
                       for prepared, _ in layer]
        if None not in layer_bytes:
            self.saved_bytes = sum(layer_bytes)
        return outputs, grads

    def synchronize(self) -> None:
        """Nothing queued: each layer's outputs are already on the host."""

    def to_numpy(self, result):
        return result


def case_inputs(case: Case, seed: int, ignore_lengths: bool = False):
    """``case.make_args(seed)``, without the lengths when ``ignore_lengths``."""
    inputs = case.make_args(seed)
    return dataclasses.replace(inputs, lengths=None) if ignore_lengths else inputs


def prepare_case(backend, case: Case, seed: int):
    """The case's seeded inputs prepared on ``backend`` (a grubench.backends Backend)."""
    inputs = case_inputs(case, seed, backend.entry.ignores_lengths)
    return prepare_inputs(backend, inputs)


def prepare_inputs(backend, inputs):
    """Inputs (RNNArgs or NetworkInputs) prepared on ``backend``, as the module docstring
    says."""
    if not isinstance(inputs, NetworkInputs):
        return backend.prepare(inputs)
    if backend.entry.networks == "native":
        return backend.prepare_network(inputs)
    return NetworkCall(backend, inputs)
