"""Signals during a run: SIGINT (Ctrl-C), SIGTERM (CI runners, ``timeout``, systemd,
Kubernetes) and SIGHUP (a closed terminal) all stop it the same way.

Inside :func:`handled` (the runner's whole run):

* the first signal raises :class:`Interrupted`, a KeyboardInterrupt, where the run allows
  it (:func:`raising`: while cases are measured); elsewhere (starting a worker, writing
  the report) it is held and raised, if at all, when that step is done. The runner keeps
  the rows measured so far, ends its workers, removes its scratch folder and writes the
  report; the command exits 128 + the signal's number (130, 143, 129);
* a second signal ends the process at once (exit 128 + its number), after killing the
  process group of every live worker and removing the registered folders, so an
  impatient user still leaves no worker and no scratch folder behind;
* on leaving the block, workers still tracked are killed and the folders removed, whatever
  exception is on its way out.

Workers are tracked by :func:`track` / :func:`untrack` (grubench.worker.Worker does it);
each runs in a session of its own, so a terminal's Ctrl-C reaches the runner alone and the
runner decides how its workers end.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import signal
import threading

SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Interrupted(KeyboardInterrupt):
    """A run stopped by a signal; ``exit_code`` is 128 + its number."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum
        self.exit_code = 128 + signum


class Guard:
    """What :func:`handled` saw: ``signum``, the first signal (None if none came)."""

    def __init__(self):
        self.signum: int | None = None
        self.raising = False        # raise Interrupted now (else hold it)
        self.pending = False        # a held signal not raised yet
        self.folders: list[str] = []

    def remove_on_exit(self, folder) -> None:
        self.folders.append(str(folder))

    @property
    def exit_code(self) -> int | None:
        return None if self.signum is None else 128 + self.signum


_processes: set = set()     # Popen objects of live workers
_guard: Guard | None = None


def remove_on_exit(folder) -> None:
    """Remove ``folder`` when the :func:`handled` block in force ends (no-op outside one)."""
    if _guard is not None:
        _guard.remove_on_exit(folder)


def track(process) -> None:
    _processes.add(process)


def untrack(process) -> None:
    _processes.discard(process)


def _kill_tracked() -> None:
    for process in list(_processes):
        with contextlib.suppress(OSError):
            os.killpg(process.pid, signal.SIGKILL)      # the worker and anything it started
        with contextlib.suppress(OSError):
            process.wait(timeout=5)
        untrack(process)


def _handle(signum, _frame) -> None:
    guard = _guard
    if guard.signum is not None:                        # the second signal: now
        _kill_tracked()
        for folder in guard.folders:
            shutil.rmtree(folder, ignore_errors=True)
        os._exit(128 + signum)
    guard.signum = signum
    if guard.raising:
        raise Interrupted(signum)
    guard.pending = True


@contextlib.contextmanager
def handled():
    """SIGINT, SIGTERM and SIGHUP as described in the module docstring, for the block;
    yields the :class:`Guard`. Signal handlers exist only in the main thread: elsewhere
    the block runs with the signals' usual behaviour (the guard still cleans up)."""
    global _guard
    outer, _guard = _guard, Guard()
    guard = _guard
    main = threading.current_thread() is threading.main_thread()
    previous = {s: signal.signal(s, _handle) for s in SIGNALS} if main else {}
    try:
        yield guard
    finally:
        try:
            _kill_tracked()
            for folder in guard.folders:
                shutil.rmtree(folder, ignore_errors=True)
        finally:
            for number, handler in previous.items():
                signal.signal(number, handler)
            _guard = outer


@contextlib.contextmanager
def _raising(value: bool):
    guard = _guard
    if guard is None:
        yield
        return
    was, guard.raising = guard.raising, value
    try:
        if value and guard.pending:
            guard.pending = False
            raise Interrupted(guard.signum)
        yield
    finally:
        guard.raising = was
    if was and guard.pending:
        guard.pending = False
        raise Interrupted(guard.signum)


def raising():
    """Inside :func:`handled`, a signal raises :class:`Interrupted` in this block (one
    held earlier is raised on entry)."""
    return _raising(True)


def held():
    """Inside :func:`handled`, a signal waits until this block is done (then raised if
    the block around it is :func:`raising`)."""
    return _raising(False)
