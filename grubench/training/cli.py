"""grubench train: train the recurrent classifier with grubench's kernels and with torch,
GRU against LSTM, and report parameters, time per epoch, memory and test accuracy.

Every run goes to a fresh worker process (grubench.training.runner). User mistakes (unknown
names, bad data paths, a diverging loss) print one line and exit with status 2, and then
no report is written.
"""
from __future__ import annotations

import argparse
import itertools
import sys
import tempfile
from pathlib import Path

from grubench import history

USER_ERROR = 2

DEFAULT_HIDDEN = 64
DEFAULT_EMBED = 32
DEFAULT_CLIP = 1.0
# Epochs, batch and (starting) learning rate per dataset: few epochs that still reach the
# 90% test accuracy with margin for both cells at hidden 64 (measured: MNIST 94-96%
# after 6, JapaneseVowels 97-98% after 10), so the default run fits in 3 minutes. Batch 16:
# numba-cpu's GRU training step is ~8x torch's there, ~4x at 32. IMDB's 500-step reviews
# take larger batches.
DATASET_DEFAULTS = {
    "mnist": {"epochs": 6, "batch": 16, "lr": 5e-3},
    "digits": {"epochs": 15, "batch": 16, "lr": 5e-3},
    "japanese-vowels": {"epochs": 10, "batch": 16, "lr": 5e-3},
    "imdb": {"epochs": 3, "batch": 64, "lr": 2e-3},
}


