"""One training run (dataset, cell, backend, threads) in a fresh worker process.

A fresh process per run gives each run its own thread pools, pinned before any library
starts them (numba's, torch's and BLAS's pools in one process spin against each other on
2 cores), and its own peak resident set. The parent saves the dataset once to an .npz;
a grubench.worker started for the run (without a backend: the job names its own) gets
the job as a "train" request, reads the data, trains and replies with the result row.
"""
from __future__ import annotations

import signal
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from grubench import backends, memory
from grubench.threads import pin_threads
from grubench.training import loop, model
from grubench.training.datasets import Dataset
from grubench.worker import Worker, WorkerFailed

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
    layers: int = 1
    bidirectional: bool = False


def seconds_per_epoch(epoch_seconds: list[float]) -> float:
    """Median epoch time, leaving out the first epoch (it carries JIT compilation and
    warm-up) when there are others."""
    return statistics.median(epoch_seconds[1:] or epoch_seconds)


def build_model(job: Job, data):
    """The kernel model on ``job.backend``, or the torch model, from seeded parameters.
    (The kernel model's recurrent network is a grubench.nn module, so torch is imported
    for both.)"""
    spec = model.ModelSpec(job.cell, job.hidden, data.classes,
                           features=0 if data.is_tokens else data.features,
                           vocab_size=data.vocab_size,
                           embed=job.embed if data.is_tokens else 0, layers=job.layers,
                           bidirectional=job.bidirectional)
    params = model.init_parameters(spec, job.seed)
    if job.backend == TORCH_MODEL:
        from grubench.training import torch_model

        return torch_model.TorchModel(spec, params, job.lr, job.clip), torch_model.version()
    backend = backends.get(job.backend)
    return model.KernelModel(spec, backend, params, job.lr, job.clip), backend.version


def allocation_counter(backend_name: str) -> str:
    """The grubench.memory counter that sees a model's arrays: torch's profiler for the
    torch model, the one its registry entry declares for a backend."""
    if backend_name == TORCH_MODEL:
        return "torch-profiler"
    return backends.get(backend_name).entry.memory


def run_job(job: Job) -> dict:
    """Train as ``job`` says, in this process; the result row with its learning curve."""
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
        "layers": job.layers, "directions": 2 if job.bidirectional else 1,
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


def run_request(_backend, request: dict, _state: dict) -> dict:
    """A worker's answer to a "train" request (grubench.handlers): the result row, or
    status "diverged" with the reason."""
    backends.load_plugins()      # the job may name a plugin's backend
    try:
        return {"status": "ok", "result": run_job(Job(**request["job"]))}
    except loop.TrainingDiverged as error:
        return {"status": "diverged", "reason": str(error)}


def run_in_worker(job: Job, scratch: Path, timeout_s: float = WORKER_TIMEOUT_S) -> dict:
    """``run_job`` in a fresh worker process whose thread pools start at ``job.threads``;
    RunFailed saying how when the run cannot train (a diverging loss, a backend that
    cannot train here) or its worker fails, dies or overruns ``timeout_s``."""
    stem = f"{Path(job.dataset_file).stem}-{job.cell}-{job.backend}-t{job.threads}"
    what = f"{job.cell} on {job.backend}"
    deadline = time.monotonic() + timeout_s
    worker = None
    try:
        worker = Worker(None, job.threads, scratch / f"{stem}.log", timeout_s)
        reply = worker.request({"kind": "train", "job": asdict(job)},
                               deadline - time.monotonic(), doing="training")
    except WorkerFailed as failure:
        if failure.status == "timeout":
            raise RunFailed(f"{what}: no result after {timeout_s:g} s; the worker was "
                            f"stopped") from None
        hint = " (out of memory?)" if failure.returncode == -signal.SIGKILL else ""
        raise RunFailed(f"{what}: the training {failure.reason}{hint}") from None
    finally:
        if worker is not None:
            worker.close(kill=True)
    if reply["status"] == "ok":
        return reply["result"]
    if reply["status"] == "error":          # a bug, not the user's: say where it happened
        raise RunFailed(f"{what}: the training worker failed: {reply['reason']}")
    raise RunFailed(f"{what}: {reply['reason']}")       # diverged, unavailable, unsupported
