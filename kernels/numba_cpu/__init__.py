"""The "numba-cpu" backend: GRU (both variants) and LSTM, forward and exact BPTT, in @njit code.

The passes follow haste's and cuDNN's structure, on the CPU. Its modules, bottom up:

* :mod:`.jit`: how kernels compile (fastmath without ``nnan``/``ninf``, so NaN and Inf
  propagate like in the reference; the on-disk cache; non-overlapping arrays);
* :mod:`.blas`: the BLAS numba links (SciPy's OpenBLAS), called with no copy;
* :mod:`.tiles`: the products' micro-kernels in LLVM vector IR, and the weights packed
  into panels once per prepared run;
* :mod:`.team`: a run's threads, each running the same kernel on its part;
* :mod:`.products`: the products with the weights and the weight gradients;
* :mod:`.mkl`: the per-step products on MKL's packed GEMM, where MKL is installed and the
  tuning finds it faster (``prepare(args, product="mkl")``);
* :mod:`.gates`: tanh and sigmoid in the problem's dtype (a float32 rational for float32);
* :mod:`.pointwise`: one step's gate math and its gradients;
* :mod:`.drivers`: the forward and backward passes over all steps;
* this module: the prepared run (weights laid out, biases folded, workspaces reused).

Shapes are those of :mod:`grubench.kernels.contract`; G = 3 (GRU) or 4 (LSTM). Why each
design choice, with the measurements behind it: docs/PERFORMANCE.md.
"""
from __future__ import annotations

import numba
import numpy as np
from numba.np.linalg import ensure_blas

from ..contract import (GRU_N, BackendUnavailable, Prepared, RNNArgs, _validate_lengths,
                        convenience_api)
from .blas import keep_blas_on_one_thread
from .drivers import (gru_backward_kernel, gru_forward_kernel, lstm_backward_kernel,
                      lstm_forward_kernel)
from .jit import cached_njit
from . import mkl
from .team import aligned_empty, run_team, share, team_size
from .tiles import PANEL_ROWS, pack_panels

__all__ = ["NumbaPrepared", "PRODUCTS", "availability", "cached_njit", "gru_backward",
           "gru_forward", "lstm_backward", "lstm_forward", "prepare", "team_size",
           "tunable", "usable_products", "version", "why_not_mkl"]


def availability() -> tuple[bool, str | None]:
    try:
        ensure_blas()
    except (ImportError, RuntimeError) as error:
        return False, f"numba has no BLAS: {error}"
    return True, None


def version() -> str:
    import scipy
    return f"numba {numba.__version__}, scipy {scipy.__version__} (OpenBLAS)"


def saved_width(args: RNNArgs) -> int:
    """Activations saved per (step, sequence), in units of H (see the SAVED_* slots)."""
    if args.cell == "lstm":
        return 5
    return 4 if args.reset_after else 3


