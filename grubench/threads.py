"""Pinning every thread pool a process may hold: numba's, torch's, and the BLAS/OpenMP
pools threadpoolctl can see. On 2 cores pools left to spin against each other slow a
kernel 20x and more (seen on 2-core VMs), so a measurement always runs pinned."""
from __future__ import annotations

import os
import sys

from threadpoolctl import threadpool_info, threadpool_limits

# PJRT_NPROC sizes XLA's CPU thread pools (JAX): XLA_FLAGS' intra_op_parallelism_threads
# and --xla_cpu_multi_thread_eigen=false left two threads busy in jaxlib 0.10 (docs/peers.md).
THREAD_ENV_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                   "NUMBA_NUM_THREADS", "PJRT_NPROC")

#: The count pin_threads last set in this process (None: never pinned). Libraries whose
#: pools are made later, per session (ONNX Runtime), read it when they make them.
_pinned: int | None = None


def pinned_threads() -> int | None:
    """The thread count :func:`pin_threads` set in this process, or None."""
    return _pinned


def thread_env(threads: int) -> dict[str, str]:
    """Environment for a fresh worker process so its pools start at ``threads``.
    Passive waiting stops an idle OpenMP pool from burning the other core."""
    env = {name: str(threads) for name in THREAD_ENV_VARS}
    env["OMP_WAIT_POLICY"] = "PASSIVE"
    return env


def pin_threads(threads: int) -> dict[str, object]:
    """Set every pool already loaded in this process to ``threads``; returns what was set."""
    global _pinned
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    _pinned = threads
    threadpool_limits(limits=threads)
    pinned: dict[str, object] = {"threadpoolctl": [
        {k: info.get(k) for k in ("internal_api", "num_threads", "filepath")}
        for info in threadpool_info()]}
    if "numba" in sys.modules:
        import numba

        numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
        pinned["numba"] = numba.get_num_threads()
    if "torch" in sys.modules:
        import torch

        torch.set_num_threads(threads)
        pinned["torch"] = torch.get_num_threads()
    return pinned


def cpu_count() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
