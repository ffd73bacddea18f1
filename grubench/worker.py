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

What a worker does with a request is named by its "kind" in grubench.handlers (a
function per kind, by module path, imported on first use): the harness's cases and
references, the regression gate's ratios, training runs. So this module imports nothing
above it, and each caller owns its handler. A worker started without a
backend (``Worker(None, ...)``) serves requests that bring their own (training).

Another revision's kernels: a worker started with ``GRUBENCH_KERNELS_DIR`` imports
``grubench.kernels`` from that folder (:func:`import_kernels_from`; ``grubench regress
--against`` measures the base revision so, under this harness).
"""
from __future__ import annotations

import contextlib
import ctypes
import functools
import importlib
import importlib.util
import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

from grubench import interrupts, isa
from grubench.handlers import HANDLERS
from grubench.threads import THREAD_ENV_VARS, pin_threads, thread_env

#: A worker started with this variable imports grubench.kernels from that folder.
KERNELS_ENV = "GRUBENCH_KERNELS_DIR"
#: The backend argument of a worker started without one.
NO_BACKEND = "-"


# ---------------------------------------------------------------------- inside the worker

@functools.cache
def handler(kind: str):
    """The function that answers requests of ``kind`` (see :data:`HANDLERS`)."""
    module, _, name = HANDLERS[kind].partition(":")
    return getattr(importlib.import_module(module), name)


def import_kernels_from(directory: str | os.PathLike):
    """Make ``grubench.kernels`` the package in ``directory`` (another revision's
    install) for this process; call before anything imports grubench.kernels."""
    directory = Path(directory)
    spec = importlib.util.spec_from_file_location(
        "grubench.kernels", directory / "__init__.py",
        submodule_search_locations=[str(directory)])
    module = importlib.util.module_from_spec(spec)
    sys.modules["grubench.kernels"] = module
    spec.loader.exec_module(module)
    return module


def serve(backend_name: str | None, threads: int, requests, replies) -> None:
    """The worker's loop: a hello line, then one reply line per request line. Each handler
    gets the backend (None without one), the request and a dict it may keep state in for
    the worker's life."""
    # the kernels' contract, possibly another revision's: imported after main() chose them
    from grubench import backends
    from grubench.kernels.contract import BackendUnavailable

    backend = None
    hello: dict = dict(available=True, reason=None, backend_version=None)
    if backend_name is not None:
        backends.load_plugins()
        backend = backends.get(backend_name)
        # imports the kernel module (torch, numba, ...), so its pools exist and get pinned
        hello.update(available=backend.available, reason=backend.why_unavailable,
                     backend_version=backend.version)
    hello.update(pinned=pin_threads(threads), thread_env={
        name: os.environ.get(name) for name in (*THREAD_ENV_VARS, "OMP_WAIT_POLICY")})
    if os.environ.get(isa.ISA_ENV):          # --isa: say what the libraries really run
        hello["code_paths"] = isa.code_paths()
    replies.write(json.dumps(hello, default=str) + "\n")
    replies.flush()
    state: dict = {}
    for line in requests:
        request = json.loads(line)
        try:
            row = handler(request.get("kind", "case"))(backend, request, state)
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
    kernels = os.environ.get(KERNELS_ENV)
    if kernels:  # grubench regress --against: another revision's kernels, this harness
        import_kernels_from(kernels)
    serve(None if backend_name == NO_BACKEND else backend_name, int(threads), sys.stdin,
          replies)


# ---------------------------------------------------------------------- in the runner

@contextlib.contextmanager
def inherited_env(variables: dict[str, str]):
    """``variables`` set in this process's environment for the block, and put back after
    it: the workers started inside inherit them."""
    before = {name: os.environ.get(name) for name in variables}
    os.environ.update(variables)
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


class WorkerFailed(RuntimeError):
    """The worker died or hung; ``status`` is "crashed" or "timeout". ``returncode``:
    the dead worker's (negative: the signal that ended it), None for a timeout."""

    def __init__(self, status: str, reason: str, returncode: int | None = None):
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.returncode = returncode


class Worker:
    """A running worker process for one (backend, threads), driven from its caller."""

    def __init__(self, backend: str | None, threads: int, log_path: Path, timeout: float,
                 env: dict[str, str] | None = None):
        """``backend`` None: a worker whose requests bring their own. ``env`` replaces
        os.environ as the worker's environment (the thread pinning goes on top):
        ``grubench regress --against`` points a worker at another revision's kernels
        this way."""
        self.backend, self.threads = backend, threads
        self.log_path = log_path
        self._log = open(log_path, "ab")
        with interrupts.held():      # a signal waits until the worker is tracked
            self.process = subprocess.Popen(
                [sys.executable, "-m", "grubench.worker", backend or NO_BACKEND, str(threads),
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

    def request(self, message: dict, timeout: float, doing: str = "running the case") -> dict:
        """Send one request; its reply row, or WorkerFailed (the worker is then closed)
        saying what it was ``doing``."""
        try:
            self.process.stdin.write(json.dumps(message) + "\n")
            self.process.stdin.flush()
        except BrokenPipeError:
            pass  # it died; _read reports how
        return self._read(timeout, doing)

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
                code = self.process.wait()
                raise WorkerFailed("crashed", self._death_reason(code, doing), code)

    def _death_reason(self, code: int, doing: str) -> str:
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
