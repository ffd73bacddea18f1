"""Tables, report files and plots from a results DataFrame (grubench.schema.COLUMNS).

Tables follow torch.utils.benchmark's Compare: one table per (cell, variant, mode,
dtype, threads), backends as rows, sizes "T,B,I,H" as columns, one unit per table, the
best value marked with ``*``, and for times the speedup against the baseline backend in
parentheses (baseline median / median: above 1x is faster than the baseline).

Files (each written atomically, grubench.files.write_atomic): results.json (schema,
machine, suite, notes, results), results.csv, report.md and PNG plots (matplotlib's
headless Agg backend; without matplotlib the plots are left out with a note).
"""
from __future__ import annotations

import io
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from grubench.accuracy import rel_err_target
from grubench.backends import REGISTRY
from grubench.case import LENGTHS, MODES, NETWORK_DEFAULTS, network_fields, network_parts
from grubench.files import read_json, write_atomic
from grubench.kernels.cells import cell
from grubench.schema import CASE_KEY, COLUMNS, JSON_ONLY_COLUMNS, SCHEMA
from grubench.tables import (BYTE_UNITS, TIME_UNITS, Table, case_name, pick_unit,
                             render_markdown, render_text)
from grubench.timing import UNSTABLE_IQR_FRACTION
from grubench.tolerances import FORWARD_REL_ERR_TARGET, GRADIENT_REL_ERR_TARGET
from grubench.verdicts import (COMPARED, RULES, check_training_rows, compared_rows, factor,
                               judge, meaning, speed_span)

GROUP_KEY = ("cell", "variant", "mode", "dtype", "threads")


def _speedup_and_stability(row, value, scale) -> str:
    text = "" if pd.isna(row["speedup"]) else f" ({row['speedup']:.2f}x)"
    return text + (" !" if row["unstable"] in (True, 1) else "")


def _gemm_fraction(row, value, scale) -> str:
    return "" if pd.isna(row["gemm_fraction"]) else f" ({row['gemm_fraction']:.0%})"


def _over_target(row, value, scale) -> str:
    return " !" if value > rel_err_target(row["dtype"], row["mode"] == "training") else ""


def _analytic_bytes(row, value, scale) -> str:
    expected = row["expected_alloc_bytes"]
    return "" if pd.isna(expected) else f" / {format_value(expected / scale, METRICS['memory'])}"


def _target(value: float) -> str:
    """1e-06 as 1e-6."""
    mantissa, exponent = f"{value:.0e}".split("e")
    return f"{mantissa}e{int(exponent)}"


@dataclass(frozen=True)
class Metric:
    """One measured column as the tables and plots show it: its unit, whether lower is
    better, its format, what each value's cell adds (``annotate(row, value, scale)``) and
    the footer under its tables (``footer(group)``)."""

    column: str
    label: str
    lower_is_better: bool = True
    scale: float = 1.0          # values are divided by this
    unit: str | tuple = ""      # a unit name, or units to pick from (pick_unit)
    digits: int = 3
    scientific: bool = False
    annotate: Callable | None = None
    footer: Callable = lambda group: "* best"


#: The metrics a table can show, by the name ``--metrics`` takes.
METRICS = {
    "time": Metric("median_s", "median time", unit=TIME_UNITS,
                   annotate=_speedup_and_stability,
                   footer=lambda group: f"* best; (Nx) = speedup vs {group['baseline'].iloc[0]}; "
                                        f"! = unstable (IQR > {UNSTABLE_IQR_FRACTION:.0%} of "
                                        f"median)"),
    "compile": Metric("compile_s", "first call (compile)", scale=1.0, unit="s"),
    "gflops": Metric("gflops", "throughput, input projection counted", lower_is_better=False,
                     unit="GFLOP/s", annotate=_gemm_fraction,
                     footer=lambda group: "* highest; (N%) = fraction of the GEMM ceiling "
                                          "(NumPy's BLAS) measured in the same worker; "
                                          "torch's MKL can exceed it"),
    "memory": Metric("peak_bytes", "peak memory allocated by one call", unit=BYTE_UNITS,
                     annotate=_analytic_bytes,
                     footer=lambda group: "* lowest; measured / analytic (outputs, saved state "
                                          "and gradients: Case.expected_bytes less the inputs)"),
    "accuracy": Metric("rel_err", "relative error vs float64 reference",
                       scientific=True, digits=2, annotate=_over_target,
                       footer=lambda group: f"* lowest; ! = above the target (float32: "
                                            f"{_target(FORWARD_REL_ERR_TARGET)} forward, "
                                            f"{_target(GRADIENT_REL_ERR_TARGET)} with "
                                            f"gradients; grubench.tolerances)"),
}


