"""The "numpy" backend: exact GRU and LSTM forward and backpropagation through time.

Written for clarity, not speed: it is the oracle of every other test in grubench. It runs
in the dtype it is given (float64 for the oracle role), one time step at a time, saving
every intermediate in forward and walking them back in backward.

Shapes are those of :mod:`grubench.kernels.contract`: x (T,B,I), h0/c0 (B,H), y (T,B,H),
w_ih (G*H,I), w_hh (G*H,H), b_ih/b_hh (G*H,), G = 3 (GRU: r, z, n) or 4 (LSTM: i, f, g, o).
"""
from __future__ import annotations

import numpy as np

from .contract import (GRU_N, GRU_R, GRU_Z, LSTM_F, LSTM_G, LSTM_I, LSTM_O, Prepared,
                       RNNArgs, convenience_api)


def availability() -> tuple[bool, str | None]:
    return True, None


def version() -> str:
    return f"numpy {np.__version__}"


def sigmoid(a: np.ndarray) -> np.ndarray:
    """Logistic function without overflow for large |a| (exp(-a) would overflow)."""
    return 0.5 * (1.0 + np.tanh(0.5 * a))


def gate(array: np.ndarray, index: int, H: int) -> np.ndarray:
    """The block of gate ``index`` along the last axis (or first, for weights)."""
    return array[..., index * H:(index + 1) * H]


def step_masks(args: RNNArgs) -> np.ndarray:
    """mask[t, b, 0] = 1 where step t is inside sequence b, else 0; shape (T, B, 1)."""
    if args.lengths is None:
        return np.ones((args.T, args.B, 1), dtype=args.dtype)
    steps = np.arange(args.T)[:, None]
    return (steps < args.lengths[None, :]).astype(args.dtype)[:, :, None]


def zero_padding(args: RNNArgs, array: np.ndarray) -> np.ndarray:
    """``array`` (T, B, ...) with the steps t >= lengths[b] set to 0. Padding may hold
    anything, NaN included, and must not reach any result: 0 * NaN is NaN, not 0."""
    if args.lengths is None:
        return array
    return np.where(step_masks(args) != 0, array, 0).astype(args.dtype, copy=False)


# ----------------------------------------------------------------------------- GRU

def gru_forward_saving(args: RNNArgs):
    """Forward pass; returns (y, h_n) and the per-step intermediates backward needs."""
    x = zero_padding(args, args.x)
    w_ih, w_hh, b_ih, b_hh = args.w_ih, args.w_hh, args.b_ih, args.b_hh
    H = args.H
    mask = step_masks(args)
    w_hh_rz, w_hh_n = w_hh[:2 * H], w_hh[2 * H:]
    b_hh_rz, b_hh_n = b_hh[:2 * H], b_hh[2 * H:]
    h = args.h0
    y = np.zeros((args.T, args.B, H), dtype=args.dtype)
    steps = []
    for t in range(args.T):
        gi = x[t] @ w_ih.T + b_ih                       # (B, 3H) input part of all gates
        gh_rz = h @ w_hh_rz.T + b_hh_rz                 # (B, 2H) recurrent part of r, z
        r = sigmoid(gate(gi, GRU_R, H) + gate(gh_rz, GRU_R, H))
        z = sigmoid(gate(gi, GRU_Z, H) + gate(gh_rz, GRU_Z, H))
        if args.reset_after:
            gh_n = h @ w_hh_n.T + b_hh_n                # W_hn h + b_hn, reset applied after
        else:
            gh_n = (r * h) @ w_hh_n.T + b_hh_n          # W_hn (r*h) + b_hn, reset before
        n = np.tanh(gate(gi, GRU_N, H) + (r * gh_n if args.reset_after else gh_n))
        h_candidate = (1 - z) * n + z * h
        y[t] = np.where(mask[t] != 0, h_candidate, 0)
        steps.append(dict(h_prev=h, r=r, z=z, n=n, gh_n=gh_n))
        h = np.where(mask[t] != 0, h_candidate, h)
    return (y, h), steps


