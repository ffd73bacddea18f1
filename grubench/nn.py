"""Drop-in torch.nn.GRU and torch.nn.LSTM modules that run on grubench's kernels.

    from grubench.nn import GRU, LSTM
    m = GRU(input_size, hidden_size, num_layers=2, batch_first=True, bidirectional=True,
            reset_after=True, backend="numba-cpu")
    m.load_state_dict(torch_gru.state_dict())   # torch's parameter names and shapes
    y, h_n = m(x, h0)                           # x a tensor or a PackedSequence
    m2 = GRU.from_torch(torch_gru)              # a copy of an existing torch module

The network (layers, directions, lengths, dropout) is :class:`grubench.kernels.network.
Network` over a registered backend; gradients come from its backward kernels through a
``torch.autograd.Function``. CPU tensors and NumPy arrays share memory where the layout
allows (contiguous time-major inputs, every parameter, every result). Under
``torch.no_grad()`` (or when nothing needs a gradient) the inference path runs and
nothing is saved. What torch accepts and grubench cannot run (LSTM ``proj_size``, a CUDA
device, half precision, an unknown or unavailable backend) raises an error naming the
argument; nothing falls back to torch silently.

Only this module of grubench needs torch.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence, pad_packed_sequence

from grubench import backends
from grubench.kernels.cells import NetworkSpec
from grubench.kernels.network import Network

#: The tensor dtypes the kernels run.
DTYPES = (torch.float32, torch.float64)


class _NetworkFunction(torch.autograd.Function):
    """The network as one autograd node: forward saves the backend's state, backward runs
    its backward kernels. Inputs: (network, lengths, dropout_seed, x, h0, c0, *params)."""

    @staticmethod
    def forward(ctx, network, lengths, dropout_seed, x, h0, c0, *params):
        names = list(network.spec.parameter_shapes())
        outputs, saved = network.forward_train(
            _array(x), dict(zip(names, map(_array, params))), _array(h0), _array(c0),
            lengths=lengths, dropout_seed=dropout_seed)
        ctx.network, ctx.saved = network, saved
        results = tuple(torch.from_numpy(output) for output in outputs)
        # The backend's saved state shares memory with these tensors: saving them lets
        # torch's version counters refuse a backward after an in-place change to any.
        ctx.save_for_backward(*(t for t in (x, h0, c0, *params) if t is not None), *results)
        return results

    @staticmethod
    def backward(ctx, *upstream):
        if torch.is_grad_enabled():          # backward(create_graph=True)
            raise RuntimeError("grubench.nn has no second derivatives: its backward kernels' "
                               "gradients are not differentiable (create_graph=True)")
        ctx.saved_tensors                    # raises if a saved tensor changed in place
        grads = ctx.network.backward(ctx.saved, *map(_array, upstream))
        ctx.saved = None                     # the backend's state is freed with the node
        needed = ctx.needs_input_grad
        names = ["x", "h0", "c0"] + list(ctx.network.spec.parameter_shapes())
        results = [torch.from_numpy(grads[name]) if needed[3 + i] and name in grads else None
                   for i, name in enumerate(names)]
        return (None, None, None, *results)


def _array(tensor):
    """A CPU tensor's data as NumPy, sharing memory (None stays None)."""
    return None if tensor is None else tensor.detach().numpy()


