"""Worker processes: each backend runs in its own process with its thread count pinned.

Thread pools of different libraries in one process spin against each other (20x and more
on 2-core VMs), and a crashing kernel must not take the run down. So the
runner starts ``python -m grubench.worker BACKEND THREADS`` with the thread environment
of :func:`grubench.threads.thread_env` (pools start pinned, before any heavy import),
then sends it one case per line of JSON on stdin and reads one JSON row per line back.

* A case that raises gives a row with status "error" and the exception as reason; one
  that raises NotImplementedError (what the backend cannot do) gives "unsupported".
* A worker that dies (segfault, abort) gives status "crashed" with the signal and the
  last line of its stderr; one that exceeds the per-case timeout is killed and gives
  status "timeout". The runner then starts a fresh worker for the next case.

Plugins: ``GRUBENCH_PLUGINS`` (comma-separated module names) are imported by the runner
and every worker before the registry is read, and each one's ``register()`` (if any) is
called, so an out-of-tree module can add entries to :data:`grubench.backends.REGISTRY`
(the tests inject their crashing backends this way).
"""
from __future__ import annotations

import importlib
import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

from grubench import interrupts

PLUGINS_ENV = "GRUBENCH_PLUGINS"


def load_plugins() -> list[str]:
    """Import the modules named in ``GRUBENCH_PLUGINS`` and call their ``register()``
    (idempotent: it runs on every call); returns the module names."""
    modules = [m.strip() for m in os.environ.get(PLUGINS_ENV, "").split(",") if m.strip()]
    for name in modules:
        register = getattr(importlib.import_module(name), "register", None)
        if register is not None:
            register()
    return modules


# ---------------------------------------------------------------------- inside the worker

def run_case(backend, request: dict, gemm_cache: dict) -> dict:
    """Measure one case in this process: compile call, accuracy, timing, memory."""
    from grubench import accuracy, memory, timing

    from grubench.case import Case

    case = Case.from_row(request["case"])
    training = case.training
    args = case.make_args(request["seed"])
    prepared = backend.prepare(args)
    call = prepared.training_step if training else prepared.forward

    row: dict = {}
    row["compile_s"], result = timing.time_call(call, prepared.synchronize)
    counter = backend.entry.memory or memory.counter_for(result)
    if request.get("reference"):
        arrays = accuracy.named_arrays(case.cell, prepared.to_numpy(result), training)
        row["max_abs_err"], row["rel_err"], row["worst_output"] = accuracy.compare(
            arrays, accuracy.load(request["reference"]))
    del result

    samples = timing.measure(call, prepared.synchronize, min_runs=request["min_runs"],
                             min_time=request["min_time"])
    stats = timing.summarize(samples)
    row.update(median_s=stats.median_s, iqr_s=stats.iqr_s, min_s=stats.min_s,
               runs=stats.runs, unstable=stats.unstable, samples_s=samples)
    row["peak_bytes"] = memory.peak_bytes(lambda: (call(), prepared.synchronize()), counter)
    row["peak_counter"] = counter
    row["rss_bytes"] = memory.rss_bytes()
    row["saved_bytes"] = prepared.saved_bytes if training else None
    if case.dtype not in gemm_cache:
        gemm_cache[case.dtype] = timing.gemm_ceiling_gflops(case.dtype)
    row["gemm_gflops"] = gemm_cache[case.dtype]
    row["status"] = "ok"
    return row


def run_reference(_backend, request: dict, _gemm_cache: dict) -> dict:
    """The float64 reference of a problem into request["path"] (grubench.accuracy): a
    worker computes it, so the runner can bound it by the case timeout and kill it."""
    from grubench.accuracy import write_reference
    from grubench.case import Case

    write_reference(request["path"], Case.from_row(request["problem"]), request["seed"],
                    request["training"])
    return dict(status="ok")


def run_regress_case(backend, request: dict, _gemm_cache: dict) -> dict:
    """Interleaved case/calibration ratios for ``grubench regress``."""
    from grubench.regress import measure_case, task_of

    return measure_case(backend, task_of(request["task"]), request["pairs"])


#: What a worker answers, by the request's "kind": harness cases, float64 references and
#: regress cases.
HANDLERS = {"case": run_case, "reference": run_reference, "regress": run_regress_case}


