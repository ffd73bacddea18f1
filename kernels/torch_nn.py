"""The "torch-cpu" and "torch-cuda" backends: what a PyTorch user runs.

GRU and LSTM with reset-after gates run through ``torch.nn.GRU`` / ``torch.nn.LSTM``
(on CPU the GRU is per-step ``addmm`` plus separate pointwise ops; the LSTM is one oneDNN
call; on CUDA both are cuDNN). Variable lengths go through ``pack_padded_sequence``, as a
torch user batches them. torch has no reset-before GRU (an open request upstream,
pytorch/pytorch#8153), so that variant is the loop of tensor ops a torch user would write.
Backward is autograd.

Shapes are those of :mod:`grubench.kernels.contract`.
"""
from __future__ import annotations

import numpy as np

from .contract import (GRU_N, BackendUnavailable, Prepared, RNNArgs, convenience_api,
                       map_arrays)

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
    def __init__(self, args: RNNArgs, device: str):
        super().__init__(args)
        self.device = torch.device(device)
        tensor = self.from_numpy
        module_type = getattr(torch.nn, args.spec.torch_class)
        self.module = module_type(args.I, args.H).to(device=self.device,
                                                     dtype=getattr(torch, args.dtype.name))
        with torch.no_grad():
            for name, value in (("weight_ih_l0", args.w_ih), ("weight_hh_l0", args.w_hh),
                                ("bias_ih_l0", args.b_ih), ("bias_hh_l0", args.b_hh)):
                getattr(self.module, name).copy_(tensor(value))
        self.x, self.h0 = tensor(args.x), tensor(args.h0)
        self.c0 = None if args.c0 is None else tensor(args.c0)
        self.lengths = args.lengths
        self.mask = None
        if args.lengths is not None:
            steps = np.arange(args.T)[:, None, None]
            self.mask = tensor((steps < args.lengths[None, :, None]).astype(args.dtype))
            self.nonempty = tensor(np.flatnonzero(args.lengths))
            self.nonempty_lengths = torch.as_tensor(args.lengths[args.lengths > 0])

    def _run(self, x, h0, c0):
        """Outputs (y, h_n[, c_n]) with 2-D states."""
        if self.args.variant == "reset_before":
            return _gru_reset_before(self.module, x, h0, self.mask)
        state = h0[None] if c0 is None else (h0[None], c0[None])
        if self.lengths is None:
            y, state_n = self.module(x, state)
        else:
            y, state_n = self._run_packed(x, h0, c0)
        if c0 is None:
            return y, state_n[0]
        return y, state_n[0][0], state_n[1][0]

    def _run_packed(self, x, h0, c0):
        """Variable lengths the torch way; sequences of length 0 (which packing refuses)
        keep their initial state and give zero outputs."""
        keep = self.nonempty
        states = [h0] if c0 is None else [h0, c0]
        if len(keep) == 0:          # every sequence is empty: zero outputs, states kept
            y = x.new_zeros(self.args.T, self.args.B, self.args.H)
            kept = [s.clone()[None] for s in states]     # copies: no output aliases an input
            return y, (kept[0] if c0 is None else tuple(kept))
        packed = pack_padded_sequence(x.index_select(1, keep), self.nonempty_lengths,
                                      enforce_sorted=False)
        kept_states = [s.index_select(0, keep)[None] for s in states]
        out, kept_n = self.module(packed, kept_states[0] if c0 is None else tuple(kept_states))
        y_kept, _ = pad_packed_sequence(out, total_length=self.args.T)
        y = x.new_zeros(self.args.T, self.args.B, self.args.H).index_copy(1, keep, y_kept)
        kept_n = [kept_n] if c0 is None else list(kept_n)
        state_n = [s.index_copy(0, keep, k[0])[None] for s, k in zip(states, kept_n)]
        return y, (state_n[0] if c0 is None else tuple(state_n))

    def forward(self):
        with torch.no_grad():
            return self._run(self.x, self.h0, self.c0)

    def forward_train(self):
        """Outputs with their autograd graph; ``saved`` holds the leaves to differentiate."""
        x = self.x.detach().requires_grad_()
        h0 = self.h0.detach().requires_grad_()
        c0 = None if self.c0 is None else self.c0.detach().requires_grad_()
        leaves = [x, h0] + ([] if c0 is None else [c0]) + list(self.module.parameters())
        with torch.enable_grad():
            if self.saved_bytes is None:
                outputs = self._run_counting_saved(x, h0, c0)
            else:
                outputs = self._run(x, h0, c0)
        return tuple(o.detach() for o in outputs), (outputs, leaves)

    def backward(self, saved, upstream):
        outputs, leaves = saved
        # An output that no weight reached (y when every sequence is empty) has no graph,
        # and a leaf it does not reach has no gradient: that gradient is zero.
        pairs = [(o, g) for o, g in zip(outputs, upstream) if o.requires_grad]
        grads = torch.autograd.grad([o for o, _ in pairs], leaves,
                                    grad_outputs=[g for _, g in pairs], allow_unused=True)
        return {name: torch.zeros_like(leaf) if grad is None else grad
                for name, grad, leaf in zip(self.args.inputs(), grads, leaves)}

    def _run_counting_saved(self, x, h0, c0):
        """The first training forward records the bytes autograd saves for backward."""
        storages = {}

        def pack(t):
            storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            outputs = self._run(x, h0, c0)
        inputs = {t.untyped_storage().data_ptr() for t in [x, h0, c0, *self.module.parameters()]
                  if t is not None}
        self.saved_bytes = sum(n for ptr, n in storages.items() if ptr not in inputs)
        return outputs

    def from_numpy(self, array):
        return torch.as_tensor(array, device=self.device)

    def synchronize(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def to_numpy(self, result):
        return map_arrays(result, lambda tensor: tensor.detach().cpu().numpy())


def prepare(args: RNNArgs, device: str = "cpu") -> TorchPrepared:
    ok, why = availability(device)
    if not ok:
        raise BackendUnavailable(why)
    return TorchPrepared(args, device)


gru_forward, gru_backward, lstm_forward, lstm_backward = convenience_api(prepare)
