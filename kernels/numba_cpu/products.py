"""The products: with the weights on packed panels (:func:`matmul_nt`, the per-step
recurrent product and the all-steps input projection and dx), and the weight gradients on
tiles (narrow) or BLAS (wide), each a worker's share of a team's product."""
from __future__ import annotations

import numpy as np

from .blas import gemm
from .jit import JIT, cached_njit, nonnegative
from .team import UNIT_ALIGN, barrier, share
from .tiles import PANEL_COLS, PANEL_ROWS, _gradient_tile, _panel_tile


@cached_njit(**JIT)
def matmul_nt(a, k0, K, panels, block, unit, N, out, out_col):
    """out[:, out_col:out_col+N] = a[:, k0:k0+K] @ W[r:r+N, k0:k0+K].T with
    r = block * R + unit: the per-step recurrent product (and the all-steps ones), over
    rows of one block of W (blocks, R, depth) (forward: the gate blocks of w_hh;
    backward: w_hh.T, one block), as :func:`pack_panels` lays it out: panels (blocks,
    ceil(R/PANEL_COLS), depth, PANEL_COLS). a (B,*) and out (B,*) C-contiguous; unit a
    multiple of PANEL_COLS."""
    B = a.shape[0]
    if out.shape[0] != B or k0 < 0 or k0 + K > a.shape[1] or out_col < 0 \
            or out_col + N > out.shape[1] or N < 0 or unit < 0:
        raise ValueError("matmul_nt: operands out of bounds")
    if N == 0:          # a worker with no units (H < workers * UNIT_ALIGN)
        return
    first = unit // PANEL_COLS
    count = (N + PANEL_COLS - 1) // PANEL_COLS
    if unit % PANEL_COLS or block < 0 or block >= panels.shape[0] \
            or first + count > panels.shape[1] or k0 + K > panels.shape[2] \
            or panels.shape[3] != PANEL_COLS:
        raise ValueError("matmul_nt: rows out of the weight panels")
    last_tile = B - PANEL_ROWS
    for p in range(first, first + count):
        column = out_col + (p - first) * PANEL_COLS
        cols = min(PANEL_COLS, N - (p - first) * PANEL_COLS)
        if B < PANEL_ROWS:      # small batches: one tile of all rows
            _panel_tile(a, 0, k0, K, panels, block, p, out, column, cols, B)
        else:
            for row in range(0, last_tile + 1, PANEL_ROWS):
                _panel_tile(a, row, k0, K, panels, block, p, out, column, cols,
                            PANEL_ROWS)
            if B % PANEL_ROWS:  # the last rows as one more tile, overlapping the one
                _panel_tile(a, last_tile, k0, K, panels, block, p, out, column,  # before
                            cols, PANEL_ROWS)


@cached_njit(**JIT)
def team_gemm(team, a, b, c, beta):
    """:func:`gemm` shared by the team: each worker takes a block of c's rows, or of its
    columns when those are more, so the operand every worker reads whole is the
    smaller one. No barrier: callers place one before c is read by other workers."""
    m, n = c.shape
    if m >= n:
        start, stop = share(team, m, 1)
        gemm(a[start:stop], b, c[start:stop], beta)
    else:
        start, stop = share(team, n, UNIT_ALIGN)
        gemm(a, b[:, start:stop], c[:, start:stop], beta)


#: :func:`weight_gradient` runs on tiles of its own where x has at most this many
#: columns (three panels), and calls BLAS for wider ones, where BLAS's packing pays.
GRADIENT_MAX_COLUMNS = 96
#: depth chunk of the tiles: x's chunk stays in cache while every tile of the worker's
#: rows passes over it
GRADIENT_DEPTH = 128
#: tile rows that share one cache line of d's rows: their tiles run back to back
GRADIENT_ROWS = 16


@cached_njit(**JIT)
def weight_gradient(team, d, x, out, accumulate):
    """out (+)= d.T @ x, this worker's part of out (the same part for every call of a
    shape, so a worker only ever adds to its own: no barrier between calls).
    d (M,N): gradients of N outputs over M rows (a column block is fine); x (M,K) the
    inputs of those rows; out (N,K); x and out with contiguous rows. Narrow products
    (K <= GRADIENT_MAX_COLUMNS: the input weights of small inputs, the recurrent ones
    of small H) run their whole panels of PANEL_COLS columns on
    :func:`_gradient_tile`, which reads d and x where they lie, and the columns past
    them on BLAS; wider ones run on BLAS, which packs its operands."""
    M, N = d.shape
    K = x.shape[1]
    if x.shape[0] != M or out.shape[0] != N or out.shape[1] != K:
        raise ValueError("weight_gradient: shapes do not match")
    if K > 1 and (x.strides[1] != x.itemsize or out.strides[1] != out.itemsize):
        raise ValueError("weight_gradient: x and out need contiguous rows")
    if K > GRADIENT_MAX_COLUMNS:
        team_gemm(team, d.T, x, out, 1.0 if accumulate else 0.0)
        return
    start, stop = share(team, N, UNIT_ALIGN)
    if M == 0:
        if not accumulate:
            out[start:stop] = 0
        return
    whole = K // PANEL_COLS * PANEL_COLS
    for m0 in range(0, M, GRADIENT_DEPTH):
        depth = min(GRADIENT_DEPTH, M - m0)
        add = accumulate or m0 > 0
        for block in range(start, stop, GRADIENT_ROWS):
            block_stop = min(block + GRADIENT_ROWS, stop)
            for i0 in range(0, whole, PANEL_COLS):
                for g in range(block, block_stop, PANEL_ROWS):  # the last: fewer rows
                    _gradient_tile(d, m0, g, x, i0, depth, out, add,
                                   min(PANEL_ROWS, block_stop - g))
    if whole < K and start < stop:
        gemm(d[:, start:stop].T, x[:, whole:], out[start:stop, whole:],
             1.0 if accumulate else 0.0)


