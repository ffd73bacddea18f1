"""The pointwise functions: one step's gate math and state update (forward) and gate
gradients (backward), for a worker's sequences and hidden units.

Every function takes one step's 2-D arrays (B, width), the worker's sequences ``seqs`` (a
slice) and its hidden units ``start, stop`` (:func:`.team.share`), and works on those rows'
units. They index those arrays rather than take row views, and call nothing LLVM does not
inline: a view, or an array passed to a call, updates the array's reference count
atomically (a cache line every worker would write for every row), and a reference count
updated through two noalias arguments sharing one count breaks DISJOINT_JIT's promise.
Their loops run ``for unit in range(stop - start)`` with ``j = start + unit`` and start
marked :func:`.jit.nonnegative`: LLVM proves j >= 0 only in that form, and a possibly
negative index keeps a loop scalar. One call serves all of a worker's sequences, so the
call's fixed cost is paid once per step, not once per sequence.

Gate math runs in the problem's dtype (:mod:`.gates`); the backward's loops and the
gradients they carry run in float64 (they have no transcendental functions but LSTM's
tanh(c)). A sequence past its length (lengths (B,), ONNX semantics) keeps its state,
writes y = 0 and gets zero gate gradients.

Training saves only the gate activations (plus W_hn h + b_hn for reset-after GRUs, plus
the cell states for LSTMs) in the SAVED_* slots below; backward reads the previous hidden
states from the output y and h0, so no state sequence is saved twice.
"""
from __future__ import annotations

import numpy as np

from ..contract import GRU_N, GRU_R, GRU_Z, LSTM_F, LSTM_G, LSTM_I, LSTM_O
from .gates import gate_sigmoid, gate_tanh
from .jit import DISJOINT_JIT, cached_njit, nonnegative

# Slots of the GRU's saved activations, each H wide: r, z, n and (reset-after only) the
# recurrent part of the candidate, W_hn h + b_hn, that dr needs.
SAVED_R, SAVED_Z, SAVED_N, SAVED_GH_N = 0, 1, 2, 3
# Slots of the LSTM's saved activations, each H wide: the gates and the new cell state.
SAVED_I, SAVED_F, SAVED_G, SAVED_O, SAVED_C = 0, 1, 2, 3, 4


@cached_njit(**DISJOINT_JIT)
def add_rows(into, rows, lengths, t, replace, start, stop):
    """into[b, start:stop] (+)= rows[b, start:stop] for the sequences inside step t.
    into (B,H) float64, rows (B,H)."""
    start, stop = nonnegative(start), nonnegative(stop)
    for b in range(into.shape[0]):
        if t < lengths[b]:
            for unit in range(stop - start):
                j = start + unit
                into[b, j] = rows[b, j] if replace else into[b, j] + rows[b, j]


@cached_njit(**DISJOINT_JIT)
def gru_reset_rows(gi_t, gh, bias_gi, prev, reset_state, saved_t, seqs, start, stop):
    """Reset-before pre-pass for the sequences seqs (a slice), units start:stop: r into
    saved_t's r slot and reset_state = r * h. gi_t, gh (B,3H) (gh's r part filled),
    bias_gi (3H,); prev, reset_state (B,H); saved_t (B,3H)."""
    H = nonnegative(prev.shape[1])
    start, stop = nonnegative(start), nonnegative(stop)
    R = GRU_R * H
    for b in range(seqs.start, seqs.stop):
        for unit in range(stop - start):
            j = start + unit
            r = gate_sigmoid(gi_t[b, R + j] + bias_gi[R + j] + gh[b, R + j],
                             prev.dtype)
            saved_t[b, SAVED_R * H + j] = r
            reset_state[b, j] = r * prev[b, j]


@cached_njit(**DISJOINT_JIT)
def gru_step_rows(gi_t, gh, bias_gi, b_hn, reset_after, prev, new, y_t, saved_t,
                  lengths, t, seqs, start, stop):
    """Step t of the GRU for the sequences seqs (a slice), units start:stop: gates from
    gi_t, gh (B,3H) and the biases (see :func:`gru_forward_kernel`); from the state
    prev (B,H) writes the new state to new and y_t (B,H) and the activations to
    saved_t (B,4H) or (B,3H) (reset-before: r is there already, from
    :func:`gru_reset_rows`). Reset-after, gh's n part leaves holding r * (W_hn h +
    b_hn). A sequence past its length (lengths (B,)) keeps its state and outputs
    zeros."""
    H = nonnegative(prev.shape[1])
    start, stop = nonnegative(start), nonnegative(stop)
    R, Z, N = GRU_R * H, GRU_Z * H, GRU_N * H
    dtype = prev.dtype
    for b in range(seqs.start, seqs.stop):
        if t >= lengths[b]:
            for unit in range(stop - start):
                new[b, start + unit] = prev[b, start + unit]
                y_t[b, start + unit] = 0
            continue
        if reset_after:
            # r, then r * (W_hn h + b_hn) in place of W_hn h in gh: the loop below
            # then serves both variants (a variant test inside it kept LLVM computing
            # r for reset-before too)
            for unit in range(stop - start):
                j = start + unit
                r = gate_sigmoid(gi_t[b, R + j] + bias_gi[R + j] + gh[b, R + j], dtype)
                gh_n = gh[b, N + j] + b_hn[j]
                saved_t[b, SAVED_R * H + j] = r
                saved_t[b, SAVED_GH_N * H + j] = gh_n
                gh[b, N + j] = r * gh_n
        for unit in range(stop - start):
            j = start + unit
            z = gate_sigmoid(gi_t[b, Z + j] + bias_gi[Z + j] + gh[b, Z + j], dtype)
            n = gate_tanh(gi_t[b, N + j] + bias_gi[N + j] + gh[b, N + j], dtype)
            h_new = n + z * (prev[b, j] - n)
            saved_t[b, SAVED_Z * H + j] = z
            saved_t[b, SAVED_N * H + j] = n
            new[b, j] = h_new
            y_t[b, j] = h_new


