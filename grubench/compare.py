"""`grubench compare A B`: two results side by side, case by case, with significance.

A and B are results.json files or the folders holding them (two commits, two machines, two
settings). Cases are matched on backend + grubench.schema.CASE_KEY. For each common case:
both medians, the time ratio B/A with a bootstrap confidence interval on the raw per-call
samples (``samples_s``), the two-sided Mann-Whitney U test on the same samples (both from
SciPy: rank-based and distribution-free, which suits skewed timing samples), and a verdict:
B faster, B slower, or no significant change. Rows of older files without samples keep
their medians and say that the significance is unknown. The geometric mean of the ratios
sums up the common cases; the header lists what differs between the two runs' machines and
versions, and flags two different machines.
"""
from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from pathlib import Path

from grubench.case import network_fields, network_parts
from grubench.schema import CASE_KEY
from grubench.tables import Table, case_name, render_text

DEFAULT_CONFIDENCE = 0.95
BOOTSTRAP_RESAMPLES = 2000
NO_SAMPLES = "no samples: significance unknown"
#: Machine fields whose difference makes the two runs' times not like for like.
MACHINE_FIELDS = ("hostname", "cpu_model", "cores", "logical_cpus", "blas_coretype")


@dataclass(frozen=True)
class Row:
    case: str
    median_a: float
    median_b: float
    ratio: float                    # median_b / median_a: above 1 = B slower
    low: float | None               # confidence interval of the ratio
    high: float | None
    p_value: float | None
    verdict: str        # "B faster" | "B slower" | "no significant change" | NO_SAMPLES


def case_label(row) -> str:
    network = network_parts(**network_fields(row))
    return (f"{row['backend']} {case_name(row['cell'], row['variant'])} {row['mode']} "
            f"{row['T']},{row['B']},{row['I']},{row['H']}"
            + "".join(f" {part}" for part in network) + f" {row['dtype']} t{row['threads']}")


def _samples(value) -> list[float]:
    if isinstance(value, (list, tuple)):
        return [float(v) for v in value]
    return []


def compare_samples(a: list[float], b: list[float], median_a: float, median_b: float,
                    confidence: float = DEFAULT_CONFIDENCE, case: str = "") -> Row:
    """One case: the ratio of medians, its bootstrap interval and the U test's p-value."""
    import numpy as np
    from scipy import stats

    ratio = median_b / median_a
    if len(a) < 2 or len(b) < 2:
        return Row(case, median_a, median_b, ratio, None, None, None, NO_SAMPLES)
    p_value = float(stats.mannwhitneyu(a, b, alternative="two-sided").pvalue)
    interval = stats.bootstrap(
        (np.asarray(a), np.asarray(b)),
        lambda x, y, axis: np.median(y, axis=axis) / np.median(x, axis=axis),
        vectorized=True, n_resamples=BOOTSTRAP_RESAMPLES, confidence_level=confidence,
        method="percentile", rng=np.random.default_rng(0)).confidence_interval
    if p_value < 1 - confidence:
        verdict = "B slower" if ratio > 1 else "B faster"
    else:
        verdict = "no significant change"
    return Row(case, median_a, median_b, ratio, float(interval.low), float(interval.high),
               p_value, verdict)


def compare_frames(a, b, confidence: float = DEFAULT_CONFIDENCE) -> list[Row]:
    """Rows for the cases measured ("ok") in both results frames; ValueError if none."""
    key = ("backend", *CASE_KEY)

    def measured(frame):
        ok = frame[(frame["status"] == "ok") & frame["median_s"].notna()]
        # rows made before the network fields existed are single full-length layers
        return {tuple({**row, **network_fields(row)}[k] for k in key): row
                for _, row in ok.iterrows()}

    rows_a, rows_b = measured(a), measured(b)
    common = [k for k in rows_a if k in rows_b]
    if not common:
        raise ValueError(f"the two results have no measured case in common "
                         f"({len(rows_a)} and {len(rows_b)} measured cases)")
    return [compare_samples(_samples(rows_a[k]["samples_s"]), _samples(rows_b[k]["samples_s"]),
                            float(rows_a[k]["median_s"]), float(rows_b[k]["median_s"]),
                            confidence, case_label(rows_a[k]))
            for k in common]


def geometric_mean(ratios: list[float]) -> float:
    return math.exp(sum(math.log(r) for r in ratios) / len(ratios))


