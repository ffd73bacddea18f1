"""One training run (dataset, cell, backend, threads) in a fresh worker process.

A fresh process per run gives each run its own thread pools, pinned before any library
starts them (numba's, torch's and BLAS's pools in one process spin against each other on
2 cores), and its own peak resident set. The parent saves the dataset
once to an .npz, the worker reads it, trains, and writes its result as JSON.

    python -m grubench.training.runner JOB.json RESULT.json   # what the parent runs
"""
from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from grubench.threads import thread_env

USER_ERROR_EXIT = 2
# The backend name of the pure-torch comparison model (grubench.training.torch_model).
TORCH_MODEL = "torch-autograd"


class RunFailed(RuntimeError):
    """A worker stopped on a user-facing problem (diverged loss, unusable data or backend);
    the message says what happened."""


@dataclass(frozen=True)
class Job:
    """Everything a worker needs. ``backend`` is a registry name or TORCH_MODEL."""

    dataset_file: str
    cell: str
    backend: str
    hidden: int
    embed: int
    epochs: int
    batch: int
    lr: float
    clip: float
    seed: int
    threads: int


def seconds_per_epoch(epoch_seconds: list[float]) -> float:
    """Median epoch time, leaving out the first epoch (it carries JIT compilation and
    warm-up) when there are others."""
    return statistics.median(epoch_seconds[1:] or epoch_seconds)


def build_model(job: Job, data):
    """The kernel model on ``job.backend``, or the torch model, from seeded parameters.
    (torch is imported only for the torch model, so kernel workers stay lean.)"""
    from grubench.training import model

    spec = model.ModelSpec(job.cell, job.hidden, data.classes,
                           features=0 if data.is_tokens else data.features,
                           vocab_size=data.vocab_size,
                           embed=job.embed if data.is_tokens else 0)
    params = model.init_parameters(spec, job.seed)
    if job.backend == TORCH_MODEL:
        from grubench.training import torch_model

        return torch_model.TorchModel(spec, params, job.lr, job.clip), torch_model.version()
    from grubench import backends

    backend = backends.get(job.backend)
    return model.KernelModel(spec, backend, params, job.lr, job.clip), backend.version


def allocation_counter(backend_name: str) -> str:
    """The grubench.memory counter that sees a model's arrays: torch's profiler for the
    torch model and the torch backends, tracemalloc for NumPy and Numba backends."""
    from grubench import backends

    torch_based = (backend_name == TORCH_MODEL
                   or backends.get(backend_name).entry.module.endswith("torch_nn"))
    return "torch-profiler" if torch_based else "tracemalloc"


def run_job(job: Job) -> dict:
    """Train as ``job`` says, in this process; the result row with its learning curve."""
    from grubench import memory
    from grubench.threads import pin_threads
    from grubench.training import loop
    from grubench.training.datasets import Dataset

    data = Dataset.load(job.dataset_file)
    model, version = build_model(job, data)
    pin_threads(job.threads)
    history = loop.train(model, data, epochs=job.epochs, batch=job.batch, seed=job.seed,
                         lr=job.lr)
    training_rss = memory.rss_bytes()   # before the profiler below adds its own records
    # After scoring: one more step on the first batch, measured by the allocation counter
    # that sees this model's arrays.
    x, lengths, labels = next(loop.batches(data.x_train, data.lengths_train, data.y_train,
                                           job.batch))
    counter = allocation_counter(job.backend)
    step_peak = memory.peak_bytes(lambda: model.train_step(x, lengths, labels), counter)
    return {
        "dataset": data.name, "cell": job.cell, "backend": job.backend,
        "backend_version": version, "threads": job.threads, "hidden": job.hidden,
        "epochs": job.epochs, "batch": job.batch, "lr": job.lr, "seed": job.seed,
        "parameters": model.parameter_count(),
        "seconds_per_epoch": seconds_per_epoch(history.epoch_seconds),
        "first_epoch_seconds": history.epoch_seconds[0],
        "final_train_loss": history.train_loss[-1],
        "test_accuracy": history.test_accuracy[-1],
        "step_peak_mib": step_peak / 2**20, "step_peak_counter": counter,
        "process_peak_rss_mib": training_rss / 2**20,
        "epoch_seconds": history.epoch_seconds, "train_loss": history.train_loss,
        "test_accuracy_curve": history.test_accuracy,
    }


#: A training run that has not finished after this long is stopped (the defaults take ~1 min).
WORKER_TIMEOUT_S = 3600.0


def run_in_worker(job: Job, scratch: Path, timeout_s: float = WORKER_TIMEOUT_S) -> dict:
    """``run_job`` in a fresh process whose thread pools start at ``job.threads``; a worker
    that dies or overruns ``timeout_s`` raises RunFailed saying how."""
    stem = f"{Path(job.dataset_file).stem}-{job.cell}-{job.backend}-t{job.threads}"
    job_file, result_file = scratch / f"{stem}.job.json", scratch / f"{stem}.result.json"
    job_file.write_text(json.dumps(asdict(job)))
    result_file.unlink(missing_ok=True)
    env = {**os.environ, **thread_env(job.threads)}
    try:
        done = subprocess.run([sys.executable, "-m", "grubench.training.runner",
                               str(job_file), str(result_file)], env=env, capture_output=True,
                               text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise RunFailed(f"{job.cell} on {job.backend}: no result after {timeout_s:g} s; "
                        f"the worker was stopped") from None
    if done.returncode == USER_ERROR_EXIT:
        raise RunFailed(f"{job.cell} on {job.backend}: {done.stderr.strip()}")
    if done.returncode != 0 or not result_file.exists():
        how = (f"signal {signal.Signals(-done.returncode).name}" if done.returncode < 0
               else f"exit code {done.returncode}")
        hint = " (out of memory?)" if done.returncode == -signal.SIGKILL else ""
        last = done.stderr.strip().splitlines()[-1:] or ["(no message)"]
        raise RunFailed(f"{job.cell} on {job.backend}: the training worker died with "
                        f"{how}{hint}: {last[0][:300]}")
    return json.loads(result_file.read_text())


def main(argv: list[str]) -> int:
    from grubench.kernels.contract import BackendUnavailable
    from grubench.training.loop import TrainingDiverged

    job_file, result_file = argv
    job = Job(**json.loads(Path(job_file).read_text()))
    try:
        result = run_job(job)
    except (TrainingDiverged, BackendUnavailable) as error:
        print(error, file=sys.stderr)
        return USER_ERROR_EXIT
    Path(result_file).write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
