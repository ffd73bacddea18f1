"""Timing: the measuring loops and the statistics of their samples.

A measurement (torch.utils.benchmark and pytest-benchmark style): the first call is timed
alone as ``compile_s`` by the caller; then warm-up calls; then samples until both
``min_runs`` samples and ``min_time`` seconds of samples are collected (``max_runs`` caps
tiny cases). Each sample is one call followed by ``synchronize()``, so asynchronous
devices are timed to completion. Statistics: median, interquartile range (linear
interpolation, NumPy's default), min, runs; ``unstable`` when IQR/median > 10%.

A ratio (the regression gate's): two workloads timed in alternating blocks of back-to-back
calls, pair by pair (:func:`interleaved_ratios`), by any clock; :data:`PROCESS_TIME` is
the process's CPU time, blind to the time spent waiting for a core on a shared machine.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

#: IQR/median above which a measurement is flagged unstable (torch.utils.benchmark's rule)
UNSTABLE_IQR_FRACTION = 0.10
#: The process's CPU time (all its threads): a clock that stops while it waits for a core.
PROCESS_TIME = time.process_time


@dataclass(frozen=True)
class Stats:
    median_s: float
    iqr_s: float
    min_s: float
    runs: int
    unstable: bool


def quantile(sorted_values: Sequence[float], q: float) -> float:
    """The q-quantile of sorted values with linear interpolation between closest ranks
    (numpy.percentile's default): position q*(n-1)."""
    if not sorted_values:
        raise ValueError("quantile of no values")
    position = q * (len(sorted_values) - 1)
    low = int(position)
    high = min(low + 1, len(sorted_values) - 1)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (position - low)


def summarize(times: Sequence[float]) -> Stats:
    """Median, IQR (q75 - q25), min and run count of per-call times in seconds."""
    ordered = sorted(times)
    median = quantile(ordered, 0.5)
    iqr = quantile(ordered, 0.75) - quantile(ordered, 0.25)
    unstable = median > 0 and iqr / median > UNSTABLE_IQR_FRACTION
    return Stats(median_s=median, iqr_s=iqr, min_s=ordered[0], runs=len(ordered),
                 unstable=unstable)


def time_call(call: Callable[[], object], synchronize: Callable[[], None],
              clock: Callable[[], float] = time.perf_counter) -> tuple[float, object]:
    """Seconds one call takes to complete, and its result."""
    start = clock()
    result = call()
    synchronize()
    return clock() - start, result


def measure(call: Callable[[], object], synchronize: Callable[[], None], *, min_runs: int,
            min_time: float, warmup_time: float = 0.05, max_runs: int = 10_000,
            clock: Callable[[], float] = time.perf_counter) -> list[float]:
    """Warm up (at least one call, then until ``warmup_time``), then collect per-call
    times until ``min_runs`` samples and ``min_time`` seconds of samples (or ``max_runs``)."""
    if min_runs < 1:
        raise ValueError(f"min_runs must be >= 1, got {min_runs}")
    warmed = 0.0
    while True:
        elapsed, _ = time_call(call, synchronize, clock)
        warmed += elapsed
        if warmed >= warmup_time:
            break
    times: list[float] = []
    total = 0.0
    while len(times) < max_runs and (len(times) < min_runs or total < min_time):
        elapsed, _ = time_call(call, synchronize, clock)
        times.append(elapsed)
        total += elapsed
    return times


def calls_per_block(call: Callable[[], object], min_block_s: float,
                    clock: Callable[[], float] = time.perf_counter) -> int:
    """How many back-to-back calls make one block last at least ``min_block_s`` (by one
    timed call)."""
    start = clock()
    call()
    once = max(clock() - start, 1e-7)
    return max(1, math.ceil(min_block_s / once))


def block_time(call: Callable[[], object], calls: int,
               clock: Callable[[], float] = time.perf_counter) -> float:
    """Seconds per call over ``calls`` back-to-back calls."""
    start = clock()
    for _ in range(calls):
        call()
    return (clock() - start) / calls


def interleaved_ratios(call: Callable[[], object], reference: Callable[[], object],
                       pairs: int, min_block_s: float = 0.004,
                       clock: Callable[[], float] = time.perf_counter) -> list[float]:
    """Per-pair ratios of ``call``'s time to ``reference``'s, each a block of at least
    ``min_block_s``, in ABBA order so a drift in machine speed during the pair weighs on
    both sides alike."""
    call_reps = calls_per_block(call, min_block_s, clock)
    reference_reps = calls_per_block(reference, min_block_s, clock)
    ratios = []
    for pair in range(pairs):
        if pair % 2 == 0:
            call_s = block_time(call, call_reps, clock)
            reference_s = block_time(reference, reference_reps, clock)
        else:
            reference_s = block_time(reference, reference_reps, clock)
            call_s = block_time(call, call_reps, clock)
        ratios.append(call_s / reference_s)
    return ratios


def gemm_ceiling_gflops(dtype: str, n: int = 1024, runs: int = 5) -> float:
    """This process's GEMM ceiling: GFLOP/s of a NumPy n x n x n matmul in ``dtype``
    (median of ``runs`` after one warm-up), measured under the caller's thread pinning so
    that ``gemm_fraction`` compares a case with what the same threads can reach."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n)).astype(dtype)
    b = rng.standard_normal((n, n)).astype(dtype)
    times = measure(lambda: a @ b, lambda: None, min_runs=runs, min_time=0.0,
                    warmup_time=0.0, max_runs=runs)
    return 2.0 * n ** 3 / summarize(times).median_s / 1e9