def _machine_fields(machine: dict) -> dict[str, object]:
    coretypes = sorted({str(b.get("architecture")) for b in machine.get("blas") or []
                        if isinstance(b, dict) and b.get("architecture")})
    fields = {name: machine.get(name) for name in MACHINE_FIELDS if name != "blas_coretype"}
    fields["blas_coretype"] = ",".join(coretypes) or None
    return fields


def differences(machine_a: dict, machine_b: dict) -> tuple[bool, list[tuple[str, object, object]]]:
    """(same machine?, [(field, A's value, B's value)] for machine fields, versions and
    commit that differ)."""
    fields_a, fields_b = _machine_fields(machine_a), _machine_fields(machine_b)
    same_machine = fields_a == fields_b
    diff = [(name, fields_a[name], fields_b[name]) for name in fields_a
            if fields_a[name] != fields_b[name]]
    versions_a, versions_b = machine_a.get("versions") or {}, machine_b.get("versions") or {}
    diff += [(name, versions_a.get(name), versions_b.get(name))
             for name in sorted(set(versions_a) | set(versions_b))
             if versions_a.get(name) != versions_b.get(name)]
    if machine_a.get("commit") != machine_b.get("commit"):
        diff.append(("commit", machine_a.get("commit"), machine_b.get("commit")))
    return same_machine, diff


def _ratio_text(row: Row) -> str:
    interval = "" if row.low is None else f" [{row.low:.3f}, {row.high:.3f}]"
    return f"{row.ratio:.3f}{interval}"


def render(rows: list[Row], names: tuple[str, str], machines: tuple[dict, dict],
           confidence: float, markdown: bool) -> str:
    same_machine, diff = differences(*machines)
    header = [f"A = {names[0]}", f"B = {names[1]}"]
    if not same_machine:
        header.append("DIFFERENT MACHINES: the ratios mix code and machine")
    header += [f"{name}: A {a} | B {b}" for name, a, b in diff] or ["machine, versions "
                                                                     "and commit: the same"]
    columns = ("case", "A median", "B median", f"B/A [{confidence:.0%} CI]", "p (U test)",
               "verdict")
    table = [(r.case, _seconds(r.median_a), _seconds(r.median_b), _ratio_text(r),
              "-" if r.p_value is None else f"{r.p_value:.3g}", r.verdict) for r in rows]
    summary = (f"geometric mean of B/A over {len(rows)} common cases: "
               f"{geometric_mean([r.ratio for r in rows]):.3f} (above 1: B slower)")
    if markdown:
        lines = ["**grubench compare**", ""] + [f"- {line}" for line in header] + [""]
        lines += ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
        lines += ["| " + " | ".join(row) + " |" for row in table]
        return "\n".join(lines + ["", summary]) + "\n"
    text = render_text(Table("B against A, case by case", list(columns), table))
    return "\n".join(header + ["", text, "", summary]) + "\n"


def _seconds(value: float) -> str:
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if value >= scale:
            return f"{value / scale:.3g} {unit}"
    return f"{value / 1e-9:.3g} ns"


def add_subcommand(subparsers) -> None:
    parser = subparsers.add_parser(
        "compare", help="two results side by side per case, with significance",
        description="Compare two results (results.json files or their folders) case by "
                    "case: medians, time ratio B/A with a bootstrap confidence interval, "
                    "Mann-Whitney U test on the raw samples, verdict, geometric mean.")
    parser.add_argument("a", help="results A (results.json or its folder)")
    parser.add_argument("b", help="results B (results.json or its folder)")
    parser.add_argument("--format", choices=("text", "md"), default="text",
                        help="md: a Markdown table for a pull-request comment")
    parser.add_argument("--confidence", type=float, default=DEFAULT_CONFIDENCE,
                        help="confidence level of the interval; 1 - it is the test's "
                             "significance level (default 0.95)")
    parser.set_defaults(handler=handle)


def handle(args) -> int:
    from grubench.report import load_results

    if not 0.5 <= args.confidence < 1:
        raise ValueError(f"--confidence must be in [0.5, 1), got {args.confidence}")
    frames = [load_results(Path(p)) for p in (args.a, args.b)]
    rows = compare_frames(*frames, confidence=args.confidence)
    sys.stdout.write(render(rows, (args.a, args.b), tuple(f.attrs["machine"] for f in frames),
                            args.confidence, markdown=args.format == "md"))
    return 0
