"""The drivers: one worker's whole forward or backward pass of a GRU or LSTM.

* forward: one product projects the inputs of all T steps, ``gi = x @ w_ih.T``; then per
  step one recurrent product for all gates, ``gh = h @ w_hh.T``, and one call of a
  pointwise function that adds the biases, applies the gates and updates the state of the
  worker's sequences (reset-before GRUs need a second, (B,H)x(H,H) product per step,
  because r multiplies h before W_hn).


* backward: per step a pointwise function writes the gate pre-activation gradients of all
  T steps into one buffer, then one recurrent product carries dh back a step; the weight
  and input gradients are then single large products over all T*B rows.


Each driver runs on every worker of a team (:mod:`.team`) at once.
"""
from __future__ import annotations

from ..contract import GRU_N
from .jit import JIT, cached_njit
from .mkl import packed_product
from .pointwise import (SAVED_C, add_rows, gru_backward_rows, gru_reset_backward_rows,
                        gru_reset_rows, gru_step_rows, lstm_backward_rows, lstm_step_rows)


from .products import (column_sums, gate_products, input_gradients, matmul_nt,
                       project_inputs, weight_gradient, weight_gradient_from_states)


from .team import barrier, step_part


@cached_njit(**JIT)
def previous_states(y, h0, t):
    """The state each sequence entered step t with, where step t is inside it: h0 at
    t = 0, else y[t-1] (a sequence inside step t was inside step t-1, so y is unmasked
    there). y (T,B,H), h0 (B,H); returns (B,H)."""
    return h0 if t == 0 else y[t - 1]


@cached_njit(**JIT)
def gru_forward_kernel(team, x, h0, w_ih, w_hh, bias_gi, b_hn, lengths, reset_after, y,
                       h, saved, gi, gh, reset_state, states, mkl_address, mkl_w_hh, mkl_w_hn):
    """GRU forward over all T steps.

    x (T,B,I); h0 (B,H); w_ih and w_hh laid out for :func:`matmul_nt` (3 blocks of H
    rows, depth I and H); bias_gi (3H,), of x's dtype (the gate math runs in it): the
    biases added to the input part (b_ih, plus b_hh for r and z, plus b_hn when
    reset-before); b_hn (H,): the candidate's recurrent bias when reset-after (r
    multiplies it; unused when reset-before); lengths (B,) int64.
    Outputs: y (T,B,H); h (B,H) = h_n. saved (T,B,4H) (reset-after) or (T,B,3H)
    receives r, z, n [, W_hn h + b_hn] for backward; inference passes a (1,B,4H)
    scratch that each step overwrites.
    Workspaces: gi (T,B,3H), gh (B,3H) (reset-after, :func:`gru_step_rows` overwrites
    its n part), reset_state (B,H) (r*h, reset-before only),
    states (2,B,H): the state before and after a step (other workers still read the
    one before while this worker writes its units of the next).
    mkl_address: cblas_?gemm_compute's address for the per-step products (:mod:`.mkl`), or
    0 for the tiles; then mkl_w_hh (workers, *) holds each worker's packed W_hh rows of the
    gates of the step's first product (all three when reset-after, r and z when
    reset-before) and mkl_w_hn (workers, *) its packed W_hn (reset-before).
    """
    T, B, _ = x.shape
    H = h0.shape[1]
    N = GRU_N * H
    seqs, start, stop, step_team = step_part(team, B, H)
    mkl = mkl_address != 0 and stop - start == H
    worker = team[0]
    states[0, seqs, start:stop] = h0[seqs, start:stop]
    project_inputs(team, x, w_ih, 3, gi)     # and a barrier
    for t in range(T):
        prev, new = states[t % 2], states[(t + 1) % 2]
        gi_t, y_t = gi[t], y[t]
        saved_t = saved[t if saved.shape[0] == T else 0]
        first_gates = 3 if reset_after else 2
        if mkl:
            packed_product(mkl_address, prev[seqs], mkl_w_hh[worker], first_gates * H,
                           gh[seqs])
        else:
            gate_products(prev[seqs], w_hh, first_gates, H, start, stop, gh[seqs])
        if not reset_after:
            # r is needed before the candidate's product: W_hn (r*h).
            gru_reset_rows(gi_t, gh, bias_gi, prev, reset_state, saved_t, seqs, start,
                           stop)
            barrier(step_team)
            if mkl:
                packed_product(mkl_address, reset_state[seqs], mkl_w_hn[worker], H,
                               gh[seqs, N:])
            else:
                matmul_nt(reset_state[seqs], 0, H, w_hh, GRU_N, start, stop - start,
                          gh[seqs], N + start)
        gru_step_rows(gi_t, gh, bias_gi, b_hn, reset_after, prev, new, y_t, saved_t,
                      lengths, t, seqs, start, stop)
        barrier(step_team)
    h[seqs, start:stop] = states[T % 2, seqs, start:stop]