def add_subcommand(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "train", help="train GRU/LSTM classifiers with grubench's kernels and with torch",
        description=__doc__.split("\n\n")[0])
    parser.add_argument("--cells", default="gru,lstm", help="comma list of gru, lstm")
    parser.add_argument("--backends", default=None,
                        help="comma list of registered backends and 'torch-autograd' "
                             "(default: numba-cpu, or numpy without it, and torch-autograd)")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--dataset", default=None,
                        help="comma list of built-in datasets: mnist, digits, "
                             "japanese-vowels (default: mnist,japanese-vowels)")
    source.add_argument("--data", type=Path, default=None,
                        help="IMDB from a local aclImdb/ folder or a Keras imdb.npz")
    parser.add_argument("--epochs", type=int, default=None, help="default: per dataset")
    parser.add_argument("--hidden", type=int, default=DEFAULT_HIDDEN,
                        help="recurrent state size (default: %(default)s)")
    parser.add_argument("--layers", type=int, default=1,
                        help="stacked recurrent layers (default: %(default)s)")
    parser.add_argument("--bidirectional", action="store_true",
                        help="each layer reads the sequence both ways; the head reads the "
                             "last layer's two final states")
    parser.add_argument("--batch", type=int, default=None,
                        help="sequences per training step (default: per dataset)")
    parser.add_argument("--lr", type=float, default=None, help="Adam's learning rate "
                        "(default: per dataset)")
    parser.add_argument("--embed", type=int, default=DEFAULT_EMBED,
                        help="embedding width for token data (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="(default: %(default)s)")
    parser.add_argument("--threads", default="1",
                        help="comma list of thread counts (default: %(default)s)")
    parser.add_argument("--out", type=Path, default=Path("reports/latest"),
                        help="report folder (default: %(default)s)")
    history.add_option(parser)
    parser.set_defaults(handler=run)
    return parser


def comma_list(text: str, what: str) -> list[str]:
    items = [item.strip() for item in text.split(",") if item.strip()]
    if not items:
        raise ValueError(f"--{what} is empty")
    return items


def default_backends() -> list[str]:
    from grubench import backends
    from grubench.training import runner

    fast = "numba-cpu" if ("numba-cpu" in backends.names()
                           and backends.get("numba-cpu").available) else "numpy"
    if fast == "numpy":
        print("numba-cpu is unavailable here; training with the (slow) numpy backend")
    return [fast, runner.TORCH_MODEL]


def check_backends(names: list[str]) -> None:
    from grubench import backends
    from grubench.training import runner, torch_model

    backends.load_plugins()
    for name in names:
        cannot_train = name != runner.TORCH_MODEL and backends.get(name).entry.unsupported.get(
            "training")
        if cannot_train:
            raise ValueError(f"backend {name!r} cannot train: {cannot_train}")
        if name != runner.TORCH_MODEL and backends.get(name).device != "cpu":
            raise ValueError(f"backend {name!r} runs on {backends.get(name).device}; the "
                             f"model's grubench.nn network runs CPU backends only")
        backend_ok, why = (torch_model.availability() if name == runner.TORCH_MODEL else
                           (backends.get(name).available, backends.get(name).why_unavailable))
        if not backend_ok:
            raise ValueError(f"backend {name!r} is unavailable: {why}")


def check_positive(args) -> None:
    for name in ("epochs", "hidden", "batch", "embed", "lr", "layers"):
        value = getattr(args, name)
        if value is not None and not value > 0:         # NaN is not positive either
            raise ValueError(f"--{name} must be positive, got {value}")


def load_datasets(args):
    from grubench.training import datasets

    if args.data is not None:
        return [datasets.load_imdb(args.data)]
    names = comma_list(args.dataset, "dataset") if args.dataset else datasets.default_datasets()
    return [datasets.load_builtin(name) for name in names]


def plan(args):
    """Validated settings: (cells, backends, threads, datasets). Raises ValueError."""
    from grubench.kernels.contract import CELLS

    check_positive(args)
    cells = comma_list(args.cells, "cells")
    unknown = [c for c in cells if c not in CELLS]
    if unknown:
        raise ValueError(f"unknown cell {unknown[0]!r}; expected gru and/or lstm")
    backend_names = comma_list(args.backends, "backends") if args.backends else default_backends()
    check_backends(backend_names)
    try:
        threads = [int(t) for t in comma_list(args.threads, "threads")]
    except ValueError as error:
        raise ValueError(f"--threads must be a comma list of integers: {error}") from error
    if min(threads) < 1:
        raise ValueError(f"--threads must be >= 1, got {min(threads)}")
    check_model_fits(cells, args.hidden)
    return cells, backend_names, threads, load_datasets(args)


def check_model_fits(cells, hidden: int) -> None:
    """ValueError before any worker starts when the recurrent weights alone, with their
    gradients and Adam's two moments (4 float32 copies of G*H*H), cannot fit in memory."""
    from grubench.kernels.contract import GATES, available_memory_bytes, format_bytes

    need = max(4 * 4 * GATES[cell] * hidden * hidden for cell in cells)
    have = available_memory_bytes()
    if need > 0.9 * have:
        raise ValueError(f"--hidden {hidden} needs at least {format_bytes(need)} for the "
                         f"recurrent weights, their gradients and Adam's moments; "
                         f"{format_bytes(have)} of memory is available")


def jobs(args, data, dataset_file: Path, cells, backend_names, threads):
    """The runs on one dataset: every cell x thread count x backend, the dataset's default
    settings where the command line leaves them open."""
    from grubench.training import runner

    settings = DATASET_DEFAULTS[data.name]
    for cell, thread_count, backend in itertools.product(cells, threads, backend_names):
        yield runner.Job(str(dataset_file), cell, backend, args.hidden, args.embed,
                         args.epochs or settings["epochs"], args.batch or settings["batch"],
                         args.lr or settings["lr"], DEFAULT_CLIP, args.seed, thread_count,
                         args.layers, args.bidirectional)


def run(args) -> int:
    """The ``train`` subcommand; returns the exit status."""
    from grubench import machine
    from grubench.files import check_writable_dir
    from grubench.training import report, runner

    try:
        cells, backend_names, threads, loaded = plan(args)
        out_dir = check_writable_dir(args.out)
    except (ValueError, OSError) as error:   # DataError is a ValueError
        print(f"grubench train: error: {error}", file=sys.stderr)
        return USER_ERROR
    rows = []
    with tempfile.TemporaryDirectory(prefix="grubench-train-") as scratch:
        for data in loaded:
            dataset_file = Path(scratch) / f"{data.name}.npz"
            data.save(dataset_file)
            for job in jobs(args, data, dataset_file, cells, backend_names, threads):
                print(f"training {data.name} {job.cell} on {job.backend} ({job.threads} "
                      f"thread{'s' * (job.threads > 1)}) ...", flush=True)
                try:
                    rows.append(runner.run_in_worker(job, Path(scratch)))
                except runner.RunFailed as error:
                    print(f"grubench train: error: {data.name}: {error}", file=sys.stderr)
                    return USER_ERROR
    rows = report.add_comparisons(rows)
    print(report.format_text(rows))
    for path in report.write_reports(rows, out_dir, machine.context()):
        print(f"wrote {path}")
    history.record(out_dir / "training.json", args)
    return 0

