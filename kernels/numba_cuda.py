"""The "numba-cuda" backend: GRU and LSTM forward and backward as numba.cuda kernels.

The structure is cuDNN's and haste's:

* forward: the input projection of all T steps is one tiled matrix product
  (``gi = x @ w_ih.T + b_ih``, (T*B, G*H)); then per step one recurrent product for all gates
  (``gh = h @ w_hh.T + b_hh``) and one fused pointwise kernel that applies the gates, masks
  finished sequences and stores what backward needs (gate activations, the state sequence).
  The reset-before GRU needs ``r`` before its candidate product, so its step is
  product(r, z) -> pointwise(r*h) -> product(n) -> pointwise.
* the persistent path (Diamos et al. 2016) runs all T steps in ONE cooperative launch: each
  block copies its slice of ``w_hh`` (all gates of ``units`` hidden units) into shared memory
  once, and the grid synchronizes between steps. It is chosen automatically for small
  batches when the slices fit on chip across co-resident blocks; ``Prepared.path`` says
  which path runs and ``Prepared.path_reason`` why.
* backward: per step (in reverse) one pointwise kernel (gate gradients, masked) and one
  product ``dh_prev += dgates @ w_hh``; after the loop the big products
  ``dx = dgi @ w_ih``, ``dw_ih = dgi.T @ x``, ``dw_hh = dgh.T @ h_prev`` and column sums for
  the biases.

Device arrays are reused across calls: results of ``forward``/``backward`` are views of
this object's buffers, valid until the next call (``to_numpy`` copies them out).

Sizes in docstrings: T steps, B batch, I input, H hidden, G gates (3 GRU, 4 LSTM);
``saved`` is (T, B, 4H): GRU slots r, z, n and EXTRA (W_hn h + b_hn for reset-after,
r*h for reset-before), LSTM slots i, f, g, o.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from .cells import cell as cell_spec
from .contract import (GRU_N, GRU_R, GRU_Z, LSTM_F, LSTM_G, LSTM_I, LSTM_O,
                       BackendUnavailable, Prepared, RNNArgs, convenience_api, format_bytes)
from .cuda_matmul import (CudaKernelError, Tile, column_sum, cuda, float32, float64, launch,
                          matmul, simulator_enabled)

#: GRU slot of ``saved`` after r, z, n: what the backward of the n gate needs.
GRU_EXTRA = 3
SAVED_SLOTS = 4

PATHS = ("auto", "persistent", "stepwise")


def availability() -> tuple[bool, str | None]:
    if cuda is None:
        return False, "numba.cuda cannot be imported"
    if simulator_enabled():
        return True, None
    try:
        if not cuda.is_available():
            return False, ("no usable CUDA GPU (numba.cuda.is_available() is False); "
                           "set NUMBA_ENABLE_CUDASIM=1 to run on the CUDA simulator")
    except Exception as error:  # a broken driver or toolkit: unavailable, with the reason
        return False, f"numba.cuda fails: {type(error).__name__}: {error}"
    return True, None


def version() -> str:
    import numba
    text = f"numba {numba.__version__}, numba.cuda {getattr(cuda, 'implementation', '?')}"
    try:
        from importlib.metadata import version as package_version
        text += f" (numba-cuda {package_version('numba-cuda')})"
    except Exception:
        pass
    if simulator_enabled():
        return text + ", CUDA simulator"
    device = cuda.get_current_device()
    name = device.name.decode() if isinstance(device.name, bytes) else device.name
    return text + f", {name}, compute capability {device.compute_capability}"


@dataclass(frozen=True)
class CudaConfig:
    """Launch shapes. The defaults suit a large GPU; tests shrink them so tiny problems
    span several tiles, blocks and persistent slices."""

    #: tiles of the big products (input projection, dx, dW): 64x64 outputs per block
    tile: Tile = Tile()
    #: tiles of the per-step products (M = batch); None: chosen by :func:`step_tile_for`
    step_tile: Tile | None = None
    pointwise_threads: int = 256
    #: "auto" picks persistent when it fits (see ``plan_persistent``), else stepwise
    path: str = "auto"
    #: largest batch for which path="auto" picks the persistent kernel (path="persistent"
    #: runs it at any batch whose plan fits)
    persistent_max_batch: int = 4
    persistent_threads: int = 256
    #: threads that split one dot product over H; None: the largest power of two up to a
    #: warp (32) that the block's rows and batch groups leave threads for
    persistent_ksplit: int | None = None
    #: batch entries one thread accumulates per weight it reads (registers)
    persistent_batch_per_thread: int = 4
    #: hidden units per persistent slice; None: as many as fit ``shared_memory_bytes``
    persistent_units: int | None = None
    #: shared memory a block may use without opting in (48 KiB on every CUDA GPU)
    shared_memory_bytes: int = 48 * 1024

    def __post_init__(self):
        if self.path not in PATHS:
            raise ValueError(f"path must be one of {', '.join(PATHS)}, got {self.path!r}")
        for name in ("pointwise_threads", "persistent_max_batch", "persistent_threads",
                     "persistent_batch_per_thread"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("persistent_units", "persistent_ksplit"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")


def default_config() -> CudaConfig:
    """The GPU's launch shapes, or small ones on the simulator, which runs every thread of a
    block as a Python thread (a 256-thread block costs seconds per launch there)."""
    if simulator_enabled():
        return CudaConfig(tile=Tile(4, 4, 2, 2, 4), step_tile=Tile(2, 4, 1, 2, 4),
                          pointwise_threads=32, persistent_threads=32)
    return CudaConfig()


def step_tile_for(batch: int) -> Tile:
    """Tiles for the per-step products, whose M is the batch: a 64-row tile would leave
    most threads idle at small batches and give too few blocks to fill the GPU at
    moderate ones."""
    if batch <= 4:
        return Tile(threads_m=4, threads_n=64, per_thread_m=1, per_thread_n=1, tile_k=32)
    if batch <= 64:
        return Tile(threads_m=16, threads_n=16, per_thread_m=2, per_thread_n=2, tile_k=16)
    return Tile()


# --------------------------------------------------------------------------------------
# Gate math, shared by the stepwise and the persistent kernels.
# --------------------------------------------------------------------------------------

@functools.cache
def cell_functions(dtype: np.dtype, reset_after: bool):
    """Device functions for one dtype; constants are typed so float32 stays float32."""
    one = np.dtype(dtype).type(1)
    zero = np.dtype(dtype).type(0)

    @cuda.jit(device=True)
    def sigmoid(a):
        return one / (one + math.exp(-a))

    @cuda.jit(device=True)
    def gru_point(b, u, H, inside, gi_t, gh_r, gh_z, gh_n, h_prev, h_next, y_t, saved_t,
                  save):
        """One GRU unit: gi_t (B,3H) input part with b_ih; gh_* this unit's recurrent
        parts with b_hh (gh_n = W_hn h + b_hn, or W_hn (r*h) + b_hn reset-before);
        writes h_next[b,u], y_t[b,u] (B,H) and, if save, saved_t (B,4H)."""
        r = sigmoid(gi_t[b, GRU_R * H + u] + gh_r)
        z = sigmoid(gi_t[b, GRU_Z * H + u] + gh_z)
        if reset_after:
            n = math.tanh(gi_t[b, GRU_N * H + u] + r * gh_n)
        else:
            n = math.tanh(gi_t[b, GRU_N * H + u] + gh_n)
        hp = h_prev[b, u]
        candidate = n + z * (hp - n)
        h_next[b, u] = candidate if inside else hp
        y_t[b, u] = candidate if inside else zero
        if save:
            saved_t[b, GRU_R * H + u] = r
            saved_t[b, GRU_Z * H + u] = z
            saved_t[b, GRU_N * H + u] = n
            if reset_after:
                saved_t[b, GRU_EXTRA * H + u] = gh_n

    @cuda.jit(device=True)
    def gru_reset_point(b, u, H, gi_t, gh_r, h_prev, rh):
        """Reset-before GRU, first half of a step: rh[b,u] = r * h_prev[b,u]."""
        rh[b, u] = sigmoid(gi_t[b, GRU_R * H + u] + gh_r) * h_prev[b, u]

    @cuda.jit(device=True)
    def lstm_point(b, u, H, inside, gi_t, gh_i, gh_f, gh_g, gh_o, h_prev, c_prev, h_next,
                   c_next, y_t, saved_t, save):
        """One LSTM unit: gi_t (B,4H) with b_ih, gh_* with b_hh; writes h_next, c_next,
        y_t (B,H) and, if save, saved_t (B,4H) = i, f, g, o."""
        i = sigmoid(gi_t[b, LSTM_I * H + u] + gh_i)
        f = sigmoid(gi_t[b, LSTM_F * H + u] + gh_f)
        g = math.tanh(gi_t[b, LSTM_G * H + u] + gh_g)
        o = sigmoid(gi_t[b, LSTM_O * H + u] + gh_o)
        cp = c_prev[b, u]
        c = f * cp + i * g
        h = o * math.tanh(c)
        h_next[b, u] = h if inside else h_prev[b, u]
        c_next[b, u] = c if inside else cp
        y_t[b, u] = h if inside else zero
        if save:
            saved_t[b, LSTM_I * H + u] = i
            saved_t[b, LSTM_F * H + u] = f
            saved_t[b, LSTM_G * H + u] = g
            saved_t[b, LSTM_O * H + u] = o

    return sigmoid, gru_point, gru_reset_point, lstm_point


# --------------------------------------------------------------------------------------
# Stepwise kernels: one thread per (b, u), launched once per step.
# --------------------------------------------------------------------------------------

@functools.cache
def step_kernels(dtype: np.dtype, reset_after: bool, save: bool):
    """Forward pointwise kernels of one step (see each docstring for shapes)."""
    _sigmoid, gru_point, gru_reset_point, lstm_point = cell_functions(dtype, reset_after)

    @cuda.jit
    def gru_step(t, gi_t, gh, lengths, h_prev, h_next, y_t, saved_t):
        """gi_t, gh (B,3H); lengths (B,); h_prev, h_next, y_t (B,H); saved_t (B,4H)."""
        B, H = h_prev.shape
        e = cuda.grid(1)
        if e < B * H:
            b, u = e // H, e % H
            gru_point(b, u, H, t < lengths[b], gi_t, gh[b, GRU_R * H + u],
                      gh[b, GRU_Z * H + u], gh[b, GRU_N * H + u], h_prev, h_next, y_t,
                      saved_t, save)

    @cuda.jit
    def gru_reset_step(gi_t, gh, h_prev, rh):
        """Reset-before GRU: gi_t, gh (B,3H) (r block filled); h_prev, rh (B,H)."""
        B, H = h_prev.shape
        e = cuda.grid(1)
        if e < B * H:
            b, u = e // H, e % H
            gru_reset_point(b, u, H, gi_t, gh[b, GRU_R * H + u], h_prev, rh)

    @cuda.jit
    def lstm_step(t, gi_t, gh, lengths, h_prev, c_prev, h_next, c_next, y_t, saved_t):
        """gi_t, gh (B,4H); lengths (B,); h_*, c_*, y_t (B,H); saved_t (B,4H)."""
        B, H = h_prev.shape
        e = cuda.grid(1)
        if e < B * H:
            b, u = e // H, e % H
            lstm_point(b, u, H, t < lengths[b], gi_t, gh[b, LSTM_I * H + u],
                       gh[b, LSTM_F * H + u], gh[b, LSTM_G * H + u], gh[b, LSTM_O * H + u],
                       h_prev, c_prev, h_next, c_next, y_t, saved_t, save)

    return gru_step, gru_reset_step, lstm_step


@functools.cache
def backward_kernels(dtype: np.dtype, reset_after: bool):
    """Backward pointwise kernels of one step."""
    one = np.dtype(dtype).type(1)
    zero = np.dtype(dtype).type(0)

    @cuda.jit
    def gru_back_step(t, dy_t, dh, lengths, h_prev, saved_t, dgi_t, dgh_t, dh_next):
        """dy_t, dh (carried dL/dh), h_prev, dh_next (B,H); saved_t (B,4H); dgi_t, dgh_t
        (B,3H) gradients of the input and recurrent parts of the gates. Writes
        dh_next = the part of dL/dh_prev that needs no product. Reset-before leaves the
        r blocks to gru_back_reset_step (they need W_hn^T da_n first)."""
        B, H = dh.shape
        e = cuda.grid(1)
        if e < B * H:
            b, u = e // H, e % H
            inside = t < lengths[b]
            d_candidate = dy_t[b, u] + dh[b, u] if inside else zero
            carried = zero if inside else dh[b, u]
            r = saved_t[b, GRU_R * H + u]
            z = saved_t[b, GRU_Z * H + u]
            n = saved_t[b, GRU_N * H + u]
            da_n = d_candidate * (one - z) * (one - n * n)
            da_z = d_candidate * (h_prev[b, u] - n) * z * (one - z)
            dgi_t[b, GRU_Z * H + u] = da_z
            dgi_t[b, GRU_N * H + u] = da_n
            dgh_t[b, GRU_Z * H + u] = da_z
            if reset_after:
                da_r = da_n * saved_t[b, GRU_EXTRA * H + u] * r * (one - r)
                dgi_t[b, GRU_R * H + u] = da_r
                dgh_t[b, GRU_R * H + u] = da_r
                dgh_t[b, GRU_N * H + u] = da_n * r
            else:
                dgh_t[b, GRU_N * H + u] = da_n
            dh_next[b, u] = carried + d_candidate * z

    @cuda.jit
    def gru_back_reset_step(d_rh, h_prev, saved_t, dgi_t, dgh_t, dh_next):
        """Reset-before GRU: d_rh = dL/d(r*h) (B,H) = da_n @ W_hn; fills the r blocks of
        dgi_t, dgh_t (B,3H) and adds the r*h path to dh_next (B,H)."""
        B, H = d_rh.shape
        e = cuda.grid(1)
        if e < B * H:
            b, u = e // H, e % H
            r = saved_t[b, GRU_R * H + u]
            da_r = d_rh[b, u] * h_prev[b, u] * r * (one - r)
            dgi_t[b, GRU_R * H + u] = da_r
            dgh_t[b, GRU_R * H + u] = da_r
            dh_next[b, u] += d_rh[b, u] * r

    @cuda.jit
    def lstm_back_step(t, dy_t, dh, dc, lengths, c_prev, c_t, saved_t, dgates_t, dh_next,
                       dc_next):
        """dy_t, dh, dc (carried), c_prev, c_t (states before/after step t), dh_next,
        dc_next (B,H); saved_t (B,4H); dgates_t (B,4H) gradients of the gate inputs.
        dh_next gets the carried part; the product adds dgates_t @ w_hh."""
        B, H = dh.shape
        e = cuda.grid(1)
        if e < B * H:
            b, u = e // H, e % H
            inside = t < lengths[b]
            d_h = dy_t[b, u] + dh[b, u] if inside else zero
            d_c = dc[b, u] if inside else zero
            carried_h = zero if inside else dh[b, u]
            carried_c = zero if inside else dc[b, u]
            i = saved_t[b, LSTM_I * H + u]
            f = saved_t[b, LSTM_F * H + u]
            g = saved_t[b, LSTM_G * H + u]
            o = saved_t[b, LSTM_O * H + u]
            tanh_c = math.tanh(c_t[b, u])
            d_c = d_c + d_h * o * (one - tanh_c * tanh_c)
            dgates_t[b, LSTM_I * H + u] = d_c * g * i * (one - i)
            dgates_t[b, LSTM_F * H + u] = d_c * c_prev[b, u] * f * (one - f)
            dgates_t[b, LSTM_G * H + u] = d_c * i * (one - g * g)
            dgates_t[b, LSTM_O * H + u] = d_h * tanh_c * o * (one - o)
            dh_next[b, u] = carried_h
            dc_next[b, u] = carried_c + d_c * f

    return gru_back_step, gru_back_reset_step, lstm_back_step


# --------------------------------------------------------------------------------------
# The persistent kernel: all T steps in one cooperative launch.
# --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class PersistentPlan:
    units: int            # hidden units per slice
    slices_per_block: int
    blocks: int
    threads: int
    ksplit: int
    max_batch: int        # the batch rounded up to a power of two (shared array shapes)
    batch_per_thread: int

    @property
    def local_units(self) -> int:
        return self.units * self.slices_per_block

    def shared_bytes(self, gates: int, H: int, itemsize: int) -> tuple[int, int]:
        """(dynamic bytes for the weight slices, static bytes for partial sums and dots)."""
        rows = gates * self.local_units
        return rows * H * itemsize, rows * (self.ksplit + 1) * self.max_batch * itemsize


@functools.cache
def persistent_kernel(dtype: np.dtype, cell: str, reset_after: bool, save: bool,
                      units: int, slices_per_block: int, ksplit: int, max_batch: int,
                      batch_per_thread: int):
    """``kernel(T, gi, w_hh, b_hh, lengths, hs, cs, y, saved, rh)``:
    gi (T,B,G*H) input parts with b_ih; w_hh (G*H,H); b_hh (G*H,); lengths (B,);
    hs, cs (T+1,B,H) state sequences with hs[0], cs[0] the initial states (cs unused for
    GRU); y (T,B,H); saved (T,B,4H) written if ``save``; rh (T,B,H) r*h of each step
    (reset-before GRU only): blocks read other blocks' r*h after a grid sync, and fresh
    addresses every step leave no stale cached line to read.

    Block k owns slices k, k + gridDim, ... of ``units`` hidden units each; its local unit
    lu = j*units + v is hidden unit (k + j*gridDim)*units + v. Its weight rows are kept in
    dynamic shared memory, gate-major: local row g*LU + lu holds w_hh[g*H + unit(lu)].
    """
    _sigmoid, gru_point, gru_reset_point, lstm_point = cell_functions(dtype, reset_after)
    numba_dtype = float32 if np.dtype(dtype) == np.float32 else float64
    zero = np.dtype(dtype).type(0)
    gates = cell_spec(cell).n_gates
    LU = units * slices_per_block
    ROWS = gates * LU
    KS, MAXB, BPT = ksplit, max_batch, batch_per_thread
    PARTIAL_ROWS = ROWS * KS    # shared array shapes must be constants, not expressions
    two_phase = cell_spec(cell).variant_of(reset_after) == "reset_before"

    @cuda.jit(device=True)
    def unit_of(lu):
        return (cuda.blockIdx.x + (lu // units) * cuda.gridDim.x) * units + lu % units

    @cuda.jit(device=True)
    def block_dots(w, row_lo, row_hi, vec, partial, dots):
        """dots[lr, b] = sum_k w[lr, k] * vec[b, k] for local rows lr in [row_lo, row_hi);
        w is (ROWS*H,) flat, vec (B,H). A work item is (row, group of BPT batch entries,
        lane): KS lanes split the row's k range (neighbouring threads read neighbouring
        k), and each weight read serves BPT batch entries."""
        B, H = vec.shape
        tid, threads = cuda.threadIdx.x, cuda.blockDim.x
        groups = (B + BPT - 1) // BPT
        acc = cuda.local.array(BPT, numba_dtype)
        for item in range(tid, (row_hi - row_lo) * groups * KS, threads):
            lane, rest = item % KS, item // KS
            lr, b0 = row_lo + rest // groups, (rest % groups) * BPT
            count = min(BPT, B - b0)
            for j in range(count):
                acc[j] = zero
            for k in range(lane, H, KS):
                weight = w[lr * H + k]
                for j in range(count):
                    acc[j] += weight * vec[b0 + j, k]
            for j in range(count):
                partial[lr * KS + lane, b0 + j] = acc[j]
        cuda.syncthreads()
        for item in range(tid, (row_hi - row_lo) * B, threads):
            lr, b = row_lo + item // B, item % B
            total = zero
            for lane in range(KS):
                total += partial[lr * KS + lane, b]
            dots[lr, b] = total
        cuda.syncthreads()

    @cuda.jit
    def kernel(T, gi, w_hh, b_hh, lengths, hs, cs, y, saved, rh):
        grid = cuda.cg.this_grid()
        B, H = hs.shape[1], hs.shape[2]
        tid, threads = cuda.threadIdx.x, cuda.blockDim.x
        w = cuda.shared.array(0, numba_dtype)
        partial = cuda.shared.array((PARTIAL_ROWS, MAXB), numba_dtype)
        dots = cuda.shared.array((ROWS, MAXB), numba_dtype)
        for e in range(tid, ROWS * H, threads):
            lr, k = e // H, e % H
            u = unit_of(lr % LU)
            w[e] = w_hh[(lr // LU) * H + u, k] if u < H else zero
        cuda.syncthreads()
        for t in range(T):
            if two_phase:
                block_dots(w, 0, 2 * LU, hs[t], partial, dots)    # r and z rows
                for e in range(tid, LU * B, threads):
                    lu, b = e // B, e % B
                    u = unit_of(lu)
                    if u < H:
                        gru_reset_point(b, u, H, gi[t], dots[GRU_R * LU + lu, b]
                                        + b_hh[GRU_R * H + u], hs[t], rh[t])
                        if save:
                            saved[t, b, GRU_EXTRA * H + u] = rh[t, b, u]
                grid.sync()
                block_dots(w, 2 * LU, 3 * LU, rh[t], partial, dots)  # n rows on r*h
            else:
                block_dots(w, 0, ROWS, hs[t], partial, dots)
            for e in range(tid, LU * B, threads):
                lu, b = e // B, e % B
                u = unit_of(lu)
                if u < H:
                    inside = t < lengths[b]
                    if cell == "lstm":
                        lstm_point(b, u, H, inside, gi[t],
                                   dots[LSTM_I * LU + lu, b] + b_hh[LSTM_I * H + u],
                                   dots[LSTM_F * LU + lu, b] + b_hh[LSTM_F * H + u],
                                   dots[LSTM_G * LU + lu, b] + b_hh[LSTM_G * H + u],
                                   dots[LSTM_O * LU + lu, b] + b_hh[LSTM_O * H + u],
                                   hs[t], cs[t], hs[t + 1], cs[t + 1], y[t], saved[t], save)
                    else:
                        gru_point(b, u, H, inside, gi[t],
                                  dots[GRU_R * LU + lu, b] + b_hh[GRU_R * H + u],
                                  dots[GRU_Z * LU + lu, b] + b_hh[GRU_Z * H + u],
                                  dots[GRU_N * LU + lu, b] + b_hh[GRU_N * H + u],
                                  hs[t], hs[t + 1], y[t], saved[t], save)
            grid.sync()

    return kernel


def cooperative_block_limit(kernel, launch_args, threads: int, dynamic_shared: int) -> int:
    """How many blocks of this kernel can be resident at once (a cooperative launch may
    not exceed it). The simulator runs one block per cooperative grid."""
    if simulator_enabled():
        return 1
    compiled = kernel.compile(tuple(kernel.typeof_pyval(a) for a in launch_args))
    return compiled.max_cooperative_grid_blocks(threads, dynamic_shared)


# --------------------------------------------------------------------------------------
# The prepared object.
# --------------------------------------------------------------------------------------

def device_bytes(args: RNNArgs) -> int:
    """Device memory this object allocates for training: inputs, weights, the input
    projection, state sequences, saved gates, gate gradients and parameter gradients."""
    T, B, I, H, G = args.T, args.B, args.I, args.H, args.gates
    elements = (2 * T * B * I + 2 * G * H * (I + H + 2)   # x, dx; weights and gradients
                + 2 * T * B * H                            # y, dy
                + 2 * (T + 1) * B * H + T * B * H          # hs, cs, rh
                + T * B * (G + SAVED_SLOTS) * H            # gi, saved
                + 2 * T * B * G * H                        # dgi, dgh
                + 12 * B * H + B * G * H)                  # states, carries, gh
    return elements * args.dtype.itemsize + 8 * B


def check_device_memory(args: RNNArgs, headroom: float = 0.9) -> None:
    """MemoryError, before any allocation, when the problem cannot fit on the GPU."""
    need = device_bytes(args)
    free, _total = cuda.current_context().get_memory_info()
    if need > headroom * free:
        raise MemoryError(
            f"numba-cuda: {args.cell} with T={args.T}, B={args.B}, I={args.I}, H={args.H} "
            f"({args.dtype}) needs about {format_bytes(need)} of GPU memory; "
            f"{format_bytes(free)} is free")


class NumbaCudaPrepared(Prepared):
    """Inputs, weights and work buffers resident on the GPU (see the module docstring)."""

    def __init__(self, args: RNNArgs, config: CudaConfig):
        super().__init__(args)
        check_device_memory(args)
        self.config = config
        T, B, H, G = args.T, args.B, args.H, args.gates
        dtype = args.dtype
        self.dtype = np.dtype(dtype)
        self._last_kernel = None
        to_device = self.from_numpy
        self.x = to_device(args.x)
        self.w_ih, self.w_hh = to_device(args.w_ih), to_device(args.w_hh)
        self.b_ih, self.b_hh = to_device(args.b_ih), to_device(args.b_hh)
        lengths = np.full(B, T, np.int64) if args.lengths is None else args.lengths
        self.lengths = to_device(lengths)
        self.gi = cuda.device_array((T, B, G * H), dtype)
        self.gh = cuda.device_array((B, G * H), dtype)
        reset_before = args.variant == "reset_before"
        self.rh = cuda.device_array((T if reset_before else 1, B, H), dtype)
        self.y = cuda.device_array((T, B, H), dtype)
        self.hs = cuda.device_array((T + 1, B, H), dtype)
        self.hs[0].copy_to_device(args.h0)
        self.cs = self.hs
        if args.cell == "lstm":
            self.cs = cuda.device_array((T + 1, B, H), dtype)
            self.cs[0].copy_to_device(args.c0)
        self.saved = cuda.device_array((T, B, SAVED_SLOTS * H), dtype)
        self._grad_buffers = None
        self.step_tile = config.step_tile or step_tile_for(B)
        self.plan, self.path_reason = self._choose_path()
        self.path = "stepwise" if self.plan is None else "persistent"

    # ---------------------------------------------------------------- path choice

    def _persistent_launch_args(self):
        return (self.args.T, self.gi, self.w_hh, self.b_hh, self.lengths, self.hs, self.cs,
                self.y, self.saved, self.rh)

    def plan_persistent(self) -> tuple[PersistentPlan | None, str]:
        """The persistent launch for this problem, or None and why it does not fit."""
        config, args = self.config, self.args
        if config.path == "auto" and args.B > config.persistent_max_batch:
            return None, f"batch {args.B} > persistent_max_batch {config.persistent_max_batch}"
        itemsize, G, H, B = self.dtype.itemsize, args.gates, args.H, args.B
        max_batch = 1 << (B - 1).bit_length()
        per_thread = min(config.persistent_batch_per_thread, B)
        groups = -(-B // per_thread)

        def plan_for(units, slices_per_block, blocks):
            ksplit = config.persistent_ksplit
            if ksplit is None:
                items = G * units * slices_per_block * groups
                ksplit = 1
                while 2 * ksplit <= 32 and 2 * ksplit * items <= config.persistent_threads:
                    ksplit *= 2
            return PersistentPlan(units, slices_per_block, blocks, config.persistent_threads,
                                  ksplit, max_batch, per_thread)

        def fits(plan):
            return sum(plan.shared_bytes(G, H, itemsize)) <= config.shared_memory_bytes

        units = config.persistent_units
        if units is None:
            units = 0
            while units < H and fits(plan_for(units + 1, 1, 1)):
                units += 1
            if units == 0:
                return None, (f"one hidden unit's weights ({G}x{H}) do not fit "
                              f"{config.shared_memory_bytes} bytes of shared memory")
        slices = -(-H // units)
        plan = plan_for(units, 1, slices)
        try:   # both variants: saving may use more registers, so fewer blocks fit
            limit = min(cooperative_block_limit(self._persistent_kernel(plan, save),
                                                self._persistent_launch_args(), plan.threads,
                                                plan.shared_bytes(G, H, itemsize)[0])
                        for save in (False, True))
        except Exception as error:  # e.g. no cudadevrt to link the grid sync against
            return None, f"persistent kernel does not build: {type(error).__name__}: {error}"
        if limit < 1:
            return None, "no block of the persistent kernel fits on a multiprocessor"
        blocks = min(slices, limit)
        plan = plan_for(units, -(-slices // blocks), blocks)
        if not fits(plan):
            return None, (f"{slices} slices of {units} units need {slices} co-resident "
                          f"blocks; only {limit} fit")
        return plan, (f"{plan.blocks} blocks x {plan.slices_per_block} slices of "
                      f"{units} units, weights in shared memory")

    def _choose_path(self):
        if self.config.path == "stepwise":
            return None, "path='stepwise' requested"
        plan, reason = self.plan_persistent()
        if plan is None and self.config.path == "persistent":
            raise ValueError(f"the persistent kernel cannot run this problem: {reason}")
        return plan, reason

    def _persistent_kernel(self, plan: PersistentPlan, save: bool):
        return persistent_kernel(self.dtype, self.args.cell, self.args.reset_after, save,
                                 plan.units, plan.slices_per_block, plan.ksplit,
                                 plan.max_batch, plan.batch_per_thread)

    # ---------------------------------------------------------------- forward

    def _launch(self, name, kernel, config, *launch_args):
        self._last_kernel = name
        launch(name, kernel, config, *launch_args)

    def _pointwise(self, name, kernel, *launch_args):
        threads = self.config.pointwise_threads
        blocks = -(-self.args.B * self.args.H // threads)
        self._launch(name, kernel, (blocks, threads), *launch_args)

    def _matmul(self, name, a, b, c, tile=None, **options):
        self._last_kernel = name
        matmul(a, b, c, tile=tile or self.config.tile, name=name, **options)

    def _step_matmul(self, name, a, b, c, **options):
        """A per-step product (M = batch), with the step tile."""
        self._matmul(name, a, b, c, tile=self.step_tile, **options)

    def _forward(self, save: bool):
        args = self.args
        T, B, H, G = args.T, args.B, args.H, args.gates
        self._matmul("input projection", self.x.reshape(T * B, args.I), self.w_ih,
                     self.gi.reshape(T * B, G * H), trans_b=True, bias=self.b_ih)
        if self.plan is not None:
            plan = self.plan
            dynamic, _static = plan.shared_bytes(G, H, self.dtype.itemsize)
            self._launch("persistent forward", self._persistent_kernel(plan, save),
                         (plan.blocks, plan.threads, 0, dynamic),
                         *self._persistent_launch_args())
        else:
            self._stepwise_forward(save)
        outputs = (self.y, self.hs[T])
        return outputs + ((self.cs[T],) if args.cell == "lstm" else ())

    def _stepwise_forward(self, save: bool):
        args = self.args
        H = args.H
        gru_step, gru_reset_step, lstm_step = step_kernels(self.dtype, args.reset_after, save)
        gh, w_hh, b_hh = self.gh, self.w_hh, self.b_hh
        n_cols = slice(GRU_N * H, (GRU_N + 1) * H)
        for t in range(args.T):
            h_prev, h_next = self.hs[t], self.hs[t + 1]
            saved_t = self.saved[t] if save else h_next   # not written without save
            if args.cell == "lstm":
                self._step_matmul("recurrent product", h_prev, w_hh, gh, trans_b=True, bias=b_hh)
                self._pointwise("lstm step", lstm_step, t, self.gi[t], gh, self.lengths,
                                h_prev, self.cs[t], h_next, self.cs[t + 1], self.y[t],
                                saved_t)
                continue
            if args.reset_after:
                self._step_matmul("recurrent product", h_prev, w_hh, gh, trans_b=True, bias=b_hh)
            else:
                rh = self.saved[t][:, GRU_EXTRA * H:] if save else self.rh[t]
                rz_cols = slice(0, GRU_N * H)
                self._step_matmul("recurrent product r,z", h_prev, w_hh[rz_cols], gh[:, rz_cols],
                             trans_b=True, bias=b_hh[rz_cols])
                self._pointwise("gru reset step", gru_reset_step, self.gi[t], gh, h_prev, rh)
                self._step_matmul("recurrent product n", rh, w_hh[n_cols], gh[:, n_cols],
                             trans_b=True, bias=b_hh[n_cols])
            self._pointwise("gru step", gru_step, t, self.gi[t], gh, self.lengths, h_prev,
                            h_next, self.y[t], saved_t)

    def forward(self):
        return self._forward(save=False)

    def forward_train(self):
        outputs = self._forward(save=True)
        self.saved_bytes = (self.saved.nbytes + self.hs.nbytes
                            + (self.cs.nbytes if self.args.cell == "lstm" else 0))
        return outputs, self

    # ---------------------------------------------------------------- backward

    def _grads(self):
        """Gradient buffers, allocated on the first backward and reused."""
        if self._grad_buffers is None:
            args, dtype = self.args, self.dtype
            T, B, I, H, G = args.T, args.B, args.I, args.H, args.gates
            empty = cuda.device_array
            dgi = empty((T, B, G * H), dtype)
            self._grad_buffers = dict(
                dgi=dgi, dgh=dgi if args.cell == "lstm" else empty((T, B, G * H), dtype),
                dh=empty((2, B, H), dtype), dc=empty((2, B, H), dtype),
                d_rh=empty((B, H), dtype), x=empty((T, B, I), dtype),
                w_ih=empty((G * H, I), dtype), w_hh=empty((G * H, H), dtype),
                b_ih=empty(G * H, dtype), b_hh=empty(G * H, dtype))
        return self._grad_buffers

    def backward(self, saved, upstream):
        if saved is not self:
            raise ValueError("backward needs the 'saved' returned by this object's "
                             "forward_train")
        args = self.args
        T, B, I, H, G = args.T, args.B, args.I, args.H, args.gates
        buffers = self._grads()
        dgi, dgh, dh, dc = buffers["dgi"], buffers["dgh"], buffers["dh"], buffers["dc"]
        dy = upstream[0]
        dh[T % 2].copy_to_device(upstream[1])
        if args.cell == "lstm":
            dc[T % 2].copy_to_device(upstream[2])
        gru_back, gru_back_reset, lstm_back = backward_kernels(self.dtype, args.reset_after)
        n_cols = slice(GRU_N * H, (GRU_N + 1) * H)
        rz_cols = slice(0, GRU_N * H)
        for t in reversed(range(T)):
            carry, nxt = (t + 1) % 2, t % 2    # ping-pong: gradient w.r.t. hs[t+1] -> hs[t]
            if args.cell == "lstm":
                self._pointwise("lstm backward step", lstm_back, t, dy[t], dh[carry],
                                dc[carry], self.lengths, self.cs[t], self.cs[t + 1],
                                self.saved[t], dgi[t], dh[nxt], dc[nxt])
                self._step_matmul("backward recurrent product", dgi[t], self.w_hh, dh[nxt],
                             accumulate=True)
                continue
            self._pointwise("gru backward step", gru_back, t, dy[t], dh[carry],
                            self.lengths, self.hs[t], self.saved[t], dgi[t], dgh[t], dh[nxt])
            if args.reset_after:
                self._step_matmul("backward recurrent product", dgh[t], self.w_hh, dh[nxt],
                             accumulate=True)
            else:
                d_rh = buffers["d_rh"]
                self._step_matmul("backward product n", dgh[t][:, n_cols], self.w_hh[n_cols],
                             d_rh)
                self._pointwise("gru backward reset step", gru_back_reset, d_rh,
                                self.hs[t], self.saved[t], dgi[t], dgh[t], dh[nxt])
                self._step_matmul("backward product r,z", dgh[t][:, rz_cols],
                             self.w_hh[rz_cols], dh[nxt], accumulate=True)
        dgi2, dgh2 = dgi.reshape(T * B, G * H), dgh.reshape(T * B, G * H)
        h_prev2 = self.hs[:T].reshape(T * B, H)
        self._matmul("dx product", dgi2, self.w_ih, buffers["x"].reshape(T * B, I))
        self._matmul("dw_ih product", dgi2, self.x.reshape(T * B, I), buffers["w_ih"],
                     trans_a=True)
        self._matmul("dw_hh product", dgh2, h_prev2, buffers["w_hh"], trans_a=True)
        if args.variant == "reset_before":   # the n rows multiplied r*h
            rh2 = self.saved.reshape(T * B, SAVED_SLOTS * H)[:, GRU_EXTRA * H:]
            self._matmul("dw_hn product", dgh2[:, n_cols], rh2, buffers["w_hh"][n_cols],
                         trans_a=True)
        self._last_kernel = "bias gradients"
        column_sum(dgi2, buffers["b_ih"], name="b_ih gradient")
        column_sum(dgh2, buffers["b_hh"], name="b_hh gradient")
        grads = dict(x=buffers["x"], h0=dh[0])
        if args.cell == "lstm":
            grads["c0"] = dc[0]
        grads.update(w_ih=buffers["w_ih"], w_hh=buffers["w_hh"], b_ih=buffers["b_ih"],
                     b_hh=buffers["b_hh"])
        return grads

    # ---------------------------------------------------------------- host side

    def synchronize(self) -> None:
        try:
            cuda.synchronize()
        except Exception as error:
            raise CudaKernelError(f"CUDA error surfaced at synchronize after kernel "
                                  f"{self._last_kernel!r}: {type(error).__name__}: "
                                  f"{error}") from error

    def from_numpy(self, array):
        return cuda.to_device(np.ascontiguousarray(array))

    def to_numpy(self, result):
        if isinstance(result, dict):
            return {k: self.to_numpy(v) for k, v in result.items()}
        if isinstance(result, (tuple, list)):
            return type(result)(self.to_numpy(v) for v in result)
        if result is self:
            return None
        return result.copy_to_host()


def prepare(args: RNNArgs, config: CudaConfig | None = None) -> NumbaCudaPrepared:
    ok, why = availability()
    if not ok:
        raise BackendUnavailable(why)
    return NumbaCudaPrepared(args, config or default_config())


gru_forward, gru_backward, lstm_forward, lstm_backward = convenience_api(prepare)