@cached_njit(**JIT)
def gru_backward_kernel(team, x, h0, w_ih_t, w_hh_t, lengths, reset_after, y, saved,
                        dy, dh_n, dx, dh0, dw_ih, dw_hh, db_ih, db_hh,
                        d_gi, d_gh, reset_states, dh, dh_rec, d_reset, mkl_address,
                        mkl_wt_hh, mkl_wt_hn):
    """GRU backpropagation through time.

    Inputs as :func:`gru_forward_kernel`, except the weights: w_ih.T and w_hh.T laid
    out for :func:`matmul_nt` (one block of I or H rows, depth 3H); y (T,B,H) and saved of its
    training run,
    upstream dy (T,B,H), dh_n (B,H). Outputs: dx (T,B,I), dh0 (B,H), dw_ih (3H,I),
    dw_hh (3H,H), db_ih, db_hh (3H,).
    Workspaces: d_gi (T,B,3H) gradients of the gates' input parts (da_r, da_z, da_n);
    reset-after: d_gh (T,B,3H) those of the recurrent parts (da_r, da_z, r*da_n);
    reset-before: reset_states (T,B,H) = r*h_{t-1}, the input of W_hn; unused ones may
    be empty. dh (B,H) float64, the gradient carried back; dh_rec, d_reset (B,H).
    mkl_address: as :func:`gru_forward_kernel`'s; mkl_wt_hh (workers, *) each worker's
    packed W_hh.T columns of the gates whose gradients the step's dh product reads (all
    three when reset-after, r and z when reset-before), mkl_wt_hn its W_hn.T.
    """
    T, B, _ = x.shape
    H = h0.shape[1]
    N = GRU_N * H
    seqs, start, stop, step_team = step_part(team, B, H)
    mkl = mkl_address != 0 and stop - start == H
    worker = team[0]
    dh[seqs, start:stop] = dh_n[seqs, start:stop]
    for t in range(T - 1, -1, -1):
        prev = previous_states(y, h0, t)
        dy_t, saved_t, d_gi_t = dy[t], saved[t], d_gi[t]
        # the workspace a variant does not use is empty: pass a valid array instead
        d_gh_t = d_gh[t] if reset_after else dh_rec
        reset_t = dh_rec if reset_after else reset_states[t]
        gru_backward_rows(dy_t, saved_t, prev, reset_after, dh, d_gi_t, d_gh_t, reset_t,
                          lengths, t, seqs, start, stop)
        barrier(step_team)     # the products below read every worker's gate gradients
        if reset_after and mkl:
            packed_product(mkl_address, d_gh_t[seqs], mkl_wt_hh[worker], H, dh_rec[seqs])
        elif reset_after:
            matmul_nt(d_gh_t[seqs], 0, 3 * H, w_hh_t, 0, start, stop - start,
                      dh_rec[seqs], start)
        else:
            if mkl:                                                         # d(r*h)
                packed_product(mkl_address, d_gi_t[seqs, N:], mkl_wt_hn[worker], H,
                               d_reset[seqs])
            else:
                matmul_nt(d_gi_t[seqs], N, H, w_hh_t, 0, start, stop - start,
                          d_reset[seqs], start)
            gru_reset_backward_rows(d_reset, saved_t, prev, dh, d_gi_t, lengths, t, seqs,
                                    start, stop)
            barrier(step_team)
            if mkl:
                packed_product(mkl_address, d_gi_t[seqs, :N], mkl_wt_hh[worker], H,
                               dh_rec[seqs])
            else:
                matmul_nt(d_gi_t[seqs], 0, N, w_hh_t, 0, start, stop - start,
                          dh_rec[seqs], start)
        add_rows(dh[seqs], dh_rec[seqs], lengths[seqs], t, False, start, stop)
    dh0[seqs, start:stop] = dh[seqs, start:stop]
    barrier(team)              # the gradients below read every worker's sequences
    input_gradients(team, d_gi, x, w_ih_t, dx, dw_ih, db_ih)
    if reset_after:
        d_rows = d_gh.reshape((T * B, 3 * H))
        weight_gradient_from_states(team, d_rows, y, h0, dw_hh)
        column_sums(team, d_rows, db_hh)
    else:
        d_rows = d_gi.reshape((T * B, 3 * H))
        weight_gradient_from_states(team, d_rows[:, :N], y, h0, dw_hh[:N])
        weight_gradient(team, d_rows[:, N:], reset_states.reshape((T * B, H)), dw_hh[N:],
                        False)
        column_sums(team, d_rows, db_hh)