class NumbaPrepared(Prepared):
    """Weights laid out once (packed for the products, biases folded: summed in float64)
    and the workspaces every run reuses; each run allocates only what it returns
    (outputs, saved, gradients).
    One Prepared runs one call at a time (its workspaces are shared)."""

    def __init__(self, args: RNNArgs, product: str = "tiles"):
        super().__init__(args)
        T, B, H, G = args.T, args.B, args.H, args.gates
        dtype = args.dtype
        self.lengths = (np.full(B, T, np.int64) if args.lengths is None else args.lengths)
        self.w_ih = pack_panels(args.w_ih.reshape(G, H, args.I))
        self.w_hh = pack_panels(args.w_hh.reshape(G, H, H))
        self.saved_width = saved_width(args) * H
        b_ih, b_hh = args.b_ih.astype(np.float64), args.b_hh.astype(np.float64)
        if args.cell == "lstm":
            self.bias = b_ih + b_hh
        else:
            n_rows = slice(GRU_N * H, (GRU_N + 1) * H)
            self.bias = b_ih.copy()
            self.bias[:GRU_N * H] += b_hh[:GRU_N * H]
            if args.reset_after:
                self.b_hn = b_hh[n_rows].copy()
            else:
                self.bias[n_rows] += b_hh[n_rows]
                self.b_hn = np.zeros(H)
            self.b_hn = self.b_hn.astype(dtype)
        self.bias = self.bias.astype(dtype)     # summed in float64, rounded once
        self.gi = aligned_empty((T, B, G * H), dtype)
        self.gh = aligned_empty((B, G * H), dtype)
        self.states = aligned_empty((2, B, H), dtype)
        self.scratch = aligned_empty((1, B, self.saved_width), dtype)
        self.reset_state = aligned_empty((B, H) if not args.reset_after else (0, 0), dtype)
        self._backward_workspace = None
        self._pack_for(product)

    def _pack_for(self, product: str) -> None:
        """The per-step products' operands for ``product`` (see :func:`usable_products`): MKL's
        are packed once per worker of the team this run uses (self.workers)."""
        a = self.args
        usable = usable_products(a)
        if product not in usable:
            why = why_not_mkl(a) if product == "mkl" else "unknown product"
            raise ValueError(f"product {product!r} is not usable here ({why}); usable: "
                             f"{', '.join(usable)}")
        self.product, self.workers = product, team_size(a)
        empty = aligned_empty((0, 0), a.dtype)
        self.mkl_address, self.mkl_w_hh, self.mkl_w_hn = 0, empty, empty
        self.mkl_rows = worker_rows(a.B, self.workers)
        # the gates of the first per-step product: all but reset-before's candidate
        self.mkl_gates = 2 if a.variant == "reset_before" else a.gates
        if product == "mkl":
            self.mkl_address = mkl.compute_address(a.dtype)
            self.mkl_w_hh = mkl.packed_weights(a.w_hh[:self.mkl_gates * a.H], self.mkl_rows)
            if a.variant == "reset_before":
                self.mkl_w_hn = mkl.packed_weights(a.w_hh[GRU_N * a.H:], self.mkl_rows)

    def _run(self, saved, x=None, h0=None, c0=None, lengths=None):
        """Forward over the call's inputs, or over ``x``, ``h0``, ``c0``, ``lengths`` (of
        :meth:`forward_steps`) with the call's weights."""
        a = self.args
        if x is None:
            x, h0, c0, lengths = a.x, a.h0, a.c0, self.lengths
        T = x.shape[0]
        y = aligned_empty((T, a.B, a.H), a.dtype)
        h = aligned_empty((a.B, a.H), a.dtype)
        keep_blas_on_one_thread()
        if a.cell == "gru":
            run_team(self._team(), gru_forward_kernel, x, h0, self.w_ih, self.w_hh,
                     self.bias, self.b_hn, lengths, a.reset_after, y, h, saved, self.gi[:T],
                     self.gh, self.reset_state, self.states, self.mkl_address, self.mkl_w_hh,
                     self.mkl_w_hn)
            return y, h
        c = aligned_empty((a.B, a.H), a.dtype)
        run_team(self._team(), lstm_forward_kernel, x, h0, c0, self.w_ih, self.w_hh,
                 self.bias, lengths, y, h, c, saved, self.gi[:T], self.gh,
                 self.states, self.mkl_address, self.mkl_w_hh)
        return y, h, c

    def _team(self) -> int:
        """Threads of a run: MKL's operands were packed for self.workers; the tiles serve
        any team, so they follow numba's thread count of now."""
        return self.workers if self.mkl_address else team_size(self.args)

    def forward(self):
        return self._run(self.scratch)

    def forward_steps(self, x, h0, c0=None, lengths=None):
        """Inference over other inputs with this call's prepared weights: x (t, B, I) with
        1 <= t <= T, from the states h0 (B, H) [and c0 (B, H)], lengths (B,) in [0, t] or
        None (all t); returns what :meth:`forward` would return for them. A network runs
        a layer's steps in pieces this way (its wavefront over layers) with the weights
        laid out once. Unlike :func:`~..contract.validate`, nothing is copied: the arrays
        must be C-contiguous and writable, x zero past each length."""
        a = self.args
        x = _steps_array("x", x, a.dtype, (a.B, a.I), a.T)
        T = x.shape[0]
        h0 = _steps_array("h0", h0, a.dtype, (a.B, a.H))
        if a.cell == "lstm":
            c0 = _steps_array("c0", c0, a.dtype, (a.B, a.H))
        elif c0 is not None:
            raise TypeError(f"c0 is an LSTM state; a {a.cell} call takes h0 only")
        lengths = _validate_lengths(lengths, T, a.B)
        return self._run(self.scratch, x, h0, c0,
                         np.full(a.B, T, np.int64) if lengths is None else lengths)

    def forward_train(self):
        """Outputs and saved = (y, activations): backward reads the previous states from y,
        so only the activations count as saved state."""
        a = self.args
        activations = aligned_empty((a.T, a.B, self.saved_width), a.dtype)
        outputs = self._run(activations)
        self.saved_bytes = activations.nbytes
        return outputs, (outputs[0], activations)

    def _workspace(self):
        """Backward's buffers, made on the first backward (inference never needs them)."""
        if self._backward_workspace is None:
            a = self.args
            T, B, H, G, dtype = a.T, a.B, a.H, a.gates, a.dtype
            empty3 = aligned_empty((0, 0, 0), dtype)
            self._backward_workspace = dict(
                w_ih_t=pack_panels(a.w_ih.T.reshape(1, a.I, G * H)),
                w_hh_t=pack_panels(a.w_hh.T.reshape(1, H, G * H)),
                d_gi=aligned_empty((T, B, G * H), dtype),
                d_gh=(aligned_empty((T, B, G * H), dtype)
                      if a.variant == "reset_after" else empty3),
                reset_states=(aligned_empty((T, B, H), dtype)
                              if a.variant == "reset_before" else empty3),
                dh=aligned_empty((B, H)), dc=aligned_empty((B, H)),
                dh_rec=aligned_empty((B, H), dtype), d_reset=aligned_empty((B, H), dtype),
                mkl_wt_hh=self.mkl_w_hh, mkl_wt_hn=self.mkl_w_hn)     # empty without MKL
            if self.mkl_address:
                workspace = self._backward_workspace
                workspace["mkl_wt_hh"] = mkl.packed_weights(
                    a.w_hh[:self.mkl_gates * H].T, self.mkl_rows)
                if a.variant == "reset_before":
                    workspace["mkl_wt_hn"] = mkl.packed_weights(a.w_hh[GRU_N * H:].T,
                                                                self.mkl_rows)
        return self._backward_workspace

    def backward(self, saved, upstream):
        a = self.args
        y, activations = saved
        w = self._workspace()
        grads = {name: aligned_empty(value.shape, value.dtype)
                 for name, value in a.inputs().items()}
        keep_blas_on_one_thread()
        if a.cell == "gru":
            dy, dh_n = upstream
            run_team(self._team(), gru_backward_kernel, a.x, a.h0, w["w_ih_t"], w["w_hh_t"],
                     self.lengths, a.reset_after, y, activations, dy, dh_n, grads["x"],
                     grads["h0"], grads["w_ih"], grads["w_hh"], grads["b_ih"], grads["b_hh"],
                     w["d_gi"], w["d_gh"], w["reset_states"], w["dh"], w["dh_rec"],
                     w["d_reset"], self.mkl_address, w["mkl_wt_hh"], w["mkl_wt_hn"])
        else:
            dy, dh_n, dc_n = upstream
            run_team(self._team(), lstm_backward_kernel, a.x, a.h0, a.c0, w["w_ih_t"], w["w_hh_t"],
                     self.lengths, y, activations, dy, dh_n, dc_n, grads["x"],
                     grads["h0"], grads["c0"], grads["w_ih"], grads["w_hh"], grads["b_ih"],
                     w["d_gi"], w["dh"], w["dc"], w["dh_rec"], self.mkl_address,
                     w["mkl_wt_hh"])
            grads["b_hh"][:] = grads["b_ih"]      # both biases enter the gates as one sum
        return grads