def format_value(value: float, metric: Metric) -> str:
    if metric.scientific:
        return f"{value:.{metric.digits - 1}e}"
    return f"{value:.{metric.digits}g}" if abs(value) < 10 ** metric.digits else f"{value:.0f}"


def _size_label(row) -> str:
    """T,B,I,H, and the network where it is not one full-length layer in one direction."""
    parts = network_parts(**network_fields(row))
    return f"{row['T']},{row['B']},{row['I']},{row['H']}" + (
        f" ({', '.join(parts)})" if parts else "")


def _network_field(row, name: str):
    """A row's layers, directions or lengths (the default where it has none)."""
    return network_fields(row)[name]


def _ok(frame: pd.DataFrame) -> pd.Series:
    return frame["status"] == "ok"


def metric_tables(frame: pd.DataFrame, metric_name: str = "time") -> list[Table]:
    """One Compare-style table per (cell, variant, mode, dtype, threads)."""
    metric = METRICS[metric_name]
    tables = []
    for key, group in frame.groupby(list(GROUP_KEY), sort=False):
        group = group.assign(size=[_size_label(r) for _, r in group.iterrows()])
        sizes = list(dict.fromkeys(group["size"]))
        values = pd.to_numeric(group[metric.column], errors="coerce").where(_ok(group))
        unit, scale = metric.unit, metric.scale
        if isinstance(unit, tuple):
            unit, scale = pick_unit(values, unit)
        best = {}
        for size in sizes:
            column = values[group["size"] == size].dropna()
            if len(column) > 1:
                best[size] = column.min() if metric.lower_is_better else column.max()
        rows = []
        for backend, by_backend in group.groupby("backend", sort=False):
            cells = [backend]
            for size in sizes:
                match = by_backend[by_backend["size"] == size]
                if match.empty:
                    cells.append("")
                    continue
                row = match.iloc[0]
                value = values[match.index[0]]
                if pd.isna(value):
                    cells.append("-" if row["status"] == "ok" else row["status"])
                    continue
                text = format_value(value / scale, metric)
                if best.get(size) == value:
                    text = "*" + text
                if metric.annotate is not None:
                    text += metric.annotate(row, value, scale)
                cells.append(text)
            rows.append(cells)
        cell_name, variant, mode, dtype, threads = key
        unit_text = f" ({unit})" if unit else ""
        title = (f"{case_name(cell_name, variant)} · {mode} · {dtype} · {threads} "
                 f"thread{'s' * (threads != 1)} · {metric.label}{unit_text}")
        footer = metric.footer(group)
        tables.append(Table(title, ["backend", *sizes], rows, footer))
    return tables


