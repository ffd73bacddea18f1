"""Faults, as a user meets them: `python -m grubench run` in a process of its own, then
signals (SIGINT, SIGTERM, SIGHUP) while a worker starts, during a case and while the report
is written, a second signal, kill -9 of a worker and of the runner, a worker that hangs, a
full output folder, an unusable numba cache, two runs into one folder. After each: the
exit status, results.json (complete with every row measured so far, or absent: never
half), no worker left running and no scratch folder left.

Backends are the test fakes (tests/fake_backends.py) and tests/fault_plugins.py, loaded
through GRUBENCH_PLUGINS; sizes are tiny, so each run takes a few seconds."""
import json
import os
import resource
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

ROOT = Path(__file__).resolve().parents[1]
SMALL = ("--cells", "gru", "--mode", "inference", "--suite", "quick", "--size", "3,1,2,2",
         "--size", "4,1,2,2", "--min-runs", "1", "--min-time", "0.01")


class Run:
    """``python -m grubench ARGS`` in a session of its own, with a private TMPDIR (where
    its scratch folder goes) and the fault plugins loaded."""

    def __init__(self, tmp_path: Path, *args, env=None, preexec_fn=None, name="run"):
        self.tmp = tmp_path / f"{name}-tmp"
        self.tmp.mkdir()
        self.out = tmp_path / "out"
        self.stderr_path = tmp_path / f"{name}.stderr"
        environment = {**os.environ, "TMPDIR": str(self.tmp),
                       "PYTHONPATH": os.pathsep.join(filter(None, (str(ROOT),
                                                            os.environ.get("PYTHONPATH")))),
                       "GRUBENCH_PLUGINS": "tests.fake_backends,tests.fault_plugins",
                       **(env or {})}
        with open(self.stderr_path, "w") as stderr:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "grubench", *args], cwd=tmp_path, env=environment,
                stdout=subprocess.DEVNULL, stderr=stderr, start_new_session=True,
                preexec_fn=preexec_fn)

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text()

    def wait_for(self, text: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.stderr:
            assert self.process.poll() is None, f"ended before {text!r}:\n{self.stderr}"
            assert time.monotonic() < deadline, f"no {text!r} after {timeout} s:\n{self.stderr}"
            time.sleep(0.05)

    def workers(self, backend: str | None = None) -> list[psutil.Process]:
        """Live worker processes this run started (their last argument is its pid)."""
        found = []
        for process in psutil.process_iter(["cmdline"]):
            line = process.info["cmdline"] or []
            if ("grubench.worker" in line and line[-1] == str(self.process.pid)
                    and (backend is None or backend in line)
                    and process.status() != psutil.STATUS_ZOMBIE):
                found.append(process)
        return found

    def wait_for_worker(self, backend: str, timeout: float = 60) -> psutil.Process:
        deadline = time.monotonic() + timeout
        while not self.workers(backend):
            assert self.process.poll() is None, f"ended before {backend} started:\n{self.stderr}"
            assert time.monotonic() < deadline, f"no {backend} worker:\n{self.stderr}"
            time.sleep(0.05)
        return self.workers(backend)[0]

    def finish(self, timeout: float = 60) -> int:
        """The exit status, after checking that nothing is left behind."""
        code = self.process.wait(timeout)
        self.assert_nothing_left()
        assert "Traceback" not in self.stderr, self.stderr
        return code

    def assert_nothing_left(self) -> None:
        deadline = time.monotonic() + 10        # a killed worker may take a moment to go
        while self.workers() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not self.workers(), "a worker outlived its run"
        assert not list(self.tmp.glob("grubench-*")), "a scratch folder was left behind"

    def results(self):
        """results.json as a dict (None if absent); no temporary file beside it."""
        assert not [p.name for p in self.out.glob(".*.tmp")], "a half-written file was left"
        path = self.out / "results.json"
        return json.loads(path.read_text()) if path.exists() else None


@pytest.fixture
def start(tmp_path):
    """Run(tmp_path, ...) for one test; whatever a failing test leaves running (the run,
    its workers) is killed at teardown."""
    started = []

    def run(*args, **kwargs):
        started.append(Run(tmp_path, *args, **kwargs))
        return started[-1]

    yield run
    for launched in started:
        for process in [launched.process, *launched.workers()]:
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except OSError:
                pass
        launched.process.wait()


def rows(results) -> list[tuple]:
    return [(r["backend"], r["T"], r["status"]) for r in results["results"]]


SIGNALS = [signal.SIGINT, signal.SIGTERM, signal.SIGHUP]


@pytest.mark.parametrize("signum", SIGNALS, ids=lambda s: s.name)
def test_a_signal_during_a_case_keeps_the_measured_rows(start, signum):
    run = start("run", *SMALL, "--backends", "fake-ok,fake-hang", "--out", "out")
    run.wait_for_worker("fake-hang")
    run.wait_for("1/4")
    time.sleep(0.5)                             # fake-hang is in its case now
    run.process.send_signal(signum)
    assert run.finish() == 128 + signum
    results = run.results()
    assert rows(results) == [("fake-ok", 3, "ok")] and results["interrupted"]
    assert f"interrupted by {signum.name} after 1 of 4 cases" in results["notes"]


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=lambda s: s.name)
def test_a_signal_while_a_worker_starts_ends_it_at_once(start, signum):
    """The worker's start (imports, a compile) takes an hour here: the run must not wait."""
    run = start("run", *SMALL, "--backends", "fault-slow-start", "--out", "out",
              env={"GRUBENCH_FAULT_SLOW_START": "1"})
    run.wait_for_worker("fault-slow-start")
    run.process.send_signal(signum)
    assert run.finish(timeout=30) == 128 + signum
    assert rows(run.results()) == [] and run.results()["interrupted"]


