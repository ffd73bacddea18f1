"""Teams: how a run shares its work among threads.

A run on n threads is n calls of the same kernel, one per thread (the kernels release the
GIL), each with a team = (worker, workers, sync). Each worker owns a part of every step
(:func:`step_part`): its own sequences where the batch allows, which need no barrier, or
else a slice of the hidden units of every sequence, so the per-step products and gate math
split with no shared writes and the workers meet at a barrier once per step (twice for
reset-before GRUs, whose r*h feeds a second product). Each also owns a slice of the
all-steps products' outputs. The threads are this module's own (a ``parallel=True`` kernel
cannot be cached by numba, so every process would compile again), and BLAS runs on one
thread inside every worker, so no other pool spins against the team; results are
bit-identical run to run at a fixed thread count.
"""
from __future__ import annotations

import concurrent.futures
import functools
import math

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from ..contract import RNNArgs
from .jit import JIT, cached_njit
from .tiles import PANEL_COLS, PANEL_ROWS


@intrinsic
def _arrive(typingctx, sync):
    """sync[ARRIVALS] += 1 atomically (sequentially consistent); the new count."""
    def codegen(context, builder, signature, args):
        counter = context.make_array(signature.args[0])(context, builder, args[0]).data
        one = ir.Constant(ir.IntType(64), 1)
        return builder.add(builder.atomic_rmw("add", counter, one, "seq_cst"), one)

    return types.int64(sync), codegen


#: slots of a team's sync array: arrivals at barriers, and a flag a failing worker sets
ARRIVALS, ABORTED = 0, 1


@intrinsic
def _load_acquire(typingctx, sync, slot):
    """sync[slot], loaded with acquire ordering: what other workers wrote before they
    arrived is visible after it."""
    def codegen(context, builder, signature, args):
        data = context.make_array(signature.args[0])(context, builder, args[0]).data
        index = context.cast(builder, args[1], signature.args[1], types.intp)
        return builder.load_atomic(builder.gep(data, [index]), "acquire", 8)

    return types.int64(sync, slot), codegen


@intrinsic
def _yield_core(typingctx):
    """sched_yield(2): a waiting worker lets whatever else is runnable on its core run
    (on a loaded machine a pure spin would hold back the worker it waits for)."""
    def codegen(context, builder, signature, args):
        fnty = ir.FunctionType(ir.IntType(32), [])
        builder.call(cgutils.get_or_insert_function(builder.module, fnty, "sched_yield"),
                     [])
        return context.get_dummy_value()

    return types.none(), codegen


@cached_njit(**JIT)
def barrier(team):
    """Return once every worker of the team has arrived. sync[ARRIVALS] counts arrivals
    since the run began, so the k-th barrier opens at k * workers: nothing to reset.
    Once a worker has failed (sync[ABORTED]), barriers no longer wait: the others run
    to their end, and :func:`run_team` raises the error instead of hanging."""
    _worker, workers, sync = team
    if workers == 1:
        return
    opens_at = (_arrive(sync) + workers - 1) // workers * workers
    while _load_acquire(sync, ARRIVALS) < opens_at:
        if _load_acquire(sync, ABORTED):
            return
        _yield_core()


#: hidden-unit slices start at panel boundaries (:func:`matmul_nt`), which are
#: multiples of 16 floats (one 64-byte cache line): no two workers write one line
UNIT_ALIGN = PANEL_COLS


@cached_njit(**JIT)
def share(team, n, align):
    """This worker's part [start, stop) of range(n): equal chunks, multiples of align."""
    worker, workers, _sync = team
    chunk = (n + workers - 1) // workers
    chunk = (chunk + align - 1) // align * align
    start = min(worker * chunk, n)
    return start, min(start + chunk, n)


@cached_njit(**JIT)
def step_part(team, B, H):
    """This worker's part of every step: (seqs, start, stop, step_team), its sequences
    (a slice of range(B)) and units [start, stop). Where every worker gets
    PANEL_ROWS sequences or more, whole sequences: they are independent, so step_team
    is a team of one, whose barriers return at once, and every call covers all H
    units. Otherwise every sequence and a slice of the units, meeting at the team's
    barriers."""
    _worker, workers, sync = team
    if workers > 1 and B >= workers * PANEL_ROWS:
        first, stop_seq = share(team, B, 1)
        return slice(first, stop_seq), 0, H, (0, 1, sync)
    start, stop = share(team, H, UNIT_ALIGN)
    return slice(0, B), start, stop, team


#: a run shares its steps among numba's threads only where one step's recurrent product
#: has at least this many FLOPs: below it the barrier per step costs more than sharing
#: the step saves
TEAM_MIN_STEP_FLOPS = 2e5


def team_size(args: RNNArgs) -> int:
    """Threads a run of ``args`` uses: numba's thread count (``numba.set_num_threads``,
    NUMBA_NUM_THREADS), or 1 where a step is too small to share."""
    step_flops = 2.0 * args.B * args.H * args.gates * args.H
    if step_flops < TEAM_MIN_STEP_FLOPS:
        return 1
    return numba.get_num_threads()


@functools.cache
def _helper_threads(count: int) -> concurrent.futures.ThreadPoolExecutor:
    """The threads that run workers 1.. of a team (worker 0 is the calling thread)."""
    return concurrent.futures.ThreadPoolExecutor(count, thread_name_prefix="numba-cpu")


def run_team(workers: int, kernel, *arguments) -> None:
    """``kernel(team, *arguments)`` on ``workers`` threads at once, each with its team;
    returns when all are done, raising the error of a worker that failed."""
    sync = aligned_empty(8, np.int64)       # 64 bytes: the counters have their cache line
    sync[:] = 0
    if workers == 1:
        kernel((0, 1, sync), *arguments)
        return
    helpers = [_helper_threads(workers - 1).submit(_run_worker, kernel,
                                                   (worker, workers, sync), arguments)
               for worker in range(1, workers)]
    try:
        _run_worker(kernel, (0, workers, sync), arguments)
    finally:
        concurrent.futures.wait(helpers)    # no worker writes anything after this returns
    for helper in helpers:
        helper.result()


def _run_worker(kernel, team, arguments) -> None:
    try:
        kernel(team, *arguments)
    except BaseException:
        team[2][ABORTED] = 1                # the other workers stop waiting at barriers
        raise


#: bytes of a cache line (x86-64 and most ARM cores)
CACHE_LINE = 64


def aligned_empty(shape, dtype=np.float64) -> np.ndarray:
    """np.empty whose data starts on a cache line (NumPy's start at 16 bytes, a multiple
    of the item size). Workers write slices of UNIT_ALIGN units, so in arrays aligned like
    this (and rows of a multiple of 16 floats) no two workers write one line. It costs
    more than np.empty, so runs call it outside their loops."""
    dtype = np.dtype(dtype)
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    count = math.prod(shape)
    raw = np.empty(count + CACHE_LINE // dtype.itemsize, dtype)
    offset = -raw.ctypes.data % CACHE_LINE // dtype.itemsize
    return raw[offset:offset + count].reshape(shape)