def cell_comparison(frame: pd.DataFrame) -> Table:
    """GRU against LSTM (the cells the verdicts compare, each in its default variant) on
    the same backends, sizes, dtype and threads: parameters, inference and training time,
    training peak memory and accuracy, with LSTM/GRU ratios."""
    ok = compared_rows(frame[_ok(frame)])
    index = ["backend", "T", "B", "I", "H", "dtype", "threads", "machine"]
    several_machines = frame["machine"].nunique() > 1     # a cluster run (placement each)
    specs = [cell(name) for name in COMPARED]

    def pick(mode, column):
        """(GRU's, LSTM's) ``column`` in ``mode``, indexed by backend, size, ..."""
        return tuple(ok[(ok["cell"] == spec.name) & (ok["mode"] == mode)]
                     .set_index(index)[column] for spec in specs)

    times = {mode: pick(mode, "median_s") for mode in MODES}
    keys = sorted(set.intersection(*({key for mode in MODES for key in times[mode][side].index}
                                     for side in range(len(specs)))),
                  # backend, H, B, T, I, then dtype, threads, machine: one order every run
                  key=lambda k: (k[0], k[4], k[2], k[1], k[3], k[5], k[6], str(k[7])))
    memory = pick("training", "peak_bytes")
    accuracy = pick("training", "rel_err")
    rows = []
    for key in keys:
        backend, T, B, I, H = key[:5]
        if several_machines:
            backend = f"{backend} on {_machine_label(key[-1])}"
        row = [backend, f"{T},{B},{I},{H}",
               " / ".join(f"{spec.parameter_count(I, H):,}" for spec in specs)]
        for (gru, lstm), scale in ((times["inference"], 1e-3), (times["training"], 1e-3),
                                   (memory, 2 ** 20)):
            g, l_ = gru.get(key), lstm.get(key)
            if g is None or l_ is None or pd.isna(g) or pd.isna(l_):
                row.append("-")
            else:
                row.append(f"{g / scale:.3g} / {l_ / scale:.3g} ({l_ / g:.2f}x)")
        g, l_ = accuracy[0].get(key), accuracy[1].get(key)
        row.append("-" if g is None or l_ is None or pd.isna(g) or pd.isna(l_)
                   else f"{g:.1e} / {l_:.1e}")
        rows.append(row)
    gru, lstm = specs
    return Table(f"GRU vs LSTM (GRU {gru.variants[0]}) · values GRU / LSTM (LSTM/GRU ratio)",
                 ["backend", "T,B,I,H", "parameters", "inference ms", "training ms",
                  "training peak MiB", "training rel. error"], rows,
                 f"parameters: G*H*(I+H+2) with G = {gru.n_gates} (GRU) and {lstm.n_gates} "
                 f"(LSTM)")


def verdict_cell(verdict) -> str:
    """A verdicts-table cell: the verdict and the figure behind it: a speed or check's own
    figure at one point, else the range of its ratios (LSTM/GRU; for numerics the worst
    error as a fraction of its target)."""
    points = verdict.points
    ratios = [p.ratio for p in points if p.ratio is not None]
    kind = verdict.claim.kind
    if len(points) == 1 and kind in ("speed", "check"):
        figure = points[0].figure
    elif kind == "check" or len(ratios) < len(points):
        return verdict.label
    elif kind == "speed":
        figure = speed_span(min(ratios), max(ratios))
    elif kind == "tolerance":
        figure = f"worst error {max(ratios):.2g} of its target"
    else:
        low, high = factor(min(ratios)), factor(max(ratios))
        figure = f"LSTM/GRU {low}" + (f" to {high}" if low != high else "")
    return f"{verdict.label}: {figure}"


def verdict_tables(verdicts) -> list[Table]:
    """The verdicts (claims x backends) and the figures behind them, point by point."""
    backends = verdicts.backends
    summary = [[claim.label, *("-" if verdicts.get(claim, b) is None
                               else verdict_cell(verdicts.get(claim, b)) for b in backends)]
               for claim in verdicts.claims]
    # Points with an uncertainty (speed, task accuracy); the other figures at every size
    # are in cell_comparison's table.
    figures = [[claim.label, backend, point.where, point.outcome, point.figure, point.detail]
               for claim in verdicts.claims for backend in backends
               if verdicts.get(claim, backend) is not None
               for point in verdicts.get(claim, backend).points if point.detail]
    return [Table("GRU vs LSTM: does the usual claim hold here? (per backend)",
                  ["claim", *backends], summary, "decided by the rules below"),
            Table("the speed and task-accuracy verdicts, point by point",
                  ["claim", "backend", "where", "verdict", "figure", "how sure"], figures)]


def render_verdicts(verdicts, markdown: bool = False) -> str:
    """The verdicts table, the rules under it, what the verdicts mean (a line per claim),
    then the speed and task-accuracy verdicts point by point."""
    render = render_markdown if markdown else render_text
    lines = {"how a verdict is decided": list(RULES),
             "what this means": [f"{claim.label}: {meaning(verdicts, claim)}"
                                 for claim in verdicts.claims]}
    summary, figures = verdict_tables(verdicts)
    sections = [render(summary)]
    for heading, items in lines.items():
        if markdown:
            sections.append("\n".join([f"**{heading}**", "", *(f"- {i}" for i in items)]))
        else:
            sections.append("\n".join([f"{heading}:", *(f"  - {i}" for i in items)]))
    return "\n\n".join([*sections, *([render(figures)] if figures.rows else [])])