@cached_njit(**DISJOINT_JIT)
def gru_backward_rows(dy_t, saved_t, prev, reset_after, dh, d_gi_t, d_gh_t, reset_t,
                      lengths, t, seqs, start, stop):
    """Step t of the GRU backward for the sequences seqs (a slice), units start:stop.
    dy_t (B,H), saved_t (B,4H) or (B,3H), prev (B,H) the state before the step; dh
    (B,H) float64 holds dL/dh after the step and leaves with its direct part (d * z).
    Writes d_gi_t (B,3H) and, reset-after, d_gh_t (B,3H) (the recurrent parts'
    gradients: r*da_n in n) or, reset-before, reset_t (B,H) = r*h_prev, the input of
    W_hn (dr waits for d(r*h)). A sequence past its length (lengths (B,)) gets zeros
    there and keeps dh. Several short loops, each over few arrays (docs/PERFORMANCE.md
    says why)."""
    H = nonnegative(dy_t.shape[1])
    start, stop = nonnegative(start), nonnegative(stop)
    R, Z, N = GRU_R * H, GRU_Z * H, GRU_N * H
    for b in range(seqs.start, seqs.stop):
        if t >= lengths[b]:
            for unit in range(stop - start):
                j = start + unit
                d_gi_t[b, R + j] = 0
                d_gi_t[b, Z + j] = 0
                d_gi_t[b, N + j] = 0
                if reset_after:
                    d_gh_t[b, R + j] = 0
                    d_gh_t[b, Z + j] = 0
                    d_gh_t[b, N + j] = 0
                else:
                    reset_t[b, j] = 0
            continue
        for unit in range(stop - start):
            j = start + unit
            dh[b, j] += dy_t[b, j]
        for unit in range(stop - start):
            j = start + unit
            d = dh[b, j]
            z = np.float64(saved_t[b, SAVED_Z * H + j])
            n = np.float64(saved_t[b, SAVED_N * H + j])
            d_gi_t[b, Z + j] = d * (np.float64(prev[b, j]) - n) * z * (1.0 - z)
            d_gi_t[b, N + j] = d * (1.0 - z) * (1.0 - n * n)
        if reset_after:
            for unit in range(stop - start):
                j = start + unit
                r = np.float64(saved_t[b, SAVED_R * H + j])
                gh_n = np.float64(saved_t[b, SAVED_GH_N * H + j])
                d_gi_t[b, R + j] = np.float64(d_gi_t[b, N + j]) * gh_n * r * (1.0 - r)
            for unit in range(stop - start):
                j = start + unit
                r = np.float64(saved_t[b, SAVED_R * H + j])
                d_gh_t[b, R + j] = d_gi_t[b, R + j]
                d_gh_t[b, Z + j] = d_gi_t[b, Z + j]
                d_gh_t[b, N + j] = d_gi_t[b, N + j] * r
        else:
            for unit in range(stop - start):
                j = start + unit
                reset_t[b, j] = saved_t[b, SAVED_R * H + j] * prev[b, j]
        for unit in range(stop - start):
            j = start + unit
            dh[b, j] *= np.float64(saved_t[b, SAVED_Z * H + j])


@cached_njit(**DISJOINT_JIT)
def gru_reset_backward_rows(d_reset, saved_t, prev, dh, d_gi_t, lengths, t, seqs,
                            start, stop):
    """Reset-before, step t, the sequences seqs (a slice) inside it (lengths (B,)),
    units start:stop: from d(r*h) in d_reset (B,H), the r gradient into d_gi_t (B,3H)
    and the r-path into dh (B,H) float64."""
    H = nonnegative(d_reset.shape[1])
    start, stop = nonnegative(start), nonnegative(stop)
    R = GRU_R * H
    for b in range(seqs.start, seqs.stop):
        if t >= lengths[b]:
            continue
        for unit in range(stop - start):
            j = start + unit
            r = np.float64(saved_t[b, SAVED_R * H + j])
            d_reset_j = np.float64(d_reset[b, j])
            d_gi_t[b, R + j] = d_reset_j * np.float64(prev[b, j]) * r * (1.0 - r)
            dh[b, j] += d_reset_j * r


