"""`grubench regress --against REV`: the gate as an A/B test on this machine, the way asv's
``continuous`` works. A baseline recorded on another CPU does not carry over: how our
kernels compare with a BLAS product depends on vector width, caches and the BLAS kernel.
So the base revision is checked out in a temporary ``git worktree``, installed apart
(``pip install --no-deps --target``; its numba cache then sits beside its own sources,
apart from ours), and base and current kernels are measured case by case, in turns, each
side in its own pinned worker on the same cores. Only the current side's verdicts count.

Both sides' workers run this revision's harness (grubench.worker and grubench.calibrated);
the base worker imports ``grubench.kernels`` from the base's install
(:func:`grubench.worker.import_kernels_from`). So both sides are timed by the same code,
and a change to the timing itself cannot pose as a change of the kernels.

Everything temporary (worktree, install, workers) is removed on the way out, also on
Ctrl-C and on SIGTERM (see :func:`sigterm_as_interrupt`).
"""
from __future__ import annotations

import contextlib
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from grubench.calibrated import CASE_TIMEOUT_S, SLOWDOWN_ENV, RatioWorker, by_worker
from grubench.worker import KERNELS_ENV

#: The checkout grubench runs from (its kernels are the current side).
SOURCE_ROOT = Path(__file__).resolve().parent.parent
#: A case's first turn on a side compiles its kernels: it may take this many case timeouts
#: (a cold compile on a 2-core machine shared with other jobs has taken minutes).
COMPILE_TIMEOUT_FACTOR = 4


class RevisionError(Exception):
    """A base revision that cannot be used: missing, not buildable, not importable."""


def _git(root: Path, *args: str) -> str | None:
    """``git -C root ARGS`` stdout, or None when git fails or is not installed."""
    try:
        done = subprocess.run(["git", "-C", str(root), *args], capture_output=True,
                              text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def has_history(root: Path = SOURCE_ROOT) -> bool:
    return _git(root, "rev-parse", "--verify", "-q", "HEAD") is not None


def default_base(root: Path = SOURCE_ROOT) -> str | None:
    """The merge-base with ``main`` (or ``origin/main``); ``HEAD~1`` when HEAD is on main
    itself. None when there is no such revision (no git, a first or shallow commit)."""
    head = _git(root, "rev-parse", "--verify", "-q", "HEAD")
    if head is None:
        return None
    for main in ("main", "origin/main"):
        base = _git(root, "merge-base", "HEAD", main)
        if base and base != head:
            return base
    return _git(root, "rev-parse", "--verify", "-q", "HEAD~1^{commit}")


def resolve(rev: str, root: Path = SOURCE_ROOT) -> str:
    """The full commit id of ``rev``; RevisionError when it names no commit."""
    commit = _git(root, "rev-parse", "--verify", "-q", f"{rev}^{{commit}}")
    if commit is None:
        raise RevisionError(f"revision {rev!r} does not exist in {root}")
    return commit


@contextlib.contextmanager
def worktree(commit: str, dest: Path, root: Path = SOURCE_ROOT):
    """``commit`` checked out (detached) at ``dest``; the worktree and its registration in
    the repository are removed on exit, however the block ends."""
    try:
        if _git(root, "worktree", "add", "--detach", "--force", str(dest), commit) is None:
            raise RevisionError(f"git worktree add of {commit[:12]} into {dest} failed")
        yield dest
    finally:
        # Twice forced: removes a worktree left locked by an interrupted `worktree add`.
        _git(root, "worktree", "remove", "--force", "--force", str(dest))
        shutil.rmtree(dest, ignore_errors=True)
        _git(root, "worktree", "prune")


def install(source: Path, site: Path, label: str) -> None:
    """pip-install the package at ``source`` into ``site`` alone (no dependencies: the
    current environment's numpy, numba and torch serve both sides)."""
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                           "--no-build-isolation", "--no-input", "--target", str(site),
                           str(source)], capture_output=True, text=True)
    if done.returncode != 0:
        errors = [line for line in done.stderr.splitlines()
                  if line.strip() and not line.startswith("WARNING")]
        raise RevisionError(f"revision {label} does not build: "
                            f"{errors[-1].strip() if errors else f'pip exit {done.returncode}'}")


def kernels_dir(site: Path) -> Path:
    return site / "grubench" / "kernels"


def worker_env(site: Path) -> dict[str, str]:
    """The base side's environment: the base's kernels, and no injected slowdown (that is
    the current side's alone)."""
    env = {k: v for k, v in os.environ.items() if k != SLOWDOWN_ENV}
    env[KERNELS_ENV] = str(kernels_dir(site))
    return env


CHECK_IMPORT = """
import sys
from grubench.worker import import_kernels_from
import_kernels_from(sys.argv[1])
import grubench.backends, grubench.kernels.contract as contract
print(contract.__file__)
"""