def serve(backend_name: str, threads: int, requests, replies) -> None:
    """The worker's loop: a hello line, then one reply line per request line."""
    from grubench import backends
    from grubench.kernels.contract import BackendUnavailable
    from grubench.threads import THREAD_ENV_VARS, pin_threads

    load_plugins()
    backend = backends.get(backend_name)
    available = backend.available        # imports the kernel module (torch, numba, ...)
    pinned = pin_threads(threads)        # ... so its pools exist now and get pinned too
    started_with = {name: os.environ.get(name) for name in (*THREAD_ENV_VARS, "OMP_WAIT_POLICY")}
    hello = dict(available=available, reason=backend.why_unavailable,
                 backend_version=backend.version, pinned=pinned, thread_env=started_with)
    replies.write(json.dumps(hello, default=str) + "\n")
    replies.flush()
    gemm_cache: dict = {}
    for line in requests:
        request = json.loads(line)
        try:
            row = HANDLERS[request.get("kind", "case")](backend, request, gemm_cache)
        except BackendUnavailable as error:
            row = dict(status="unavailable", reason=str(error))
        except NotImplementedError as error:
            row = dict(status="unsupported", reason=str(error))
        except Exception as error:  # a backend's failure is a result row, not our crash
            row = dict(status="error", reason=f"{type(error).__name__}: {error}")
        replies.write(json.dumps(row) + "\n")
        replies.flush()


def die_with_parent(parent: int) -> None:
    """Have Linux kill this process when the runner that started it dies, even by
    SIGKILL (prctl PR_SET_PDEATHSIG); exit now if it is already gone. Elsewhere a no-op:
    the runner's own signal handling still ends its workers."""
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)        # PR_SET_PDEATHSIG = 1
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:
        os._exit(1)


def main(argv: list[str] | None = None) -> None:
    backend_name, threads, parent = (argv or sys.argv[1:])[:3]
    die_with_parent(int(parent))
    # stdout carries the protocol alone: anything a kernel prints goes to stderr.
    replies = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    kernels = os.environ.get("GRUBENCH_KERNELS_DIR")
    if kernels:  # grubench regress --against: another revision's kernels, this harness
        from grubench.ab import import_kernels_from

        import_kernels_from(kernels)
    serve(backend_name, int(threads), sys.stdin, replies)


# ---------------------------------------------------------------------- in the runner

class WorkerFailed(RuntimeError):
    """The worker died or hung; ``status`` is "crashed" or "timeout"."""

    def __init__(self, status: str, reason: str):
        super().__init__(reason)
        self.status = status
        self.reason = reason


class Worker:
    """A running worker process for one (backend, threads), driven from the runner."""

    def __init__(self, backend: str, threads: int, log_path: Path, timeout: float,
                 env: dict[str, str] | None = None):
        """``env`` replaces os.environ as the worker's environment (the thread pinning
        goes on top): ``grubench regress --against`` points a worker at another
        revision's kernels this way."""
        from grubench.threads import thread_env

        self.backend, self.threads = backend, threads
        self.log_path = log_path
        self._log = open(log_path, "ab")
        with interrupts.held():      # a signal waits until the worker is tracked
            self.process = subprocess.Popen(
                [sys.executable, "-m", "grubench.worker", backend, str(threads),
                 str(os.getpid())],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log,
                env={**(os.environ if env is None else env), **thread_env(threads)}, text=True, bufsize=1,
                start_new_session=True)  # Ctrl-C reaches the runner alone, which ends it
            interrupts.track(self.process)
        try:
            self.hello = self._read(timeout, "starting")
        except BaseException:        # Ctrl-C during its imports: do not wait for them
            self.close(kill=True)
            raise

    def request(self, message: dict, timeout: float) -> dict:
        """Send one case; its reply row, or WorkerFailed (the worker is then closed)."""
        try:
            self.process.stdin.write(json.dumps(message) + "\n")
            self.process.stdin.flush()
        except BrokenPipeError:
            pass  # it died; _read reports how
        return self._read(timeout, "running the case")

    def _read(self, timeout: float, doing: str) -> dict:
        deadline = time.monotonic() + timeout
        stream = self.process.stdout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                self.close(kill=True)
                raise WorkerFailed("timeout", f"no answer after {timeout:g} s {doing}; "
                                              f"worker killed")
            ready, _, _ = select.select([stream], [], [], min(left, 1.0))
            if ready:
                line = stream.readline()
                if line:
                    return json.loads(line)
                raise WorkerFailed("crashed", self._death_reason(doing))

    def _death_reason(self, doing: str) -> str:
        code = self.process.wait()
        self.close()
        how = (f"signal {signal.Signals(-code).name}" if code < 0 else f"exit code {code}")
        lines = [l for l in self.log_path.read_text(errors="replace").splitlines() if l.strip()]
        last = f": {lines[-1].strip()[:300]}" if lines else ""
        return f"worker died ({how}) while {doing}{last}"

    def close(self, kill: bool = False) -> None:
        """End the worker: kill it, or close its input and let it exit (kill after 5 s)."""
        if kill and self.process.poll() is None:
            self.process.kill()
        if self.process.poll() is None:
            try:
                self.process.stdin.close()
                self.process.wait(timeout=5)
            except (OSError, subprocess.TimeoutExpired):
                self.process.kill()
                self.process.wait()
        self.process.wait()
        interrupts.untrack(self.process)
        for stream in (self.process.stdin, self.process.stdout):
            try:
                stream.close()
            except OSError:
                pass
        self._log.close()


if __name__ == "__main__":
    main()
