"""Workers: a case that raises, a worker that aborts, segfaults or hangs each become a
failed row with a reason while the run completes; thread pinning reaches the worker."""
import pytest

from grubench import runner, suites
from grubench.worker import Worker, WorkerFailed

from fake_backends import install  # noqa: E402  (tests/ is on sys.path under pytest)

TINY = suites.Suite("tiny", "two tiny cases", (suites.Group(((3, 2, 4, 5),), cells=("gru",),
                                                            modes=("inference", "training")),),
                    min_runs=1, min_time=0.0, case_timeout=120.0, baseline="fake-ok")


@pytest.fixture(autouse=True)
def fakes(monkeypatch):
    install(monkeypatch)


def run(backends, **overrides):
    suite = TINY.with_overrides(**overrides) if overrides else TINY
    return runner.run_suite(suite, backends=backends, progress=False)


@pytest.mark.parametrize("behaviour, status, reason", [
    ("raise", "error", "RuntimeError: fake kernel failed"),
    ("abort", "crashed", "signal SIGABRT"),
    ("segfault", "crashed", "signal SIGSEGV"),
])
def test_failing_worker_gives_failed_rows_and_the_run_goes_on(behaviour, status, reason):
    frame = run([f"fake-{behaviour}", "fake-ok"])
    failed = frame[frame["backend"] == f"fake-{behaviour}"]
    assert list(failed["status"]) == [status, status]   # the next case got a fresh worker
    assert all(reason in r for r in failed["reason"])
    ok = frame[frame["backend"] == "fake-ok"]
    assert list(ok["status"]) == ["ok", "ok"]
    assert (ok["rel_err"] < 1e-6).all()


def test_hanging_worker_is_killed_after_the_case_timeout():
    """Alone in its run: the 2 s timeout is for the hanging worker only (a healthy worker
    under the same limit fails on a loaded machine); the next case gets a fresh worker."""
    frame = run(["fake-hang"], case_timeout=2.0)
    assert list(frame["status"]) == ["timeout", "timeout"]
    assert all("no answer after 2 s" in reason for reason in frame["reason"])


@pytest.mark.parametrize("mode", ["inference", "training"])
def test_accuracy_is_measured_against_the_reference_not_the_result(mode):
    """fake-off's outputs (and gradients) are the reference times (1 + OFF_BY): in float64
    its relative error is exactly OFF_BY and its max-abs error OFF_BY times the largest
    reference value, while fake-ok (the reference itself) is exact."""
    from fake_backends import OFF_BY
    from grubench.kernels import reference
    from grubench.case import Case

    frame = run(["fake-off", "fake-ok"], modes=(mode,), dtype="float64")
    off = frame[frame["backend"] == "fake-off"].iloc[0]
    ok = frame[frame["backend"] == "fake-ok"].iloc[0]
    assert off["rel_err"] == pytest.approx(OFF_BY, rel=1e-9)
    args = Case("gru", 3, 2, 4, 5, mode=mode, dtype="float64").make_args(TINY.seed)
    prepared = reference.prepare(args)
    if mode == "training":
        outputs, grads = prepared.training_step()
        arrays = [*outputs, *grads.values()]
    else:
        arrays = prepared.forward()
    largest = max(float(abs(a).max()) for a in arrays)
    assert off["max_abs_err"] == pytest.approx(OFF_BY * largest, rel=1e-9)
    assert ok["rel_err"] == 0.0 and ok["max_abs_err"] == 0.0


def test_worker_starts_with_pinned_threads(tmp_path):
    worker = Worker("fake-ok", 1, tmp_path / "log", timeout=30)
    try:
        # the pools start pinned (environment before any import), then are set again
        assert worker.hello["thread_env"] == {
            "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
            "NUMBA_NUM_THREADS": "1", "PJRT_NPROC": "1", "OMP_WAIT_POLICY": "PASSIVE"}
        pools = worker.hello["pinned"]["threadpoolctl"]
        assert pools and all(p["num_threads"] == 1 for p in pools)
        assert worker.hello["backend_version"] == "fake ok"
    finally:
        worker.close()


def test_dead_worker_raises_worker_failed(tmp_path):
    worker = Worker("fake-abort", 1, tmp_path / "log", timeout=30)
    case = dict(backend="fake-abort", cell="gru", variant="reset_after", mode="inference",
                T=2, B=1, I=2, H=2, dtype="float32")
    with pytest.raises(WorkerFailed) as failure:
        worker.request(dict(case=case, seed=0, reference=None, min_runs=1, min_time=0.0), 30)
    assert failure.value.status == "crashed"
    assert worker.process.poll() is not None


def test_every_request_kind_names_a_function_that_exists():
    """grubench.handlers names its functions by module path: a typo would surface only
    when a worker first gets that kind of request."""
    from grubench import worker
    from grubench.handlers import HANDLERS

    assert set(HANDLERS) == {"case", "reference", "regress", "train", "tune", "model"}
    for kind in HANDLERS:
        assert callable(worker.handler(kind)), kind
