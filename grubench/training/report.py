"""Training results: the table (terminal and Markdown), CSV, JSON and the learning curves.

A row is one run's result (see runner.run_job). Each row is compared with the torch model's
row of the same dataset, cell and thread count: ``speedup`` = torch's seconds per epoch /
this row's, ``accuracy_delta`` = this row's test accuracy - torch's, in points. Every file
is written atomically (grubench.files.write_atomic).
"""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from grubench.files import write_atomic
from grubench.kernels.cells import CELLS
from grubench.tables import Table, render_text
from grubench.training.runner import TORCH_MODEL

STEM = "training"
#: A learning curve's line style, by its cell's place in CELLS (GRU solid, LSTM dashed).
LINE_STYLES = ("-", "--", ":", "-.")

# (heading, row key, format)
COLUMNS = [
    ("dataset", "dataset", "{}"),
    ("cell", "cell", "{}"),
    ("backend", "backend", "{}"),
    ("threads", "threads", "{}"),
    ("params", "parameters", "{:,}"),
    ("s/epoch", "seconds_per_epoch", "{:.3f}"),
    ("vs torch", "speedup", "{:.2f}x"),
    ("step peak MiB", "step_peak_mib", "{:.2f}"),
    ("RSS MiB", "process_peak_rss_mib", "{:.0f}"),
    ("final loss", "final_train_loss", "{:.4f}"),
    ("test acc %", "test_accuracy", "{:.2%}"),
    ("Δ acc pts", "accuracy_delta", "{:+.2f}"),
]


def add_comparisons(rows: list[dict]) -> list[dict]:
    """Rows with ``speedup`` and ``accuracy_delta`` against the torch model (None where no
    torch row of the same dataset, cell and threads exists)."""
    torch_rows = {(r["dataset"], r["cell"], r["threads"]): r for r in rows
                  if r["backend"] == TORCH_MODEL}
    compared = []
    for row in rows:
        torch_row = torch_rows.get((row["dataset"], row["cell"], row["threads"]))
        speedup = delta = None
        if torch_row is not None:
            speedup = torch_row["seconds_per_epoch"] / row["seconds_per_epoch"]
            delta = 100.0 * (row["test_accuracy"] - torch_row["test_accuracy"])
        compared.append({**row, "speedup": speedup, "accuracy_delta": delta})
    return compared


def cells(row: dict) -> list[str]:
    """A row's table cells as text ("-" where a value is missing)."""
    return ["-" if row.get(key) is None else fmt.format(row[key]).replace("%", "")
            for _heading, key, fmt in COLUMNS]


def format_text(rows: list[dict]) -> str:
    """The table for a terminal."""
    return render_text(Table("grubench train: each run against torch's model",
                             [heading for heading, _k, _f in COLUMNS],
                             [cells(r) for r in rows], left=3))


def format_markdown(rows: list[dict], context: dict) -> str:
    heading = "| " + " | ".join(h for h, _k, _f in COLUMNS) + " |"
    rule = "|" + "|".join("---" if i < 3 else "---:" for i in range(len(COLUMNS))) + "|"
    body = ["| " + " | ".join(cells(r)) + " |" for r in rows]
    settings = sorted({(r["dataset"], r["layers"], r["directions"], r["hidden"], r["epochs"],
                        r["batch"], r["lr"], r["seed"]) for r in rows})
    notes = [f"- {d}: {layers} layer{'s' * (layers > 1)}, "
             f"{'bidirectional' if directions == 2 else 'one direction'}, hidden {h}, "
             f"{e} epochs, batch {b}, lr {lr}, seed {s}"
             for d, layers, directions, h, e, b, lr, s in settings]
    return "\n".join([
        "# grubench train: recurrent classifiers trained with grubench's kernels", "",
        f"Machine: {context.get('cpu_model')}, {context.get('cores')} cores; "
        f"{context.get('timestamp')}, commit {context.get('commit')}.", "",
        heading, rule, *body, "",
        "s/epoch: median over epochs after the first (the first carries compilation), "
        "training steps only. vs torch: torch-autograd's s/epoch / this row's. "
        "step peak: memory allocated at the peak of one training step (tracemalloc for "
        "NumPy/Numba backends, the torch profiler for torch-autograd). RSS: the worker "
        "process's peak resident set. Δ acc: test accuracy minus torch-autograd's, points.",
        "", "Settings:", *notes, ""])


def format_csv(rows: list[dict]) -> str:
    buffer = io.StringIO()
    keys = [key for _h, key, _f in COLUMNS] + ["hidden", "layers", "directions", "epochs",
                                               "batch", "lr", "seed",
                                               "first_epoch_seconds", "backend_version"]
    writer = csv.DictWriter(buffer, fieldnames=keys, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def plot_curves(rows: list[dict]) -> bytes:
    """PNG: per dataset, training loss and test accuracy per epoch, a line per run."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    datasets = list(dict.fromkeys(r["dataset"] for r in rows))
    figure, axes = plt.subplots(2, len(datasets), figsize=(5 * len(datasets), 7),
                                squeeze=False)
    for column, name in enumerate(datasets):
        loss_axis, accuracy_axis = axes[0, column], axes[1, column]
        for row in (r for r in rows if r["dataset"] == name):
            label = f"{row['cell']} {row['backend']} t{row['threads']}"
            epochs = range(1, len(row["train_loss"]) + 1)
            style = dict(marker=".", label=label,
                         linestyle=LINE_STYLES[list(CELLS).index(row["cell"])])
            loss_axis.plot(epochs, row["train_loss"], **style)
            accuracy_axis.plot(epochs, row["test_accuracy_curve"], **style)
        loss_axis.set(title=name, ylabel="training loss", yscale="log")
        accuracy_axis.set(xlabel="epoch", ylabel="test accuracy")
        accuracy_axis.legend(fontsize="small")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    plt.close(figure)
    return buffer.getvalue()


def write_reports(rows: list[dict], out_dir: str | Path, context: dict) -> list[Path]:
    """training.md, .csv, .json and (when matplotlib works) _curves.png in ``out_dir``."""
    out_dir = Path(out_dir)
    written = [
        write_atomic(out_dir / f"{STEM}.md", format_markdown(rows, context)),
        write_atomic(out_dir / f"{STEM}.csv", format_csv(rows)),
        write_atomic(out_dir / f"{STEM}.json",
                     json.dumps({"context": context, "results": rows}, indent=2)),
    ]
    try:
        written.append(write_atomic(out_dir / f"{STEM}_curves.png", plot_curves(rows)))
    except ImportError as error:
        print(f"learning-curve plot unavailable: {error}")
    return written