@cached_njit(**JIT)
def gate_products(a, panels, gates, H, start, stop, out):
    """out[:, g*H + start : g*H + stop] = a @ W[g*H + start : g*H + stop].T for the
    first ``gates`` blocks of H rows of W: a worker's units of every gate. a (B,K),
    panels of W as :func:`matmul_nt` (depth K), out (B,gates*H) or wider."""
    for gate in range(gates):
        matmul_nt(a, 0, a.shape[1], panels, gate, start, stop - start, out,
                  gate * H + start)


@cached_njit(**JIT)
def column_sums(team, rows, out):
    """out = rows.sum(axis=0) with float64 accumulation, this worker's columns.
    rows (M,N), out (N,)."""
    start, stop = share(team, out.shape[0], UNIT_ALIGN)
    start, stop = nonnegative(start), nonnegative(stop)
    total = np.zeros(stop - start, np.float64)
    for i in range(rows.shape[0]):
        for unit in range(stop - start):
            total[unit] += rows[i, start + unit]
    for unit in range(stop - start):
        out[start + unit] = total[unit]


@cached_njit(**JIT)
def weight_gradient_from_states(team, d_rows, y, h0, out):
    """out = sum over steps t of d_t.T @ h_{t-1} (h_{-1} = h0), as two products over the
    rows of y, with no copy of the state sequence. d_rows (T*B,N) holds d_t in rows
    t*B..t*B+B-1 (a column block is fine); y (T,B,H), h0 (B,H), out (N,H). Rows past
    a sequence's length must be zero: y is zero there, not the carried state."""
    T, B, H = y.shape
    weight_gradient(team, d_rows[:B], h0, out, False)
    if T > 1:
        weight_gradient(team, d_rows[B:], y.reshape((T * B, H))[:(T - 1) * B], out, True)


#: rows one pass of an all-steps product takes: its panels then stay in L2 while the
#: rows stream through
PASS_ROWS = 256


@cached_njit(**JIT)
def all_steps_product(a, panels, gates, H, start, stop, out):
    """:func:`gate_products` over the T*B rows of all steps, in passes of PASS_ROWS to
    2 * PASS_ROWS rows. a (T*B,K), out (T*B,gates*H) or wider."""
    M = a.shape[0]
    passes = max(1, M // PASS_ROWS)
    for i in range(passes):
        first, stop_row = i * M // passes, (i + 1) * M // passes
        gate_products(a[first:stop_row], panels, gates, H, start, stop,
                      out[first:stop_row])


@cached_njit(**JIT)
def input_gradients(team, d_gates, x, w_ih_t, dx, dw_ih, db_ih):
    """dx = d_gates @ w_ih, dw_ih = d_gates.T @ x, db_ih = column sums, each one pass over
    all T*B rows. d_gates (T,B,G*H), x (T,B,I), w_ih_t: w_ih.T laid out for
    :func:`matmul_nt` (one block of I rows, depth G*H)."""
    T, B, I = x.shape
    rows = d_gates.reshape((T * B, d_gates.shape[2]))
    start, stop = share(team, I, UNIT_ALIGN)
    all_steps_product(rows, w_ih_t, 1, I, start, stop, dx.reshape((T * B, I)))
    weight_gradient(team, rows, x.reshape((T * B, I)), dw_ih, False)
    column_sums(team, rows, db_ih)


@cached_njit(**JIT)
def project_inputs(team, x, w_ih, gates, gi):
    """gi = x @ w_ih.T for all steps at once, this worker's slice of the units of every
    gate, then a barrier (every worker reads all of gi's rows). x (T,B,I), w_ih laid out
    for :func:`matmul_nt` (``gates`` blocks of H rows, depth I), gi (T,B,gates*H)."""
    T, B, I = x.shape
    H = gi.shape[2] // gates
    start, stop = share(team, H, UNIT_ALIGN)
    all_steps_product(x.reshape((T * B, I)), w_ih, gates, H, start, stop,
                      gi.reshape((T * B, gates * H)))
    barrier(team)