def gru_backward_from(args: RNNArgs, steps, upstream) -> dict[str, np.ndarray]:
    """Backpropagation through time over the intermediates of :func:`gru_forward_saving`;
    upstream = (dy (T,B,H), dh_n (B,H))."""
    H = args.H
    mask = step_masks(args)
    w_hh_n = args.w_hh[2 * H:]
    x = zero_padding(args, args.x)
    dy, dh_n = upstream
    dy = zero_padding(args, dy)
    grads = {name: np.zeros_like(value) for name, value in args.inputs().items()}
    dh = dh_n.copy()
    for t in reversed(range(args.T)):
        s = steps[t]
        h_prev, r, z, n, gh_n = s["h_prev"], s["r"], s["z"], s["n"], s["gh_n"]
        d_candidate = mask[t] * (dy[t] + dh)       # gradient reaching h' of this step
        dh_prev = (1 - mask[t]) * dh + d_candidate * z  # carried state + the z*h path
        dz = d_candidate * (h_prev - n)
        da_n = d_candidate * (1 - z) * (1 - n * n)      # through tanh
        if args.reset_after:
            dr = da_n * gh_n
            dgh_n = da_n * r                            # gradient of W_hn h + b_hn
            dh_prev += dgh_n @ w_hh_n
            grads["w_hh"][2 * H:] += dgh_n.T @ h_prev
        else:
            d_rh = da_n @ w_hh_n                        # gradient of r*h
            dr = d_rh * h_prev
            dh_prev += d_rh * r
            dgh_n = da_n
            grads["w_hh"][2 * H:] += da_n.T @ (r * h_prev)
        da_r = dr * r * (1 - r)
        da_z = dz * z * (1 - z)
        da_rz = np.concatenate([da_r, da_z], axis=1)    # (B, 2H)
        dh_prev += da_rz @ args.w_hh[:2 * H]
        grads["w_hh"][:2 * H] += da_rz.T @ h_prev
        grads["b_hh"] += np.concatenate([da_rz, dgh_n], axis=1).sum(axis=0)
        dgi = np.concatenate([da_r, da_z, da_n], axis=1)  # (B, 3H) input part of all gates
        grads["x"][t] = dgi @ args.w_ih
        grads["w_ih"] += dgi.T @ x[t]
        grads["b_ih"] += dgi.sum(axis=0)
        dh = dh_prev
    grads["h0"] = dh
    return grads


# ----------------------------------------------------------------------------- LSTM

def lstm_forward_saving(args: RNNArgs):
    """Forward pass; returns (y, h_n, c_n) and the per-step intermediates backward needs."""
    H = args.H
    mask = step_masks(args)
    x = zero_padding(args, args.x)
    h, c = args.h0, args.c0
    y = np.zeros((args.T, args.B, H), dtype=args.dtype)
    steps = []
    for t in range(args.T):
        a = x[t] @ args.w_ih.T + args.b_ih + h @ args.w_hh.T + args.b_hh  # (B, 4H)
        i = sigmoid(gate(a, LSTM_I, H))
        f = sigmoid(gate(a, LSTM_F, H))
        g = np.tanh(gate(a, LSTM_G, H))
        o = sigmoid(gate(a, LSTM_O, H))
        c_candidate = f * c + i * g
        tanh_c = np.tanh(c_candidate)
        h_candidate = o * tanh_c
        y[t] = np.where(mask[t] != 0, h_candidate, 0)
        steps.append(dict(h_prev=h, c_prev=c, i=i, f=f, g=g, o=o, tanh_c=tanh_c))
        h = np.where(mask[t] != 0, h_candidate, h)
        c = np.where(mask[t] != 0, c_candidate, c)
    return (y, h, c), steps


def lstm_backward_from(args: RNNArgs, steps, upstream) -> dict[str, np.ndarray]:
    """Backpropagation through time over the intermediates of :func:`lstm_forward_saving`;
    upstream = (dy (T,B,H), dh_n (B,H), dc_n (B,H))."""
    mask = step_masks(args)
    grads = {name: np.zeros_like(value) for name, value in args.inputs().items()}
    x = zero_padding(args, args.x)
    dy, dh_n, dc_n = upstream
    dy = zero_padding(args, dy)
    dh, dc = dh_n.copy(), dc_n.copy()
    for t in reversed(range(args.T)):
        s = steps[t]
        i, f, g, o, tanh_c = s["i"], s["f"], s["g"], s["o"], s["tanh_c"]
        dh_candidate = mask[t] * (dy[t] + dh)
        dc_candidate = mask[t] * dc + dh_candidate * o * (1 - tanh_c * tanh_c)
        da = np.concatenate([
            dc_candidate * g * i * (1 - i),              # input gate
            dc_candidate * s["c_prev"] * f * (1 - f),    # forget gate
            dc_candidate * i * (1 - g * g),              # cell candidate
            dh_candidate * tanh_c * o * (1 - o),         # output gate
        ], axis=1)                                       # (B, 4H)
        grads["x"][t] = da @ args.w_ih
        grads["w_ih"] += da.T @ x[t]
        grads["w_hh"] += da.T @ s["h_prev"]
        grads["b_ih"] += da.sum(axis=0)
        dh = (1 - mask[t]) * dh + da @ args.w_hh
        dc = (1 - mask[t]) * dc + dc_candidate * f
    grads["b_hh"] = grads["b_ih"].copy()
    grads["h0"], grads["c0"] = dh, dc
    return grads


# ----------------------------------------------------------------------------- backend

FORWARD = {"gru": gru_forward_saving, "lstm": lstm_forward_saving}
BACKWARD = {"gru": gru_backward_from, "lstm": lstm_backward_from}


class ReferencePrepared(Prepared):
    def forward(self):
        outputs, _steps = FORWARD[self.args.cell](self.args)
        return outputs

    def forward_train(self):
        outputs, steps = FORWARD[self.args.cell](self.args)
        self.saved_bytes = sum(a.nbytes for step in steps for a in step.values())
        return outputs, steps

    def backward(self, saved, upstream):
        return BACKWARD[self.args.cell](self.args, saved, upstream)


def prepare(args: RNNArgs) -> ReferencePrepared:
    return ReferencePrepared(args)


gru_forward, gru_backward, lstm_forward, lstm_backward = convenience_api(prepare)
