"""A tiled shared-memory matrix product for numba.cuda (numba has no cuBLAS).

``matmul(a, b, c)`` computes ``c = op(a) @ op(b) [+ bias] [+ c]`` on device arrays, where
``op`` optionally transposes. Each thread block computes one (tile_m, tile_n) tile of ``c``:
it walks K in slices of ``tile_k``, staging a (tile_k, tile_m) slice of op(a) and a
(tile_k, tile_n) slice of op(b) in shared memory, and every thread accumulates
``per_thread_m x per_thread_n`` outputs in registers. A thread owns the rows
``ty + i*threads_m`` and columns ``tx + j*threads_n`` of the tile, so neighbouring threads
write neighbouring columns (coalesced stores).

Tile sizes are a :class:`Tile`: the GPU default is 64x64 outputs per block of 16x16 threads;
tests shrink it (2x2 threads, 1-2 outputs each) so tiny matrices span several tiles.

Kernels reach ``cuda`` as a module global (the CUDA simulator swaps in its own there);
where numba.cuda cannot be imported, ``cuda`` is None and no kernel is built.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

try:
    from numba import cuda, float32, float64
except ImportError:  # a broken numba install makes the CUDA backends unavailable, no more
    cuda = float32 = float64 = None


@dataclass(frozen=True)
class Tile:
    """Block shape of the matrix product: (threads_m x threads_n) threads, each computing
    (per_thread_m x per_thread_n) outputs; K advances ``tile_k`` per shared-memory stage."""

    threads_m: int = 16
    threads_n: int = 16
    per_thread_m: int = 4
    per_thread_n: int = 4
    tile_k: int = 16

    @property
    def tile_m(self) -> int:
        return self.threads_m * self.per_thread_m

    @property
    def tile_n(self) -> int:
        return self.threads_n * self.per_thread_n


class CudaKernelError(RuntimeError):
    """A CUDA launch or execution failed; the message names the kernel."""


def simulator_enabled() -> bool:
    """True when numba.cuda runs kernels on the CPU: NUMBA_ENABLE_CUDASIM=1 when numba.cuda
    was first imported (asked of the module itself: the variable may have changed since)."""
    return cuda is not None and cuda.jit.__module__.startswith("numba.cuda.simulator")


@functools.lru_cache(maxsize=4096)
def configured(kernel, config):
    """``kernel[config]``, built once: numba checks (and warns about) a launch shape each
    time one is built, which costs microseconds on every step of a stepwise RNN."""
    return kernel[config]


def launch(name: str, kernel, config, *args) -> None:
    """Launch ``kernel[config](*args)``; any failure becomes CudaKernelError naming it."""
    try:
        if simulator_enabled():   # the simulator's kernel[config] reconfigures the kernel
            kernel[config](*args)
        else:
            configured(kernel, config)(*args)
    except Exception as error:  # numba raises several unrelated types for CUDA failures
        raise CudaKernelError(f"CUDA kernel {name!r} failed: {type(error).__name__}: "
                              f"{error}") from error


@functools.cache
def matmul_kernel(dtype: np.dtype, trans_a: bool, trans_b: bool, accumulate: bool,
                  has_bias: bool, tile: Tile):
    """The compiled kernel ``kernel(a, b, c, bias)`` for one combination of flags.

    a: (M, K), or (K, M) when ``trans_a``;  b: (K, N), or (N, K) when ``trans_b``;
    c: (M, N), read first when ``accumulate``;  bias: (N,), added per column when
    ``has_bias`` (any 1-D array otherwise; it is not read). The flags are compile-time
    constants of the closure, so each combination compiles its own branch-free loads.
    """
    numba_dtype = float32 if np.dtype(dtype) == np.float32 else float64
    TM, TN = tile.threads_m, tile.threads_n
    RM, RN = tile.per_thread_m, tile.per_thread_n
    TK = tile.tile_k
    TILE_M, TILE_N = tile.tile_m, tile.tile_n
    THREADS = TM * TN
    # One padding column: loads that walk k store down a tile column, and an unpadded row
    # length of 64 would put all of them in one shared-memory bank.
    PADDED_M, PADDED_N = TILE_M + 1, TILE_N + 1

    @cuda.jit
    def kernel(a, b, c, bias):
        M, N = c.shape
        K = a.shape[0] if trans_a else a.shape[1]
        tx = cuda.threadIdx.x
        ty = cuda.threadIdx.y
        tid = ty * TN + tx
        row0 = cuda.blockIdx.y * TILE_M
        col0 = cuda.blockIdx.x * TILE_N
        a_tile = cuda.shared.array((TK, PADDED_M), numba_dtype)  # a_tile[k, m] = op(a)[m, k]
        b_tile = cuda.shared.array((TK, PADDED_N), numba_dtype)  # b_tile[k, n] = op(b)[k, n]
        acc = cuda.local.array((RM, RN), numba_dtype)
        a_regs = cuda.local.array(RM, numba_dtype)
        b_regs = cuda.local.array(RN, numba_dtype)
        for i in range(RM):
            for j in range(RN):
                acc[i, j] = 0
        for k0 in range(0, K, TK):
            # Consecutive threads load consecutive addresses of the source layout.
            for e in range(tid, TILE_M * TK, THREADS):
                if trans_a:
                    kk, m = e // TILE_M, e % TILE_M
                else:
                    m, kk = e // TK, e % TK
                row, k = row0 + m, k0 + kk
                value = numba_dtype(0)
                if row < M and k < K:
                    value = a[k, row] if trans_a else a[row, k]
                a_tile[kk, m] = value
            for e in range(tid, TILE_N * TK, THREADS):
                if trans_b:
                    n, kk = e // TK, e % TK
                else:
                    kk, n = e // TILE_N, e % TILE_N
                col, k = col0 + n, k0 + kk
                value = numba_dtype(0)
                if col < N and k < K:
                    value = b[col, k] if trans_b else b[k, col]
                b_tile[kk, n] = value
            cuda.syncthreads()
            for kk in range(TK):
                for i in range(RM):
                    a_regs[i] = a_tile[kk, ty + i * TM]
                for j in range(RN):
                    b_regs[j] = b_tile[kk, tx + j * TN]
                for i in range(RM):
                    for j in range(RN):
                        acc[i, j] += a_regs[i] * b_regs[j]
            cuda.syncthreads()
        for i in range(RM):
            row = row0 + ty + i * TM
            if row < M:
                for j in range(RN):
                    col = col0 + tx + j * TN
                    if col < N:
                        value = acc[i, j]
                        if has_bias:
                            value += bias[col]
                        if accumulate:
                            value += c[row, col]
                        c[row, col] = value

    return kernel


def matmul(a, b, c, *, trans_a: bool = False, trans_b: bool = False,
           accumulate: bool = False, bias=None, tile: Tile = Tile(), stream=0,
           name: str = "matmul") -> None:
    """``c = op(a) @ op(b) [+ bias] [+ c]`` on device arrays (shapes as :func:`matmul_kernel`).

    ``name`` says which product of the caller this is, for error messages.
    """
    M, N = c.shape
    K_a = a.shape[0] if trans_a else a.shape[1]
    K_b = b.shape[1] if trans_b else b.shape[0]
    N_b = b.shape[0] if trans_b else b.shape[1]
    M_a = a.shape[1] if trans_a else a.shape[0]
    if (M_a, N_b) != (M, N) or K_a != K_b:
        raise ValueError(f"{name}: op(a) is {M_a}x{K_a}, op(b) is {K_b}x{N_b}, c is {M}x{N}")
    if M == 0 or N == 0:
        return
    kernel = matmul_kernel(np.dtype(c.dtype), trans_a, trans_b, accumulate,
                           bias is not None, tile)
    grid = ((N + tile.tile_n - 1) // tile.tile_n, (M + tile.tile_m - 1) // tile.tile_m)
    launch(name, kernel, (grid, (tile.threads_n, tile.threads_m), stream),
           a, b, c, c[0] if bias is None else bias)


@functools.cache
def column_sum_kernel(accumulate: bool):
    """``kernel(a, out)``: out[j] (+)= sum_i a[i, j]; a (R >= 1, N), out (N,). One thread per
    column; neighbouring threads read neighbouring columns of a row (coalesced)."""

    @cuda.jit
    def kernel(a, out):
        j = cuda.grid(1)
        if j < out.shape[0]:
            total = a[0, j]            # (a typed zero: 0 * a[0, j] would be float64)
            for i in range(1, a.shape[0]):
                total += a[i, j]
            if accumulate:
                total += out[j]
            out[j] = total

    return kernel


def column_sum(a, out, *, accumulate: bool = False, threads: int = 128, stream=0,
               name: str = "column_sum") -> None:
    """out (N,) = sum over rows of a (R, N) [+ out]."""
    if a.shape[1] != out.shape[0]:
        raise ValueError(f"{name}: a is {a.shape}, out is {out.shape}")
    blocks = (out.shape[0] + threads - 1) // threads
    launch(name, column_sum_kernel(accumulate), (blocks, threads, stream), a, out)
