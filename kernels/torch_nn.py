"""The "torch-cpu" and "torch-cuda" backends: what a PyTorch user runs.

GRU and LSTM with reset-after gates run through ``torch.nn.GRU`` / ``torch.nn.LSTM``
(on CPU the GRU is per-step ``addmm`` plus separate pointwise ops; the LSTM is one oneDNN
call; on CUDA both are cuDNN). Variable lengths go through ``pack_padded_sequence``, as a
torch user batches them (``enforce_sorted=False``). Stacked and bidirectional networks are
one module with ``num_layers`` and ``bidirectional`` (:func:`prepare_network`). torch has
no reset-before GRU (an open request upstream, pytorch/pytorch#8153), so that variant is
the loop of tensor ops a torch user would write (one layer only). Backward is autograd.

Shapes are those of :mod:`grubench.kernels.contract`.
"""
from __future__ import annotations

import numpy as np

from .contract import (GRU_N, BackendUnavailable, Prepared, RNNArgs, convenience_api,
                       map_arrays, upstream_names)

try:
    import torch
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence
except ImportError as error:  # torch is a dependency, but a broken install must not crash us
    torch = None
    _IMPORT_ERROR = f"torch cannot be imported: {error}"


def availability(device: str = "cpu") -> tuple[bool, str | None]:
    if torch is None:
        return False, _IMPORT_ERROR
    if device == "cuda" and not torch.cuda.is_available():
        return False, "torch.cuda.is_available() is False"
    return True, None


def version(device: str = "cpu") -> str:
    if torch is None:
        return "torch missing"
    text = f"torch {torch.__version__}"
    if device == "cuda" and torch.cuda.is_available():
        text += f", CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}"
    return text


def _gru_reset_before(module, x, h, mask):
    """Reset-before GRU as torch ops: n = tanh(W_in x + b_in + W_hn (r*h) + b_hn)."""
    T, B, _ = x.shape
    H = h.shape[1]
    w_ih, w_hh = module.weight_ih_l0, module.weight_hh_l0
    b_ih, b_hh = module.bias_ih_l0, module.bias_hh_l0
    n_rows = slice(GRU_N * H, (GRU_N + 1) * H)
    gi = torch.addmm(b_ih, x.reshape(T * B, -1), w_ih.t()).view(T, B, 3 * H)
    ys = []
    for t in range(T):
        gh_rz = torch.addmm(b_hh[:2 * H], h, w_hh[:2 * H].t())
        r, z = torch.sigmoid(gi[t, :, :2 * H] + gh_rz).chunk(2, dim=1)
        n = torch.tanh(gi[t, :, n_rows] + torch.addmm(b_hh[n_rows], r * h, w_hh[n_rows].t()))
        h_candidate = n + z * (h - n)
        if mask is None:
            h = h_candidate
            ys.append(h)
        else:
            ys.append(mask[t] * h_candidate)
            h = h + mask[t] * (h_candidate - h)
    return torch.stack(ys), h