class _RecurrentNetwork(nn.Module):
    """What GRU and LSTM share: torch's constructor, parameters and forward signature."""

    CELL: str

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, device=None, dtype=None, *,
                 reset_after=True, backend="numba-cpu"):
        super().__init__()
        self.spec = NetworkSpec(self.CELL, input_size, hidden_size, num_layers,
                                bool(bidirectional), bool(batch_first), bool(bias))
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.bias, self.batch_first, self.bidirectional = bias, batch_first, bidirectional
        self.dropout, self.reset_after = dropout, reset_after
        self.backend_name = backend
        self._backend = _cpu_backend(backend)
        if device is not None and torch.device(device).type != "cpu":
            raise ValueError(f"device={str(device)!r}: grubench.nn runs CPU tensors only "
                             f"(backend {backend!r} runs on the CPU)")
        dtype = torch.get_default_dtype() if dtype is None else dtype
        if dtype not in DTYPES:
            raise ValueError(f"dtype={dtype}: grubench's kernels run torch.float32 and "
                             f"torch.float64")
        self._network()                      # reset_after and dropout checked now
        for name, shape in self.spec.parameter_shapes().items():
            self.register_parameter(name, nn.Parameter(torch.empty(shape, dtype=dtype)))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """torch's initialization: every parameter uniform in ±1/sqrt(hidden_size)."""
        bound = 1.0 / math.sqrt(self.hidden_size) if self.hidden_size > 0 else 0
        for parameter in self.parameters():
            nn.init.uniform_(parameter, -bound, bound)

    def flatten_parameters(self) -> None:
        """Nothing to do (torch's packs cuDNN weights; ours are used where they lie)."""

    def _network(self) -> Network:
        return Network(self._backend, self.spec, reset_after=self.reset_after,
                       dropout=self.dropout)

    @classmethod
    def from_torch(cls, module: nn.Module, **options):
        """A copy of a torch.nn.GRU/LSTM on grubench's kernels: same sizes, options,
        weights and training mode; ``options`` are ours (``backend``, GRU's
        ``reset_after``)."""
        torch_class = getattr(nn, cls.CELL.upper())
        if type(module) is not torch_class:
            raise TypeError(f"module must be a torch.nn.{torch_class.__name__}, got "
                            f"{type(module).__name__}")
        options.update(num_layers=module.num_layers, bias=module.bias,
                       batch_first=module.batch_first, dropout=module.dropout,
                       bidirectional=module.bidirectional)
        if getattr(module, "proj_size", 0):
            options["proj_size"] = module.proj_size
        weight = module.weight_ih_l0
        copy = cls(module.input_size, module.hidden_size, device=weight.device,
                   dtype=weight.dtype, **options)
        copy.load_state_dict(module.state_dict())
        return copy.train(module.training)

    def extra_repr(self) -> str:
        text = f"{self.input_size}, {self.hidden_size}"
        for name, default in (("num_layers", 1), ("bias", True), ("batch_first", False),
                              ("dropout", 0.0), ("bidirectional", False)):
            if getattr(self, name) != default:
                text += f", {name}={getattr(self, name)}"
        if self.CELL == "gru" and not self.reset_after:
            text += ", reset_after=False"
        return text + f", backend={self.backend_name!r}"

    def _run(self, input, states):
        """forward's work for GRU (states = (h0,)) and LSTM (states = (h0, c0))."""
        packed = isinstance(input, PackedSequence)
        lengths = None
        if packed:
            packed_input = input
            input, lengths = pad_packed_sequence(input, batch_first=self.batch_first)
            lengths = lengths.numpy()
        _check_tensor("input", input)
        unbatched = input.dim() == 2
        if unbatched:                        # torch's unbatched input: (T, I), states (L*D, H)
            input = input.unsqueeze(1 if not self.batch_first else 0)
            states = tuple(None if s is None else s.unsqueeze(1) for s in states)
        for name, state in zip(("h0", "c0"), states):
            if state is not None:
                _check_tensor(name, state)
        network = self._network()
        params = [getattr(self, name) for name in self.spec.parameter_shapes()]
        dropout_seed = None
        if self.training and self.dropout > 0 and self.num_layers > 1:
            dropout_seed = int(torch.randint(2 ** 62, (1,)).item())   # torch's generator
        tensors = (input, *states, *params)
        needs_grad = torch.is_grad_enabled() and any(t is not None and t.requires_grad
                                                     for t in tensors)
        self._check_supported(needs_grad, input.dtype)
        if needs_grad:
            h0, c0 = (states + (None,))[:2]
            outputs = _NetworkFunction.apply(network, lengths, dropout_seed, input, h0, c0,
                                             *params)
        else:
            outputs = tuple(map(torch.from_numpy, network.forward(
                _array(input), {n: _array(p) for n, p in zip(self.spec.parameter_shapes(),
                                                               params)},
                *(_array(s) for s in states), lengths=lengths, dropout_seed=dropout_seed)))
        y, finals = outputs[0], outputs[1:]
        if unbatched:
            y = y.squeeze(1 if not self.batch_first else 0)
            finals = tuple(f.squeeze(1) for f in finals)
        if packed:
            y = _repack(y, packed_input, self.batch_first)
        return y, finals

    def _check_supported(self, training: bool, dtype) -> None:
        numpy_dtype = np.dtype(str(dtype).removeprefix("torch."))
        for mode in (("training",) if training else ()) + ("inference",):
            why = self._backend.entry.why_unsupported(mode, numpy_dtype)
            if why:
                raise ValueError(f"backend {self.backend_name!r} cannot run {mode} in "
                                 f"{numpy_dtype}: {why}")