@cached_njit(**DISJOINT_JIT)
def lstm_step_rows(gi_t, gh, bias, prev, new, c, y_t, saved_t, lengths, t, seqs, start,
                   stop):
    """Step t of the LSTM for the sequences seqs (a slice), units start:stop: gates
    from gi_t, gh (B,4H) and bias (4H,); from the state prev (B,H) writes the new one
    to new and y_t (B,H), updates c (B,H) and writes saved_t (B,5H). A sequence past
    its length (lengths (B,)) keeps its state and outputs zeros. Two loops, the gates,
    then the state, which run faster than one fused loop (docs/PERFORMANCE.md)."""
    H = nonnegative(prev.shape[1])
    start, stop = nonnegative(start), nonnegative(stop)
    GI, GF, GG, GO = LSTM_I * H, LSTM_F * H, LSTM_G * H, LSTM_O * H
    dtype = prev.dtype
    for b in range(seqs.start, seqs.stop):
        if t >= lengths[b]:
            for unit in range(stop - start):
                new[b, start + unit] = prev[b, start + unit]
                y_t[b, start + unit] = 0
            continue
        for unit in range(stop - start):
            j = start + unit
            saved_t[b, SAVED_I * H + j] = gate_sigmoid(
                gi_t[b, GI + j] + bias[GI + j] + gh[b, GI + j], dtype)
            saved_t[b, SAVED_F * H + j] = gate_sigmoid(
                gi_t[b, GF + j] + bias[GF + j] + gh[b, GF + j], dtype)
            saved_t[b, SAVED_G * H + j] = gate_tanh(
                gi_t[b, GG + j] + bias[GG + j] + gh[b, GG + j], dtype)
            saved_t[b, SAVED_O * H + j] = gate_sigmoid(
                gi_t[b, GO + j] + bias[GO + j] + gh[b, GO + j], dtype)
        for unit in range(stop - start):
            j = start + unit
            c_new = (saved_t[b, SAVED_F * H + j] * c[b, j]
                     + saved_t[b, SAVED_I * H + j] * saved_t[b, SAVED_G * H + j])
            h_new = saved_t[b, SAVED_O * H + j] * gate_tanh(c_new, dtype)
            saved_t[b, SAVED_C * H + j] = c_new
            c[b, j] = c_new
            new[b, j] = h_new
            y_t[b, j] = h_new


@cached_njit(**DISJOINT_JIT)
def lstm_backward_rows(dy_t, saved_t, c_prev, c_col, dh, dc, d_gi_t, lengths, t, seqs,
                       start, stop):
    """Step t of the LSTM backward for the sequences seqs (a slice), units start:stop.
    dy_t (B,H), saved_t (B,5H); the cell state before the step is
    c_prev[b, c_col:c_col+H] (c0, or the c slot of the step before); dh, dc (B,H)
    float64 hold the gradients after the step (dh is clobbered), dc leaves with the
    one before it. Writes d_gi_t (B,4H); a sequence past its length (lengths (B,))
    gets zeros there and keeps dh and dc. Short loops over few arrays (see
    :func:`gru_backward_rows` for why)."""
    H = nonnegative(dy_t.shape[1])
    start, stop = nonnegative(start), nonnegative(stop)
    c_col = nonnegative(c_col)
    GI, GF, GG, GO = LSTM_I * H, LSTM_F * H, LSTM_G * H, LSTM_O * H
    for b in range(seqs.start, seqs.stop):
        if t >= lengths[b]:
            for unit in range(stop - start):
                j = start + unit
                d_gi_t[b, GI + j] = 0
                d_gi_t[b, GF + j] = 0
                d_gi_t[b, GG + j] = 0
                d_gi_t[b, GO + j] = 0
            continue
        for unit in range(stop - start):
            j = start + unit
            dh[b, j] += dy_t[b, j]
        for unit in range(stop - start):
            j = start + unit
            o = np.float64(saved_t[b, SAVED_O * H + j])
            tanh_c = gate_tanh(np.float64(saved_t[b, SAVED_C * H + j]), dy_t.dtype)
            d_h = dh[b, j]
            d_gi_t[b, GO + j] = d_h * tanh_c * o * (1.0 - o)
            dc[b, j] += d_h * o * (1.0 - tanh_c * tanh_c)
        for unit in range(stop - start):
            j = start + unit
            i = np.float64(saved_t[b, SAVED_I * H + j])
            f = np.float64(saved_t[b, SAVED_F * H + j])
            g = np.float64(saved_t[b, SAVED_G * H + j])
            d_c = dc[b, j]
            d_gi_t[b, GI + j] = d_c * g * i * (1.0 - i)
            d_gi_t[b, GF + j] = d_c * np.float64(c_prev[b, c_col + j]) * f * (1.0 - f)
            d_gi_t[b, GG + j] = d_c * i * (1.0 - g * g)
        for unit in range(stop - start):
            j = start + unit
            dc[b, j] *= np.float64(saved_t[b, SAVED_F * H + j])