class TorchPrepared(Prepared):
    """One call of a torch.nn.GRU/LSTM module: one layer in one direction (``args`` the
    contract's RNNArgs, 2-D states; :func:`prepare`) or a stacked/bidirectional network
    (``args`` a network's inputs, states (num_layers*directions, B, H), parameters by torch
    name; :func:`prepare_network`). Gradients are keyed by ``grad_names``, in the order of
    x, the initial states and the module's parameters."""

    def __init__(self, args, device: str, *, torch_class: str, input_size: int,
                 hidden_size: int, num_layers: int, bidirectional: bool, params: dict, states: list,
                 lengths, upstream: tuple | None, grad_names: list[str], squeeze: bool):
        super().__init__(args)
        self.device = torch.device(device)
        tensor = self.from_numpy
        module_type = getattr(torch.nn, torch_class)
        self.module = module_type(input_size, hidden_size, num_layers=num_layers,
                                  bidirectional=bidirectional).to(
            device=self.device, dtype=getattr(torch, args.x.dtype.name))
        with torch.no_grad():
            for name, value in params.items():
                getattr(self.module, name).copy_(tensor(value))
        self.reset_after, self.squeeze, self.grad_names = args.reset_after, squeeze, grad_names
        self.T, self.B = args.x.shape[:2]
        self.output_size = hidden_size * (2 if bidirectional else 1)
        self.x, self.states = tensor(args.x), [tensor(state) for state in states]
        self._upstream_arrays = upstream
        self.lengths = lengths
        self.mask = None
        if lengths is not None:
            steps = np.arange(self.T)[:, None, None]
            self.mask = tensor((steps < lengths[None, :, None]).astype(args.x.dtype))
            self.nonempty = tensor(np.flatnonzero(lengths))
            self.nonempty_lengths = torch.as_tensor(lengths[lengths > 0])

    def upstream(self) -> tuple:
        if self._upstream_arrays is None:
            raise ValueError("no upstream gradients were given (dy, dh_n[, dc_n])")
        if self._upstream is None:
            self._upstream = tuple(self.from_numpy(a) for a in self._upstream_arrays)
        return self._upstream

    def _run(self, x, states):
        """Outputs (y, h_n[, c_n]), the states shaped as given (2-D for one layer)."""
        full = [state[None] if self.squeeze else state for state in states]
        if not self.reset_after:
            y, h = _gru_reset_before(self.module, x, full[0][0], self.mask)
            states_n = [h[None]]
        elif self.lengths is None:
            y, states_n = self.module(x, full[0] if len(full) == 1 else tuple(full))
            states_n = [states_n] if len(full) == 1 else list(states_n)
        else:
            y, states_n = self._run_packed(x, full)
        return (y, *(state[0] if self.squeeze else state for state in states_n))

    def _run_packed(self, x, states):
        """Variable lengths the torch way (enforce_sorted=False: torch sorts them);
        sequences of length 0 (which packing refuses) keep their initial states and give
        zero outputs. States are (num_layers*directions, B, H)."""
        keep = self.nonempty
        zeros = x.new_zeros(self.T, self.B, self.output_size)
        if len(keep) == 0:          # every sequence is empty: zero outputs, states kept
            return zeros, [s.clone() for s in states]   # copies: no output aliases an input
        packed = pack_padded_sequence(x.index_select(1, keep), self.nonempty_lengths,
                                      enforce_sorted=False)
        kept = [s.index_select(1, keep) for s in states]
        out, kept_n = self.module(packed, kept[0] if len(kept) == 1 else tuple(kept))
        y_kept, _ = pad_packed_sequence(out, total_length=self.T)
        kept_n = [kept_n] if len(kept) == 1 else list(kept_n)
        return (zeros.index_copy(1, keep, y_kept),
                [s.index_copy(1, keep, k) for s, k in zip(states, kept_n)])

    def forward(self):
        with torch.no_grad():
            return self._run(self.x, self.states)

    def forward_train(self):
        """Outputs with their autograd graph; ``saved`` holds the leaves to differentiate."""
        x = self.x.detach().requires_grad_()
        states = [state.detach().requires_grad_() for state in self.states]
        leaves = [x, *states, *self.module.parameters()]
        with torch.enable_grad():
            if self.saved_bytes is None:
                outputs = self._run_counting_saved(x, states)
            else:
                outputs = self._run(x, states)
        return tuple(o.detach() for o in outputs), (outputs, leaves)

    def backward(self, saved, upstream):
        outputs, leaves = saved
        # An output that no weight reached (y when every sequence is empty) has no graph,
        # and a leaf it does not reach has no gradient: that gradient is zero.
        pairs = [(o, g) for o, g in zip(outputs, upstream) if o.requires_grad]
        grads = torch.autograd.grad([o for o, _ in pairs], leaves,
                                    grad_outputs=[g for _, g in pairs], allow_unused=True)
        return {name: torch.zeros_like(leaf) if grad is None else grad
                for name, grad, leaf in zip(self.grad_names, grads, leaves, strict=True)}

    def _run_counting_saved(self, x, states):
        """The first training forward records the bytes autograd saves for backward."""
        storages = {}

        def pack(t):
            storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            outputs = self._run(x, states)
        inputs = {t.untyped_storage().data_ptr() for t in [x, *states, *self.module.parameters()]}
        self.saved_bytes = sum(n for ptr, n in storages.items() if ptr not in inputs)
        return outputs

    def from_numpy(self, array):
        return torch.as_tensor(array, device=self.device)

    def synchronize(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def to_numpy(self, result):
        return map_arrays(result, lambda tensor: tensor.detach().cpu().numpy())


def _check_available(device: str) -> None:
    ok, why = availability(device)
    if not ok:
        raise BackendUnavailable(why)


def prepare(args: RNNArgs, device: str = "cpu") -> TorchPrepared:
    """One layer in one direction (the contract's call)."""
    _check_available(device)
    states = [getattr(args, name) for name in args.spec.initial_states]
    upstream = (tuple(getattr(args, name) for name in upstream_names(args.spec))
                if args.has_grads else None)
    params = {f"{torch_name}_l0": getattr(args, name) for name, torch_name in
              (("w_ih", "weight_ih"), ("w_hh", "weight_hh"), ("b_ih", "bias_ih"),
               ("b_hh", "bias_hh"))}
    return TorchPrepared(args, device, torch_class=args.spec.torch_class, input_size=args.I,
                         hidden_size=args.H, num_layers=1, bidirectional=False, params=params, states=states,
                         lengths=args.lengths, upstream=upstream,
                         grad_names=list(args.inputs()), squeeze=True)


def prepare_network(inputs, device: str = "cpu") -> TorchPrepared:
    """A stacked/bidirectional network as a torch user builds it: one
    torch.nn.GRU/LSTM(num_layers=..., bidirectional=...), variable lengths packed.
    ``inputs``: time-major x, states (num_layers*directions, B, H), parameters by torch
    name, upstream gradients dy (T, B, directions*H), dh_n[, dc_n] (or None), lengths."""
    _check_available(device)
    if not inputs.reset_after:
        raise NotImplementedError("torch has no reset-before GRU; a network of them is a "
                                  "loop of tensor ops per layer that torch users do not run")
    spec = inputs.spec
    states = [inputs.h0] + ([] if inputs.c0 is None else [inputs.c0])
    return TorchPrepared(inputs, device, torch_class=spec.spec.torch_class,
                         input_size=spec.input_size,
                         hidden_size=spec.hidden_size, num_layers=spec.num_layers,
                         bidirectional=spec.bidirectional, params=inputs.params,
                         states=states, lengths=inputs.lengths,
                         upstream=inputs.upstream() if inputs.has_grads else None,
                         grad_names=["x", *spec.spec.initial_states, *inputs.params],
                         squeeze=False)


gru_forward, gru_backward, lstm_forward, lstm_backward = convenience_api(prepare)