def _cpu_backend(name):
    """The registered backend ``name``, available and running on the CPU; ValueError
    naming ``backend`` otherwise."""
    if not isinstance(name, str):
        raise TypeError(f"backend must be a backend name, got {type(name).__name__}")
    try:
        backend = backends.get(name)
    except ValueError as error:
        raise ValueError(f"backend={name!r}: {error}") from None
    if backend.device != "cpu":
        raise ValueError(f"backend={name!r} runs on {backend.device}; grubench.nn runs "
                         f"CPU tensors only")
    if not backend.available:
        raise ValueError(f"backend={name!r} is unavailable: {backend.why_unavailable}")
    return backend


def _check_tensor(name: str, tensor) -> None:
    if not isinstance(tensor, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(tensor).__name__}")
    if tensor.device.type != "cpu":
        raise ValueError(f"{name} is on {tensor.device}; grubench.nn runs CPU tensors only")
    if tensor.dtype not in DTYPES:
        raise TypeError(f"{name} has dtype {tensor.dtype}; grubench's kernels run "
                        f"torch.float32 and torch.float64")


def _repack(y, packed: PackedSequence, batch_first: bool) -> PackedSequence:
    """The padded output ``y`` as a PackedSequence laid out like ``packed`` (same batch
    sizes and sort order, as torch returns it)."""
    time_major = y.transpose(0, 1) if batch_first else y
    batch_sizes = packed.batch_sizes
    order = (packed.sorted_indices if packed.sorted_indices is not None
             else torch.arange(time_major.shape[1]))
    steps = torch.repeat_interleave(torch.arange(len(batch_sizes)), batch_sizes)
    rows = torch.cat([order[:size] for size in batch_sizes.tolist()])
    return PackedSequence(time_major[steps, rows], batch_sizes, packed.sorted_indices,
                          packed.unsorted_indices)


class GRU(_RecurrentNetwork):
    """torch.nn.GRU on grubench's kernels; ``reset_after=False`` is the reset-before GRU
    torch lacks. forward(input, hx=None) -> (output, h_n), as torch's."""

    CELL = "gru"

    def forward(self, input, hx=None):
        y, (h_n,) = self._run(input, (hx,))
        return y, h_n


class LSTM(_RecurrentNetwork):
    """torch.nn.LSTM on grubench's kernels (no ``proj_size``). forward(input, hx=None) ->
    (output, (h_n, c_n)), as torch's; hx = (h0, c0) or None."""

    CELL = "lstm"

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, proj_size=0, device=None, dtype=None, *,
                 backend="numba-cpu"):
        if proj_size != 0:
            raise ValueError(f"proj_size={proj_size!r} is not supported: grubench's LSTM "
                             f"kernels have no projection (use torch.nn.LSTM)")
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, device, dtype, backend=backend)

    def forward(self, input, hx=None):
        if hx is not None and not (isinstance(hx, (tuple, list)) and len(hx) == 2):
            raise TypeError("hx must be a tuple (h0, c0) or None for an LSTM")
        y, (h_n, c_n) = self._run(input, (None, None) if hx is None else tuple(hx))
        return y, (h_n, c_n)
