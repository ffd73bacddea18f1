"""Runs in this process and in a worker process: results, reproducibility, failures."""
import json

import numpy as np
import pytest

from grubench.training import runner
from tests import fake_backends


@pytest.fixture
def no_pinning(monkeypatch):
    """run_job pins the process's thread pools; in the test process leave them alone."""
    monkeypatch.setattr("grubench.threads.pin_threads", lambda threads: {})


def make_job(tmp_path, data, **changes):
    path = tmp_path / "tiny.npz"
    data.save(path)
    settings = dict(dataset_file=str(path), cell="gru", backend="numpy", hidden=6, embed=0,
                    epochs=3, batch=8, lr=0.02, clip=1.0, seed=0, threads=1)
    settings.update(changes)
    return runner.Job(**settings)


@pytest.mark.parametrize("backend", ["numpy", runner.TORCH_MODEL])
def test_run_job_records_layers_and_directions(tmp_path, no_pinning, tiny_series, backend):
    job = make_job(tmp_path, tiny_series(), backend=backend, epochs=1, layers=2,
                   bidirectional=True)
    row = runner.run_job(job)
    assert (row["layers"], row["directions"]) == (2, 2)
    assert row["parameters"] == 2 * 18 * (3 + 6 + 2) + 2 * 18 * (12 + 6 + 2) + 3 * 13


def test_seconds_per_epoch_leaves_out_the_first_epoch():
    assert runner.seconds_per_epoch([9.0, 1.0, 3.0, 2.0]) == 2.0
    assert runner.seconds_per_epoch([4.0]) == 4.0


@pytest.mark.parametrize("backend", ["numpy", runner.TORCH_MODEL])
def test_run_job_is_reproducible(tmp_path, no_pinning, tiny_series, backend):
    job = make_job(tmp_path, tiny_series(), cell="lstm", backend=backend)
    first, again = runner.run_job(job), runner.run_job(job)
    assert first["test_accuracy"] == again["test_accuracy"]
    assert first["train_loss"] == again["train_loss"]
    assert first["parameters"] == 4 * 6 * (3 + 6 + 2) + 3 * (6 + 1)
    assert len(first["test_accuracy_curve"]) == 3 and first["step_peak_mib"] > 0
    assert first["step_peak_counter"] == ("tracemalloc" if backend == "numpy"
                                          else "torch-profiler")


@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")
def test_a_diverging_run_answers_diverged_with_the_reason(tmp_path, no_pinning, tiny_series):
    data = tiny_series()
    data.x_train[0, 0, 0] = np.inf
    job = make_job(tmp_path, data)
    reply = runner.run_request(None, {"kind": "train", "job": json.loads(
        json.dumps(job.__dict__))}, {})
    assert reply["status"] == "diverged" and "learning rate too high" in reply["reason"]
    assert "result" not in reply


def test_run_in_worker(tmp_path, tiny_series):
    result = runner.run_in_worker(make_job(tmp_path, tiny_series(), epochs=2), tmp_path)
    assert result["backend"] == "numpy" and result["threads"] == 1
    assert result["process_peak_rss_mib"] > 0
    data = tiny_series()
    data.x_train[0, 0, 0] = np.nan
    with pytest.raises(runner.RunFailed, match="gru on numpy: training loss became nan"):
        runner.run_in_worker(make_job(tmp_path, data), tmp_path)


def test_a_worker_that_fails_dies_or_overruns_is_a_run_failure(tmp_path, tiny_series,
                                                               monkeypatch):
    job = make_job(tmp_path, tiny_series())
    (tmp_path / "tiny.npz").write_bytes(b"not an npz")       # the worker fails reading it
    with pytest.raises(runner.RunFailed, match="gru on numpy: the training worker failed: "
                                               "ValueError: This file contains pickled"):
        runner.run_in_worker(job, tmp_path)
    job = make_job(tmp_path, tiny_series(), backend="fake-abort")
    fake_backends.install(monkeypatch)
    with pytest.raises(runner.RunFailed, match=r"gru on fake-abort: the training worker died "
                                               r"\(signal SIGABRT\) while training"):
        runner.run_in_worker(job, tmp_path)
    job = make_job(tmp_path, tiny_series(), epochs=50)
    with pytest.raises(runner.RunFailed, match=r"no result after 0.01 s; the worker was stop"):
        runner.run_in_worker(job, tmp_path, timeout_s=0.01)   # less than a python start


def test_allocation_counter_per_backend():
    assert runner.allocation_counter(runner.TORCH_MODEL) == "torch-profiler"
    assert runner.allocation_counter("torch-cpu") == "torch-profiler"
    assert runner.allocation_counter("numpy") == "tracemalloc"