def cell_sections(frame: pd.DataFrame, markdown: bool = False) -> str:
    """GRU vs LSTM side by side, then the verdicts (with the frame's ``grubench train``
    rows, ``attrs["training"]``); empty without both cells."""
    if not set(COMPARED) <= set(frame["cell"]):
        return ""
    render = render_markdown if markdown else render_text
    judged = judge(frame, frame.attrs.get("training", []))
    return render(cell_comparison(frame)) + "\n\n" + render_verdicts(judged, markdown)


def problems_table(frame: pd.DataFrame) -> Table | None:
    """Rows that were not measured, with their reasons (one line per distinct reason)."""
    bad = frame[~_ok(frame)]
    if bad.empty:
        return None
    rows, seen = [], set()
    for _, row in bad.iterrows():
        key = (row["backend"], row["status"], row["reason"])
        if key in seen:
            continue
        seen.add(key)
        count = int(((bad["backend"] == row["backend"]) & (bad["status"] == row["status"])
                     & (bad["reason"] == row["reason"])).sum())
        rows.append([row["backend"], row["status"], str(count), str(row["reason"])])
    return Table("cases not measured", ["backend", "status", "cases", "reason"], rows)


def lengths_table(frame: pd.DataFrame) -> Table | None:
    """The cases of variable lengths: each backend's median, against its own time on the
    same case at full length (what lengths cost or save it) and against the padded
    baseline's (a backend whose registry entry ignores lengths; for torch-cpu: what
    packing costs torch). None without such cases."""
    ok = frame[_ok(frame)]
    ok = ok.assign(**{name: [_network_field(row, name) for _, row in ok.iterrows()]
                      for name in NETWORK_DEFAULTS})
    varied = ok[ok["lengths"] != "full"]
    if varied.empty:
        return None
    padded = sorted(name for name, entry in REGISTRY.items() if entry.ignores_lengths)
    times = {(row["backend"], *(row[k] for k in CASE_KEY), row["machine"]): row["median_s"]
             for _, row in ok.iterrows()}

    def ratio(row, backend: str, lengths: str) -> str:
        """This row's time / ``backend``'s on the same case with ``lengths``."""
        key = (backend, *(lengths if k == "lengths" else row[k] for k in CASE_KEY),
               row["machine"])
        if backend == row["backend"] and lengths == row["lengths"] or key not in times:
            return "-"
        return f"{row['median_s'] / times[key]:.2f}x"

    rows = [[f"{case_name(row['cell'], row['variant'])} {row['mode']} {_size_label(row)} "
             f"{row['dtype']} t{row['threads']}", row["backend"],
             f"{row['median_s'] * 1e3:.3g}", ratio(row, row["backend"], "full"),
             *(ratio(row, baseline, row["lengths"]) for baseline in padded)]
            for _, row in varied.iterrows()]
    return Table("variable lengths · median time (ms)",
                 ["case", "backend", "median (ms)", "vs full lengths",
                  *(f"vs {name}" for name in padded)], rows,
                 "vs full lengths = this time / the same backend's on the same case with "
                 "every sequence T long (what lengths cost or save it); vs "
                 + " and ".join(padded) + " = this time / that padded baseline's (the batch "
                 "run to T without lengths; for torch-cpu: what packing costs torch, above "
                 "1x slower than padding); - = not measured")


def summary_tables(frame: pd.DataFrame, metrics=("time", "memory", "accuracy")) -> list[Table]:
    """The metric tables and the unmeasured cases; when cases were measured on several
    machines (grubench.cluster, placement each), the tables of each machine apart, then
    the machine-vs-machine table."""
    across = machine_table(frame)
    if across is None:
        tables = [t for m in metrics for t in metric_tables(frame, m)]
    else:
        tables = []
        for name, part in frame.groupby("machine", sort=False):
            for table in (t for m in metrics for t in metric_tables(part, m)):
                table.title = f"{name} · {table.title}"
                tables.append(table)
        tables.append(across)
    lengths = lengths_table(frame)
    problems = problems_table(frame)
    return tables + [t for t in (lengths, problems) if t is not None]


def _machine_label(machine: str) -> str:
    """A machine's name without its CPU ("host (CPU, N cores)" -> "host")."""
    return str(machine).split(" (")[0]