def check_importable(site: Path, label: str) -> None:
    """The base's kernels must import, from ``site``, under this harness."""
    done = subprocess.run([sys.executable, "-c", CHECK_IMPORT, str(kernels_dir(site))],
                          capture_output=True, text=True)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["?"])[-1]
        raise RevisionError(f"revision {label}: its kernels do not import: {last}")
    if not Path(done.stdout.strip()).resolve().is_relative_to(site.resolve()):
        raise RevisionError(f"revision {label}: its kernels import from "
                            f"{done.stdout.strip()}, not from its install in {site}")


@contextlib.contextmanager
def base_install(rev: str, root: Path = SOURCE_ROOT):
    """Check ``rev`` out and install it into a temporary folder; yields (commit, site).
    Both are deleted on exit (Ctrl-C included)."""
    commit = resolve(rev, root)
    label = f"{rev} ({commit[:12]})"
    scratch = Path(tempfile.mkdtemp(prefix="grubench-ab-"))
    try:
        with worktree(commit, scratch / "src", root) as source:
            install(source, scratch / "site", label)
        check_importable(scratch / "site", label)
        yield commit, scratch / "site"
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


@contextlib.contextmanager
def sigterm_as_interrupt():
    """SIGTERM raises KeyboardInterrupt for the block, so ``finally`` clean-ups run (the
    default SIGTERM ends Python without them). Outside the main thread: no change."""
    def interrupt(signum, frame):
        raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")

    try:
        previous = signal.signal(signal.SIGTERM, interrupt)
    except ValueError:       # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


# ----------------------------------------------------------------------------- measuring

def measure(tasks, site: Path, rounds: int, pairs: int, log_dir: Path
            ) -> tuple[dict[str, float], dict[str, dict]]:
    """Each task measured ``rounds`` times on each side, the sides taking turns (base,
    current, current, base, ...) so a slow stretch of the machine falls on both; each
    turn is one regress request (``pairs`` case/calibration pairs, grubench.calibrated).

    Returns (base ratios by key, current rows by key): the median of each side's turns,
    in the shapes grubench.gate.compare takes. A case the base cannot measure (new, or
    failing there) has no base ratio."""
    starts = {"base": {"env": worker_env(site)}, "current": {}}
    base_ratios: dict[str, float] = {}
    current_rows: dict[str, dict] = {}
    failures: dict[str, str] = {}
    for (backend, threads), group in by_worker(tasks):
        workers = {side: RatioWorker(backend, threads,
                                     log_dir / f"ab-{side}-{backend}-{threads}.log", **start)
                   for side, start in starts.items()}
        try:
            for task in group:
                ratios, failed = _turns(workers, task, rounds, pairs)
                if "current" in failed:
                    current_rows[task.key] = {**failed["current"], "key": task.key}
                else:
                    current_rows[task.key] = {"status": "ok", "reason": None, "key": task.key,
                                              "ratio": statistics.median(ratios["current"]),
                                              "ratios": ratios["current"]}
                if "base" in failed:
                    failures[task.key] = (f"base {failed['base']['status']}: "
                                          f"{failed['base'].get('reason')}")
                    current_rows[task.key]["base_failure"] = failures[task.key]
                else:
                    base_ratios[task.key] = statistics.median(ratios["base"])
                print(f"  {task.key}: " + _progress(base_ratios.get(task.key),
                                                    current_rows[task.key], failed.get("base")),
                      file=sys.stderr, flush=True)
        finally:
            for worker in workers.values():
                worker.close()
    if tasks and not base_ratios:
        raise RevisionError(f"the base revision measured none of the cases (first: "
                            f"{next(iter(failures.values()))})")
    return base_ratios, current_rows


def _turns(workers: dict[str, RatioWorker], task, rounds: int, pairs: int
           ) -> tuple[dict[str, list[float]], dict[str, dict]]:
    """``rounds`` turns of ``task`` on each side, in ABBA order: each side's ratios, and
    the row of a side that failed (it takes no more turns)."""
    ratios: dict[str, list[float]] = {side: [] for side in workers}
    failed: dict[str, dict] = {}
    for number in range(rounds):
        for side in ("base", "current") if number % 2 == 0 else ("current", "base"):
            if side in failed:
                continue
            # A side's first turn compiles its kernels (cold numba cache): time for that.
            timeout = CASE_TIMEOUT_S * (1 if ratios[side] else COMPILE_TIMEOUT_FACTOR)
            row = workers[side].measure(task, pairs, timeout)
            if row.get("status") == "ok":
                ratios[side].append(row["ratio"])
            else:
                failed[side] = row
    return ratios, failed


def _progress(base: float | None, current: dict, base_failure: dict | None) -> str:
    base_text = (f"base {base:.4g}" if base is not None else
                 f"base {base_failure['status']}: {base_failure.get('reason')}")
    if current["status"] != "ok":
        return f"{base_text}, current {current['status']}: {current.get('reason')}"
    change = f" ({current['ratio'] / base - 1:+.1%})" if base is not None else ""
    return f"{base_text}, current {current['ratio']:.4g}{change}"