@pytest.mark.slow
def test_a_signal_while_the_report_is_written_waits_for_the_whole_report(start):
    run = start("run", *SMALL, "--backends", "fake-ok", "--out", "out",
              env={"GRUBENCH_FAULT_SLOW_REPORT": "1"})
    run.wait_for("writing results.json")
    run.process.send_signal(signal.SIGTERM)
    assert run.finish() == 143
    results = run.results()
    assert rows(results) == [("fake-ok", 3, "ok"), ("fake-ok", 4, "ok")]
    assert not results["interrupted"]           # every case was measured
    assert (run.out / "report.md").exists() and (run.out / "results.csv").exists()


@pytest.mark.slow
def test_a_second_signal_ends_at_once_and_leaves_no_worker(start):
    """The first SIGTERM during a case; the second while the (slow) report is written:
    the run ends there, with no worker, no scratch folder and no half file."""
    run = start("run", *SMALL, "--backends", "fake-ok,fake-hang", "--out", "out",
              env={"GRUBENCH_FAULT_SLOW_REPORT": "1"})
    run.wait_for_worker("fake-hang")
    run.wait_for("1/4")
    time.sleep(0.5)
    run.process.send_signal(signal.SIGTERM)
    run.wait_for("writing results.json")
    run.process.send_signal(signal.SIGTERM)
    assert run.finish() == 143
    results = run.results()
    assert results is None or rows(results) == [("fake-ok", 3, "ok")]


@pytest.mark.slow
def test_a_killed_worker_and_a_hung_one_become_rows_and_the_run_goes_on(start):
    run = start("run", *SMALL, "--backends", "fake-ok,fake-hang", "--out", "out",
              "--timeout", "8")
    run.wait_for("1/4")
    time.sleep(0.5)
    run.wait_for_worker("fake-hang").kill()     # kill -9 during its first case
    assert run.finish() == 0
    results = run.results()
    assert rows(results) == [("fake-ok", 3, "ok"), ("fake-hang", 3, "crashed"),
                             ("fake-ok", 4, "ok"), ("fake-hang", 4, "timeout")]
    assert "signal SIGKILL" in results["results"][1]["reason"]