def machine_table(frame: pd.DataFrame) -> Table | None:
    """Each case measured on several machines: its median time on each machine and the
    ratio to the first machine (time / time on the first). None when no case was."""
    ok = frame[_ok(frame)]
    machines = list(dict.fromkeys(frame["machine"]))
    if len(machines) < 2:
        return None
    rows = []
    for key, group in ok.groupby(["backend", *CASE_KEY], sort=False):
        if group["machine"].nunique() < 2:
            continue
        times = dict(zip(group["machine"], group["median_s"]))
        first = times.get(machines[0])
        row = dict(zip(["backend", *CASE_KEY], key))
        cells = [row["backend"], f"{case_name(row['cell'], row['variant'])} {row['mode']} "
                                 f"{_size_label(row)} {row['dtype']} t{row['threads']}"]
        for machine in machines:
            value = times.get(machine)
            if value is None:
                cells.append("-")
                continue
            text = f"{value * 1e3:.3g}"
            if first and machine != machines[0]:
                text += f" ({value / first:.2f}x)"
            cells.append(text)
        rows.append(cells)
    if not rows:
        return None
    return Table("machine vs machine · median time (ms)",
                 ["backend", "case", *map(_machine_label, machines)], rows,
                 f"(Nx) = time / time on {_machine_label(machines[0])} (above 1x: slower); "
                 f"machines: {'; '.join(map(str, machines))}")


def machine_lines(frame: pd.DataFrame) -> list[str]:
    m = frame.attrs.get("machine", {})
    versions = ", ".join(f"{k} {v}" for k, v in m.get("versions", {}).items() if v)
    blas = ", ".join(f"{b.get('internal_api')} {b.get('version')}" for b in m.get("blas", []))
    gpus = ", ".join(f"{g['name']} (driver {g['driver']})" for g in m.get("gpus", [])) or "none"
    lines = [f"machine: {m.get('cpu_model')}, {m.get('cores')} cores; GPU: {gpus}",
             f"versions: {versions}", f"BLAS: {blas or 'unknown'}",
             f"commit {m.get('commit')} · {m.get('timestamp')}"]
    for name, node in frame.attrs.get("nodes", {}).items():      # a cluster run's nodes
        node_gpus = ", ".join(g["name"] for g in node.get("gpus", [])) or "none"
        ray = node.get("ray", {})
        processes = ", ".join(f"{k} x{v}" for k, v in ray.get("processes", {}).items())
        lines.append(f"node {name}: ISA {' '.join(node.get('isa') or []) or '?'}; GPU: "
                     f"{node_gpus}; commit {node.get('commit')}; Ray {ray.get('version')} "
                     f"processes on the host: {processes or 'none seen'}")
    return lines


def ceiling_lines(frame: pd.DataFrame) -> list[str]:
    """The GEMM ceiling each worker measured (NumPy n^3 matmul), per dtype and threads."""
    ceilings = pd.to_numeric(frame["gemm_gflops"], errors="coerce")
    measured = frame.assign(gemm=ceilings).dropna(subset=["gemm"])
    return [f"GEMM ceiling (NumPy 1024^3 matmul in each worker): {dtype}, {threads} "
            f"thread{'s' * (threads != 1)}: {group['gemm'].median():.0f} GFLOP/s "
            f"(workers: {group['gemm'].min():.0f} to {group['gemm'].max():.0f})"
            for (dtype, threads), group in measured.groupby(["dtype", "threads"])]


def render_report(frame: pd.DataFrame, markdown: bool = False,
                  metrics=("time", "memory", "accuracy")) -> str:
    render = render_markdown if markdown else render_text
    suite = frame.attrs.get("suite", {})
    head = [f"grubench · suite {suite.get('name', '?')}: {suite.get('description', '')}",
            *machine_lines(frame), *ceiling_lines(frame),
            *(f"note: {n}" for n in frame.attrs.get("notes", []))]
    if markdown:
        head = ["# grubench report", "", *(f"- {line}" for line in head)]
    return "\n\n".join(["\n".join(head), *(render(t) for t in summary_tables(frame, metrics))])


# ---------------------------------------------------------------------- files

def _json_value(value):
    if isinstance(value, float) and math.isnan(value):
        return None
    if hasattr(value, "item"):          # numpy scalars
        return _json_value(value.item())
    return value