@cached_njit(**JIT)
def lstm_forward_kernel(team, x, h0, c0, w_ih, w_hh, bias, lengths, y, h, c, saved, gi,
                        gh, states, mkl_address, mkl_w_hh):
    """LSTM forward over all T steps.

    x (T,B,I); h0, c0 (B,H); w_ih and w_hh laid out for :func:`matmul_nt` (4 blocks of
    H rows, depth I and H); bias (4H,) = b_ih + b_hh, of x's dtype; lengths (B,)
    int64. Outputs: y (T,B,H); h = h_n and c, the running cell state, = c_n (B,H).
    saved (T,B,5H) receives i, f, g, o and the new c for backward; inference passes a
    (1,B,5H) scratch.
    Workspaces: gi (T,B,4H), gh (B,4H), states (2,B,H); mkl_address and mkl_w_hh (see
    :func:`gru_forward_kernel`).
    """
    T, B, _ = x.shape
    H = h0.shape[1]
    seqs, start, stop, step_team = step_part(team, B, H)
    mkl = mkl_address != 0 and stop - start == H
    states[0, seqs, start:stop] = h0[seqs, start:stop]
    c[seqs, start:stop] = c0[seqs, start:stop]   # read by this worker only
    project_inputs(team, x, w_ih, 4, gi)     # and a barrier
    for t in range(T):
        prev, new = states[t % 2], states[(t + 1) % 2]
        gi_t, y_t = gi[t], y[t]
        saved_t = saved[t if saved.shape[0] == T else 0]
        if mkl:
            packed_product(mkl_address, prev[seqs], mkl_w_hh[team[0]], 4 * H, gh[seqs])
        else:
            gate_products(prev[seqs], w_hh, 4, H, start, stop, gh[seqs])
        lstm_step_rows(gi_t, gh, bias, prev, new, c, y_t, saved_t, lengths, t, seqs,
                       start, stop)
        barrier(step_team)
    h[seqs, start:stop] = states[T % 2, seqs, start:stop]


@cached_njit(**JIT)
def lstm_backward_kernel(team, x, h0, c0, w_ih_t, w_hh_t, lengths, y, saved, dy,
                         dh_n, dc_n, dx, dh0, dc0, dw_ih, dw_hh, db, d_gi, dh, dc, dh_rec,
                         mkl_address, mkl_wt_hh):
    """LSTM backpropagation through time.

    Inputs as :func:`lstm_forward_kernel`, except the weights: w_ih.T and w_hh.T laid
    out for :func:`matmul_nt` (one block of I or H rows, depth 4H); y (T,B,H) and saved of its
    training run,
    upstream dy (T,B,H), dh_n, dc_n (B,H). Outputs: dx (T,B,I), dh0, dc0 (B,H),
    dw_ih (4H,I), dw_hh (4H,H), db (4H,): the gradient of b_ih and of b_hh alike.
    Workspaces: d_gi (T,B,4H) gate pre-activation gradients; dh, dc (B,H) float64,
    the gradients carried back; dh_rec (B,H); mkl_address and mkl_wt_hh (see
    :func:`gru_backward_kernel`).
    """
    T, B, _ = x.shape
    H = h0.shape[1]
    C = SAVED_C * H
    seqs, start, stop, step_team = step_part(team, B, H)
    mkl = mkl_address != 0 and stop - start == H
    dh[seqs, start:stop] = dh_n[seqs, start:stop]
    dc[seqs, start:stop] = dc_n[seqs, start:stop]
    for t in range(T - 1, -1, -1):
        dy_t, saved_t, d_gi_t = dy[t], saved[t], d_gi[t]
        # a sequence inside step t was inside t-1: its saved c there is current
        c_prev, c_col = (c0, 0) if t == 0 else (saved[t - 1], C)
        lstm_backward_rows(dy_t, saved_t, c_prev, c_col, dh, dc, d_gi_t, lengths, t, seqs,
                           start, stop)
        barrier(step_team)
        if mkl:
            packed_product(mkl_address, d_gi_t[seqs], mkl_wt_hh[team[0]], H, dh_rec[seqs])
        else:
            matmul_nt(d_gi_t[seqs], 0, 4 * H, w_hh_t, 0, start, stop - start, dh_rec[seqs],
                      start)
        add_rows(dh[seqs], dh_rec[seqs], lengths[seqs], t, True, start, stop)
    dh0[seqs, start:stop] = dh[seqs, start:stop]
    dc0[seqs, start:stop] = dc[seqs, start:stop]
    barrier(team)              # the gradients below read every worker's sequences
    input_gradients(team, d_gi, x, w_ih_t, dx, dw_ih, db)
    weight_gradient_from_states(team, d_gi.reshape((T * B, 4 * H)), y, h0, dw_hh)