def test_kill_9_of_the_runner_takes_its_workers_along(start):
    """Nothing runs in a process killed by SIGKILL, so its scratch folder stays; its
    workers die with it (the kernel's parent-death signal)."""
    run = start("run", *SMALL, "--backends", "fake-hang", "--out", "out")
    worker = run.wait_for_worker("fake-hang")
    run.process.kill()
    run.process.wait(30)
    worker.wait(10)
    assert not run.workers()
    assert run.results() is None


def test_a_full_output_folder_keeps_the_old_report_whole(start, tmp_path):
    """A file-size limit stands in for a full disk: results.json cannot be written. The
    old one stays as it was, no temporary file is left, and the error is one line."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "results.json").write_text('{"old": true}')

    def small_files():
        resource.setrlimit(resource.RLIMIT_FSIZE, (2000, 2000))

    run = start("run", *SMALL, "--backends", "fake-ok", "--out", "out",
              preexec_fn=small_files)
    assert run.finish() == 1
    assert run.results() == {"old": True}
    assert "grubench: error: cannot write the report to out: File too large" in run.stderr


@pytest.mark.slow
def test_a_second_run_into_the_same_folder_is_refused(start):
    first = start("run", *SMALL, "--backends", "fake-hang", "--out", "out",
                name="first")
    first.wait_for_worker("fake-hang")
    second = start("run", *SMALL, "--backends", "fake-ok", "--out", "out",
                 name="second")
    assert second.finish() == 2
    assert (f"grubench: error: another grubench run (pid {first.process.pid}) is writing "
            f"to out; wait for it or give another --out") in second.stderr
    first.process.send_signal(signal.SIGTERM)
    assert first.finish() == 143
    assert rows(first.results()) == []
    # the lock ends with its holder: the folder is free again
    third = start("run", *SMALL, "--backends", "fake-ok", "--out", "out",
                name="third")
    assert third.finish() == 0 and len(rows(third.results())) == 2


def test_no_numba_cache_folder_is_one_warning_not_a_traceback(start, tmp_path):
    """No writable folder for numba's cache (NUMBA_CACHE_DIR under a plain file, and no
    other locator: a read-only install with a read-only HOME): `list` still works and
    numba-cpu is available, compiling without the cache."""
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    run = start("list", env={"NUMBA_CACHE_DIR": str(blocker / "cache"),
                                     "GRUBENCH_FAULT_NO_CACHE_LOCATOR": "1"})
    assert run.finish() == 0
    assert run.stderr.count("numba-cpu compiles without its on-disk cache") == 1
    assert "no locator available" in run.stderr


CACHED_MODULE = textwrap.dedent("""
    from grubench.kernels.numba_cpu import cached_njit

    @cached_njit()
    def add_one(x):
        return x + 1
""")


def test_a_corrupt_numba_cache_entry_compiles_again(tmp_path):
    """A truncated index and a garbage data file: the function compiles again (one
    warning) and its entry is rewritten, so the next process loads it from the cache."""
    (tmp_path / "cached_module.py").write_text(CACHED_MODULE)
    command = [sys.executable, "-W", "always", "-c",
               "import cached_module; print(cached_module.add_one(41))"]
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "NUMBA_CACHE_DIR": str(tmp_path / "c")}

    def run():
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0 and done.stdout == "42\n", done.stderr
        return done.stderr

    assert "unreadable cache entry" not in run()            # compiled and saved
    index, = (tmp_path / "c").rglob("*.nbi")
    data, = (tmp_path / "c").rglob("*.nbc")
    for corrupt in ({index: index.read_bytes()[:20]}, {data: b"not a pickle"}):
        for path, content in corrupt.items():
            path.write_bytes(content)
        warned = run()
        assert warned.count("unreadable cache entry for add_one") == 1, warned
        assert "unreadable cache entry" not in run()        # rewritten: loads cleanly