def to_json(frame: pd.DataFrame) -> str:
    results = [{k: _json_value(v) for k, v in row.items()}
               for row in frame.astype(object).to_dict("records")]
    document = dict(schema=SCHEMA, machine=frame.attrs.get("machine", {}),
                    suite=frame.attrs.get("suite", {}), notes=frame.attrs.get("notes", []),
                    interrupted=bool(frame.attrs.get("interrupted", False)), results=results)
    # grubench train rows that compare-cells judged beside; a cluster run's nodes
    for key in ("training", "nodes", "cluster"):
        if frame.attrs.get(key):
            document[key] = frame.attrs[key]
    return json.dumps(document, indent=1, default=str) + "\n"


#: Fields a results row must have, and those that must be numbers (or null) when present.
_REQUIRED = CASE_KEY + ("backend", "status")
_SIZES = ("T", "B", "I", "H", "threads", "layers")
_NUMBERS = ("median_s", "iqr_s", "min_s", "runs", "compile_s", "peak_bytes", "rss_bytes",
            "expected_bytes", "saved_bytes", "max_abs_err", "rel_err", "gflops", "speedup")


def _row_problem(row: dict) -> str | None:
    """What makes one results row unreadable, or None. A row written before the network
    fields existed is a single full-length layer."""
    row = {**NETWORK_DEFAULTS, **row}
    missing = [c for c in _REQUIRED if c not in row]
    if missing:
        return f"lacks the fields {', '.join(missing)}"
    for key in _SIZES:
        if isinstance(row[key], bool) or not isinstance(row[key], int) or row[key] < 1:
            return f"{key} must be a positive integer, got {row[key]!r}"
    if row["directions"] not in (1, 2) or isinstance(row["directions"], bool):
        return f"directions must be 1 or 2, got {row['directions']!r}"
    if row["lengths"] not in LENGTHS:
        return f"lengths must be one of {', '.join(LENGTHS)}, got {row['lengths']!r}"
    for key in _NUMBERS:
        value = row.get(key)
        if value is not None and not _is_number(value):
            return f"{key} must be a number, got {value!r}"
    samples = row.get("samples_s")
    if samples is not None and not (isinstance(samples, list)
                                    and all(_is_number(v) for v in samples)):
        return "samples_s must be a list of numbers"
    return None


def _is_number(value) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float))


def load_results(path: str | Path) -> pd.DataFrame:
    """A results.json back as a DataFrame; ValueError saying what is wrong with a file
    that is missing, not JSON, or not grubench results."""
    path = Path(path)
    if path.is_dir():
        path = path / "results.json"
    document = read_json(path)
    if not isinstance(document, dict) or document.get("schema") != SCHEMA:
        found = document.get("schema") if isinstance(document, dict) else type(document).__name__
        raise ValueError(f"{path} is not a grubench results file (schema {found!r}, "
                         f"expected {SCHEMA!r})")
    results = document.get("results")
    if not isinstance(results, list) or not all(isinstance(r, dict) for r in results):
        raise ValueError(f"{path}: 'results' must be a list of objects")
    # rows written before the network fields existed are single full-length layers
    results = [{**NETWORK_DEFAULTS, **row} for row in results]
    for number, row in enumerate(results, 1):
        problem = _row_problem(row)
        if problem:
            raise ValueError(f"{path}: result {number}: {problem}")
    training = document.get("training", [])
    if training:
        check_training_rows(training, f"{path}: training")
    frame = pd.DataFrame(results, columns=list(COLUMNS))
    frame.attrs.update(machine=document.get("machine", {}), suite=document.get("suite", {}),
                       notes=document.get("notes", []),
                       interrupted=document.get("interrupted", False), training=training)
    frame.attrs.update({key: document[key] for key in ("nodes", "cluster") if key in document})
    return frame


def write_report(frame: pd.DataFrame, out: str | Path) -> list[Path]:
    """results.json, results.csv, report.md and the plots into ``out``; the paths."""
    out = Path(out)
    written = [write_atomic(out / "results.json", to_json(frame)),
               write_atomic(out / "results.csv",
                            frame.drop(columns=list(JSON_ONLY_COLUMNS)).to_csv(index=False))]
    plots = write_plots(frame, out)
    markdown = render_report(frame, markdown=True,
                             metrics=("time", "gflops", "memory", "accuracy", "compile"))
    cells = cell_sections(frame, markdown=True)
    if cells:
        markdown += "\n\n" + cells
    markdown += "".join(f"\n\n![{p.stem}]({p.name})" for p in plots)
    written.append(write_atomic(out / "report.md", markdown + "\n"))
    return written + plots


