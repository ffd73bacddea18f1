"""What the regression gate measures: a task's time as a ratio to a calibration product
timed interleaved with it in the same worker process, in process CPU time
(:data:`CLOCK`): the machine's momentary speed cancels in the ratio, and waiting for a
core does not count (docs/regress-clock.md). A worker answers "regress" requests with
:func:`run_request`; :func:`measure` drives those workers, one per backend and thread
count.
"""
from __future__ import annotations

import itertools
import os
import statistics
import sys
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from grubench import timing
from grubench.baseline import task_entry, task_of
from grubench.case import Case, Task
from grubench.worker import Worker, WorkerFailed

CASE_TIMEOUT_S = 120.0
#: Process CPU time: blind to the time spent waiting for a core on a shared machine.
CLOCK = timing.PROCESS_TIME
#: test-only: a factor > 1 in this variable makes every measured case spin that much longer
SLOWDOWN_ENV = "GRUBENCH_INJECT_SLOWDOWN"


def calibration_workload(case: Case) -> Callable[[], object]:
    """A NumPy float32 product with the forward FLOPs of the case's matrix products:
    (T*B, I+H) x (I+H, G*H). It runs on the same cores, caches and BLAS as the case."""
    rng = np.random.default_rng(0)
    left = rng.standard_normal((case.T * case.B, case.I + case.H)).astype(np.float32)
    right = rng.standard_normal((case.I + case.H, case.gates * case.H)).astype(np.float32)
    return lambda: left @ right


def slowed(run: Callable[[], object], factor: float) -> Callable[[], object]:
    """``run`` made ``factor`` times slower (in :data:`CLOCK` time) by spinning after it
    (test-only injection)."""
    def run_slowed():
        start = CLOCK()
        result = run()
        deadline = start + factor * (CLOCK() - start)
        while CLOCK() < deadline:
            pass
        return result
    return run_slowed


def measure_task(backend, task: Task, pairs: int) -> dict:
    """Time one task on ``backend`` (a grubench.backends.Backend) against its calibration
    in this process (already thread-pinned).
    Returns {"key", "ratio", "ratios", "case_s", "status", "reason"}."""
    if not backend.available:
        return {"key": task.key, "status": "unavailable", "reason": backend.why_unavailable}
    case = task.case
    # with upstream gradients in inference too: the inputs every baseline was measured on
    prepared = backend.prepare(case.make_args(seed=0, with_grads=True))
    step = prepared.training_step if case.training else prepared.forward

    def run():
        step()
        prepared.synchronize()

    run()  # compile and warm caches outside the timed pairs
    factor = float(os.environ.get(SLOWDOWN_ENV, "1") or 1)
    case_run = slowed(run, factor) if factor != 1 else run
    ratios = timing.interleaved_ratios(case_run, calibration_workload(case), pairs, clock=CLOCK)
    return {"key": task.key, "status": "ok", "reason": None,
            "ratio": statistics.median(ratios), "ratios": ratios,
            "case_s": timing.block_time(run, 3, CLOCK)}


def run_request(backend, request: dict, _state: dict) -> dict:
    """A worker's answer to a "regress" request (grubench.handlers)."""
    return measure_task(backend, task_of(request["task"]), request["pairs"])


def by_worker(tasks) -> Iterator[tuple[tuple[str, int], list[Task]]]:
    """Tasks grouped by the worker that measures them: ((backend, threads), tasks)."""
    key = lambda task: (task.backend, task.threads)  # noqa: E731
    for worker, group in itertools.groupby(sorted(tasks, key=key), key=key):
        yield worker, list(group)


class RatioWorker:
    """The pinned worker process of one backend and thread count, answering regress
    requests: started on its first task, and again after one it crashed or hung on.
    ``start`` goes on to grubench.worker.Worker (another environment: ``env``)."""

    def __init__(self, backend: str, threads: int, log_path: Path, **start):
        self.backend, self.threads, self.log_path, self.start = backend, threads, log_path, start
        self.worker: Worker | None = None

    def measure(self, task: Task, pairs: int, timeout: float = CASE_TIMEOUT_S) -> dict:
        """The task's row (:func:`measure_task`'s), or its status and why it failed."""
        try:
            if self.worker is None:
                self.worker = Worker(self.backend, self.threads, self.log_path, timeout,
                                     **self.start)
            if not self.worker.hello["available"]:
                return {"status": "unavailable", "reason": self.worker.hello["reason"]}
            return self.worker.request({"kind": "regress", "task": task_entry(task),
                                        "pairs": pairs}, timeout)
        except WorkerFailed as failure:
            self.worker = None
            return {"status": failure.status, "reason": failure.reason}

    def close(self) -> None:
        if self.worker is not None:
            self.worker.close(kill=True)
            self.worker = None


def measure(tasks, pairs: int, log_dir: Path) -> dict[str, dict]:
    """Rows by task key, each backend and thread count in its own pinned worker process
    (grubench.worker); a worker that crashes or hangs yields a failed row and is replaced."""
    rows = {}
    for (backend, threads), group in by_worker(tasks):
        worker = RatioWorker(backend, threads, log_dir / f"regress-{backend}-{threads}.log")
        try:
            for task in group:
                row = worker.measure(task, pairs)
                rows[task.key] = {**row, "key": task.key}
                print(f"  {task.key}: " + (f"ratio {row['ratio']:.4g}"
                                           if row["status"] == "ok"
                                           else f"{row['status']}: {row.get('reason')}"),
                      file=sys.stderr, flush=True)
        finally:
            worker.close()
    return rows
