"""Peak memory of one call, by the counter that sees the backend's allocations (each
registry entry names its counter: grubench.backends.Entry.memory).

* NumPy and Numba on the CPU: ``tracemalloc`` (NumPy and Numba's NRT allocate through
  Python's tracked allocator).
* torch on the CPU: tracemalloc does not see torch's allocator; the torch profiler with
  ``profile_memory=True`` records every allocation and free, and the peak is the largest
  running sum of those events during the call.
* torch on CUDA: the caching allocator's ``max_memory_allocated`` above what was
  allocated before the call.
* ONNX Runtime and JAX (XLA) on the CPU: their C++ allocators bypass tracemalloc and
  neither exposes per-call statistics on the CPU, so the registry declares ``rss``: the
  growth of the process's resident set at its high-water mark over the call. Before the
  call, freed heap memory goes back to the system (glibc ``malloc_trim``) and Linux's
  high-water mark is reset (``/proc/self/clear_refs``), so the pages the call touches are
  counted whichever allocator asked for them; a pool a library keeps warm would hide its
  reuse, which is why the ONNX Runtime backend turns its CPU arena off. Page-granular,
  Linux only (None elsewhere).
* Other devices (e.g. numba-cuda): no per-call counter (``none``); the peak is reported
  as None.

Each peak is the memory the call allocates beyond what already exists (the prepared
inputs), so it compares with the analytic working set of Case.expected_bytes minus
the inputs. ``rss_bytes`` is the worker process's peak resident set (ru_maxrss), which
grows over a worker's life: it bounds every case the worker ran so far.
"""
from __future__ import annotations

import ctypes
import resource
import sys
import tracemalloc
from typing import Callable


def _peak_tracemalloc(call: Callable[[], object]) -> int:
    tracemalloc.start()
    try:
        call()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def _peak_torch_profiler(call: Callable[[], object]) -> int:
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        call()
    events = [e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"]
    running = peak = 0
    for event in sorted(events, key=lambda e: e.start_ns()):
        running += event.nbytes()
        peak = max(peak, running)
    return peak


def _peak_torch_cuda(call: Callable[[], object]) -> int:
    import torch

    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    call()
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() - before


def _proc_status_bytes(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024     # "VmHWM:   1736 kB"
    raise OSError(f"/proc/self/status has no {field}")


def _peak_rss(call: Callable[[], object]) -> int | None:
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")          # resets VmHWM to the current VmRSS
        before = _proc_status_bytes("VmRSS")
    except OSError:                         # not Linux/glibc: no such counter here
        return None
    call()
    return max(0, _proc_status_bytes("VmHWM") - before)


PEAK_COUNTERS: dict[str, Callable[[Callable[[], object]], int | None]] = {
    "tracemalloc": _peak_tracemalloc,
    "torch-profiler": _peak_torch_profiler,
    "torch-cuda-allocator": _peak_torch_cuda,
    "rss": _peak_rss,
}
#: Every counter a backend can declare: "none" for a device no counter sees.
COUNTERS = (*PEAK_COUNTERS, "none")


def peak_bytes(call: Callable[[], object], counter: str) -> int | None:
    """Bytes allocated at the peak of one call of ``call``, by ``counter``; None when no
    counter sees this backend."""
    measure = PEAK_COUNTERS.get(counter)
    peak = None if measure is None else measure(call)
    return None if peak is None else int(peak)


def rss_bytes() -> int:
    """This process's peak resident set size so far (ru_maxrss: KiB on Linux, bytes on
    macOS)."""
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return maxrss if sys.platform == "darwin" else maxrss * 1024