def write_plots(frame: pd.DataFrame, out: Path) -> list[Path]:
    """PNG plots: time per size and backend, GRU vs LSTM, speedup heatmap. None without
    matplotlib or without measured rows."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        frame.attrs.setdefault("notes", []).append("plots left out: matplotlib is missing")
        return []
    ok = frame[_ok(frame)].copy()
    if ok.empty:
        return []
    ok["size"] = [_size_label(r) for _, r in ok.iterrows()]
    ok["case"] = ok["cell"] + " " + ok["mode"]
    paths = []
    for name, draw in (("time_by_size.png", _time_by_size), ("gru_vs_lstm.png", _cells_bars),
                       ("speedup_heatmap.png", _speedup_heatmap)):
        figure = draw(plt, ok)
        if figure is None:
            continue
        buffer = io.BytesIO()
        figure.tight_layout()
        figure.savefig(buffer, format="png", dpi=100)
        plt.close(figure)
        paths.append(write_atomic(out / name, buffer.getvalue()))
    return paths


_MILLISECONDS = f"{METRICS['time'].label} (ms)"


def _time_by_size(plt, ok: pd.DataFrame):
    """Median time against size, a panel per cell and mode, a line per backend."""
    cases = list(dict.fromkeys(ok["case"]))
    figure, axes = plt.subplots(1, len(cases), figsize=(4.5 * len(cases), 3.8), squeeze=False)
    for axis, case in zip(axes[0], cases):
        part = ok[ok["case"] == case]
        # one line per backend: the cell's default variant where it was measured
        default = part["cell"].map(lambda name: cell(name).variants[0]) == part["variant"]
        if default.any():
            part = part[default]
        sizes = list(dict.fromkeys(part.sort_values("H")["size"]))
        for backend, lines in part.groupby("backend"):
            series = lines.groupby("size")[METRICS["time"].column].min().reindex(sizes)
            axis.plot(range(len(sizes)), series.values * 1e3, marker="o", label=backend)
        axis.set_xticks(range(len(sizes)), sizes, rotation=30, fontsize=7)
        axis.set_yscale("log")
        axis.set_title(case)
        axis.set_xlabel("size T,B,I,H (by hidden size)")
        axis.set_ylabel(_MILLISECONDS)
        axis.legend(fontsize=7)
    return figure


def _cells_bars(plt, ok: pd.DataFrame):
    """The compared cells' times side by side per backend, size and mode (None unless
    both were measured somewhere)."""
    if not set(COMPARED) <= set(ok["cell"]):
        return None
    table = compared_rows(ok).pivot_table(index=["backend", "size", "mode"], columns="cell",
                                          values=METRICS["time"].column,
                                          aggfunc="min").dropna()
    if table.empty:
        return None
    figure, axis = plt.subplots(figsize=(max(5, 0.6 * len(table)), 3.8))
    (table * 1e3).plot.bar(ax=axis)
    axis.set_yscale("log")
    axis.set_ylabel(_MILLISECONDS)
    axis.set_title(" vs ".join(name.upper() for name in COMPARED))
    axis.tick_params(axis="x", labelsize=6)
    return figure


def _speedup_heatmap(plt, ok: pd.DataFrame):
    """Speedups against the baseline, backends by cases (None without any)."""
    from matplotlib.colors import LogNorm

    speed = ok.dropna(subset=["speedup"])
    if speed.empty:
        return None
    speed = speed.assign(column=speed["case"] + " " + speed["size"])
    grid = speed.pivot_table(index="backend", columns="column", values="speedup",
                             aggfunc="min")
    figure, axis = plt.subplots(figsize=(max(5, 0.7 * grid.shape[1]), 1 + 0.5 * len(grid)))
    image = axis.imshow(grid.values.astype(float), cmap="RdYlGn", aspect="auto",
                        norm=LogNorm(vmin=0.1, vmax=10))
    axis.set_xticks(range(grid.shape[1]), grid.columns, rotation=60, ha="right", fontsize=6)
    axis.set_yticks(range(len(grid)), grid.index)
    for (i, j), value in np.ndenumerate(grid.values):
        if not pd.isna(value):
            axis.text(j, i, f"{value:.2g}", ha="center", va="center", fontsize=6)
    figure.colorbar(image, ax=axis, label="speedup")
    axis.set_title(f"speedup vs {speed['baseline'].iloc[0]} (baseline median / median)")
    return figure