def _steps_array(name: str, value, dtype, shape: tuple, max_steps: int | None = None):
    """An input of :meth:`NumbaPrepared.forward_steps`, checked: ``shape``, or (t, *shape)
    with 1 <= t <= max_steps; the call's dtype; C-contiguous."""
    if not isinstance(value, np.ndarray):
        raise TypeError(f"{name} must be a NumPy array, got {type(value).__name__}")
    if max_steps is None:
        expected = value.shape == shape
        meaning = str(shape)
    else:
        expected = value.shape[1:] == shape and 1 <= value.shape[0] <= max_steps
        meaning = f"(t, {', '.join(map(str, shape))}) with 1 <= t <= T = {max_steps}"
    if not expected:
        raise ValueError(f"{name} has shape {value.shape}; expected {meaning}")
    if value.dtype != dtype:
        raise TypeError(f"{name} has dtype {value.dtype}; the call's is {dtype}")
    if not (value.flags.c_contiguous and value.flags.writeable):
        # numba would compile the kernels again (minutes) for a read-only array type
        raise ValueError(f"{name} must be C-contiguous and writable")
    return value


#: The per-step products numba-cpu can run: its own tiles, or MKL's packed GEMM (:mod:`.mkl`).
PRODUCTS = ("tiles", "mkl")


def worker_rows(B: int, workers: int) -> list[int] | None:
    """The sequences each worker of a team steps (:func:`.team.step_part`), or None where
    the team splits the hidden units instead."""
    if workers == 1:
        return [B]
    if B < workers * PANEL_ROWS:
        return None
    sync = np.zeros(8, np.int64)
    return [stop - start for start, stop in (share((w, workers, sync), B, 1)
                                             for w in range(workers))]


def why_not_mkl(args: RNNArgs) -> str | None:
    """Why MKL's packed product cannot serve ``args``'s steps here, or None: each MKL call
    takes whole rows, so a team that splits the hidden units keeps the tiles."""
    library, why = mkl.library()
    if library is None:
        return why
    if worker_rows(args.B, team_size(args)) is None:
        return "the threads split the hidden units (a small batch)"
    return None


def usable_products(args: RNNArgs) -> tuple[str, ...]:
    """The per-step products usable for ``args`` here, the default first."""
    return PRODUCTS if why_not_mkl(args) is None else PRODUCTS[:1]


def tunable(args: RNNArgs) -> dict[str, tuple[str, ...]]:
    """The options grubench's tuning may choose for ``args`` (each with more than one
    usable value), for :func:`prepare`."""
    usable = usable_products(args)
    return {"product": usable} if len(usable) > 1 else {}


def prepare(args: RNNArgs, product: str = "tiles") -> NumbaPrepared:
    """``product``: the per-step products, "tiles" (numba-cpu's own) or "mkl" (MKL's
    packed GEMM, where :func:`usable_products` lists it)."""
    ok, why = availability()
    if not ok:
        raise BackendUnavailable(why)
    return NumbaPrepared(args, product)


gru_forward, gru_backward, lstm_forward, lstm_backward = convenience_api(prepare)
