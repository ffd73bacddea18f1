"""`grubench regress`: a performance gate for CI that survives noisy machines.

Absolute times on a shared 2-core VM move 5-20% between runs, and more between machines, so
the gate never compares seconds. Times are the process's CPU time: on a
machine shared by other jobs, wall time counts every stretch the process waits for a core
(the per-pair ratios then spread 30x; CPU time keeps them within 20%, docs/regress-clock.md).
Each case is timed interleaved with a calibration workload in the same worker process (a
NumPy float32 matrix product with the case's forward FLOPs, see
:mod:`grubench.calibrated`), pair by pair: the machine's momentary speed cancels in
the ratio case/calibration, and the median of the per-pair ratios is what is compared.

The ratio cancels the machine's speed, not its shape (vector width, caches, BLAS kernel), so
it is compared either with a baseline recorded on a machine of the same fingerprint
(grubench.machine.fingerprint; one file per fingerprint in reports/baseline/,
grubench.baseline), or, which is
right on any machine, with the base revision measured in the same run (``--against``,
grubench.ab). Without a baseline for this machine the gate falls back to the A/B test.
A case slower than the tolerance is measured again, longer, before it is declared a
regression (grubench.gate).

Exit codes: 0 no confirmed regression, 1 a confirmed regression, 2 a missing or corrupt
baseline, a base revision that does not exist or build (or another usage error).
"""
from __future__ import annotations

import json
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Callable

from grubench import ab, history, machine, tuning, worker
from grubench.baseline import (BASELINE_DIR, BaselineError, baseline_document,
                               baseline_path, load_baseline)
from grubench.calibrated import measure
from grubench.case import Case, Task
from grubench.files import check_writable_dir, write_atomic
from grubench.gate import Verdict, compare, exit_code, render_table

DEFAULT_TOLERANCE = 0.25
DEFAULT_PAIRS = 31
#: A/B defaults: turns per side and case, pairs per turn, and the tolerance (A/B noise on
#: unchanged code is measured in reports/regress-proof.md).
AB_ROUNDS = 8
AB_PAIRS = 5
AB_TOLERANCE = 0.15


# The pinned CI suite: our own kernels at sizes where a regression in any part shows (GEMV-
# bound batch 1, GEMM-bound batch 32, training, both GRU variants, lengths, LSTM).
CI_SUITE = tuple(Task(case, "numba-cpu") for case in (
    Case("gru", 100, 1, 64, 64),
    Case("gru", 50, 16, 128, 128),
    Case("gru", 50, 16, 128, 128, variant="reset_before"),
    Case("gru", 50, 16, 128, 128, variable_lengths=True),
    Case("gru", 64, 32, 32, 64, mode="training"),
    Case("lstm", 100, 1, 64, 64),
    Case("lstm", 64, 32, 32, 64, mode="training"),
))


# ----------------------------------------------------------------------------- command

SUITES = {"ci": CI_SUITE}

#: The gate's workers run with tuning off, so each backend runs its default code path
#: (numba-cpu: its own tiles, not MKL's packed GEMM) whatever this machine's tuning cache
#: holds: a choice tuned between two runs would otherwise change what the gate compares.
PINNED_PATHS_ENV = {tuning.DIR_ENV: "off"}


def add_subcommand(subparsers) -> None:
    parser = subparsers.add_parser(
        "regress", help="performance gate: A/B against a base revision, or a baseline "
                        "recorded on a machine like this one",
        description="Measure the pinned CI suite, each case as a ratio to a calibration "
                    "product timed interleaved in the same worker, and compare with the "
                    "base revision measured in the same run (--against) or with this "
                    "machine's baseline (falling back to --against without one). Exit 0: "
                    "no confirmed regression; 1: a confirmed regression; 2: missing or "
                    "corrupt baseline, or a base revision that does not exist or build.")
    parser.add_argument("--against", nargs="?", const="", default=None, metavar="REV",
                        help="A/B test against git revision REV, checked out and installed "
                             "apart, measured in turns with the current code (no REV: the "
                             "merge-base with main, or HEAD~1 on main)")
    parser.add_argument("--baseline", default=None,
                        help=f"baseline JSON (default {BASELINE_DIR}/regress-<this "
                             f"machine's fingerprint>.json); used only when recorded on a "
                             f"machine of the same fingerprint")
    parser.add_argument("--tolerance", type=float, default=None,
                        help=f"allowed slowdown of the normalized time before a case is "
                             f"re-measured and, if confirmed, a regression (default "
                             f"{DEFAULT_TOLERANCE} against a baseline, {AB_TOLERANCE} A/B)")
    parser.add_argument("--suite", default="ci", help=f"one of: {', '.join(SUITES)}")
    parser.add_argument("--pairs", type=int, default=None,
                        help=f"interleaved case/calibration pairs per measurement (default "
                             f"{DEFAULT_PAIRS} against a baseline, {AB_PAIRS} per A/B turn; "
                             f"re-measurements use twice as many)")
    parser.add_argument("--rounds", type=int, default=AB_ROUNDS,
                        help=f"A/B: turns per side and case (default {AB_ROUNDS})")
    parser.add_argument("--json", default=None, metavar="PATH",
                        help="also write the verdicts as JSON (for scripts)")
    parser.add_argument("--update", action="store_true",
                        help="measure and rewrite this machine's baseline (atomically) "
                             "instead of comparing")
    history.add_option(parser)
    parser.set_defaults(handler=handle)


def handle(args) -> int:
    with worker.inherited_env(PINNED_PATHS_ENV):
        return gate(args)


def gate(args) -> int:
    if args.suite not in SUITES:
        raise ValueError(f"unknown regress suite {args.suite!r}; valid: {', '.join(SUITES)}")
    if args.tolerance is not None and not 0 < args.tolerance < 10:
        raise ValueError(f"--tolerance must be a fraction between 0 and 10, got "
                         f"{args.tolerance}")
    if args.pairs is not None and args.pairs < 3:
        raise ValueError(f"--pairs must be at least 3, got {args.pairs}")
    if args.rounds < 2:
        raise ValueError(f"--rounds must be at least 2, got {args.rounds}")
    if args.update and args.against is not None:
        raise ValueError("--update records a baseline; it does not go with --against")
    cases = {case.key: case for case in SUITES[args.suite]}
    fingerprint = machine.fingerprint()
    path = Path(args.baseline) if args.baseline else baseline_path(fingerprint)
    if args.json:
        check_writable_dir(Path(args.json).parent)

    if args.update:
        return record_baseline(cases, path, fingerprint, args)
    if args.against is None:
        try:
            baseline = load_baseline(path)
        except BaselineError as error:
            if args.baseline:           # a file the user named must be there and sound
                print(f"grubench regress: {error}", file=sys.stderr)
                return 2
            baseline = None
            print(f"grubench regress: no baseline for this machine "
                  f"({machine.fingerprint_id(fingerprint)}); A/B against the base revision "
                  f"instead")
        else:
            if baseline["fingerprint"] == fingerprint:
                return against_baseline(cases, baseline, path, args)
            print(f"grubench regress: baseline {path} was recorded on another machine "
                  f"({machine.fingerprint_id(baseline['fingerprint'])}; this is "
                  f"{machine.fingerprint_id(fingerprint)}), not used; A/B against the base "
                  f"revision instead")
        if not ab.has_history():
            print("no baseline for this machine; record one with --update")
            return 0
    rev = args.against or ab.default_base()
    label = args.against or "the merge-base with main (HEAD~1 on main)"
    if rev is None:
        print("grubench regress: no base revision to compare with (first commit or "
              "shallow clone); nothing gated")
        return 0
    try:
        with ab.sigterm_as_interrupt(), ab.base_install(rev) as (commit, site):
            return against_revision(cases, label, commit, site, args)
    except ab.RevisionError as error:
        print(f"grubench regress: {error}", file=sys.stderr)
        return 2


def record_baseline(cases: dict, path: Path, fingerprint: dict, args) -> int:
    check_writable_dir(path.parent)
    started = time.perf_counter()
    pairs = args.pairs or DEFAULT_PAIRS
    with tempfile.TemporaryDirectory(prefix="grubench-regress-") as logs:
        print(f"grubench regress: {len(cases)} cases, {pairs} pairs each", file=sys.stderr)
        rows = measure(cases.values(), pairs, Path(logs))
    document = baseline_document(rows, cases.values(), machine.context(), fingerprint,
                                 args.tolerance or DEFAULT_TOLERANCE)
    write_atomic(path, json.dumps(document, indent=2, default=str) + "\n")
    print(f"baseline {path} written with {len(document['cases'])} cases "
          f"({time.perf_counter() - started:.0f} s)")
    failed = [k for k, row in rows.items() if row["status"] != "ok"]
    for key in failed:
        print(f"  not recorded: {key}: {rows[key]['status']}: {rows[key]['reason']}")
    return 1 if failed else 0


def against_baseline(cases: dict, baseline: dict, path: Path, args) -> int:
    """Measure here and compare with a baseline of this machine's fingerprint."""
    tolerance = args.tolerance or DEFAULT_TOLERANCE
    pairs = args.pairs or DEFAULT_PAIRS
    ratios = {key: entry["ratio"] for key, entry in baseline["cases"].items()}
    if not set(ratios) & set(cases):
        print(f"grubench regress: baseline {path} holds none of the {args.suite} suite's "
              f"cases (another suite, or stale?); re-record it with --update",
              file=sys.stderr)
        return 2
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="grubench-regress-") as logs:
        print(f"grubench regress: against {path}: {len(cases)} cases, {pairs} pairs each",
              file=sys.stderr)
        rows = measure(cases.values(), pairs, Path(logs))
        history.record(baseline_document(rows, cases.values(), machine.context(),
                                         baseline["fingerprint"], tolerance), args)

        def remeasure(keys):
            print(f"grubench regress: re-measuring {len(keys)} slower case(s)",
                  file=sys.stderr)
            again = measure([cases[k] for k in keys if k in cases], 2 * pairs, Path(logs))
            return {k: (ratios[k], row["ratio"]) for k, row in again.items()
                    if row["status"] == "ok"}

        verdicts = compare(ratios, rows, tolerance, remeasure)
    return report(verdicts, tolerance, "baseline", started, args)


def against_revision(cases: dict, rev: str, commit: str, site: Path, args) -> int:
    """The A/B test: base revision (installed at ``site``) and current code in turns."""
    tolerance = args.tolerance or AB_TOLERANCE
    pairs = args.pairs or AB_PAIRS
    started = time.perf_counter()
    print(f"grubench regress: A/B against {rev} ({commit[:12]}) on this "
          f"machine: {len(cases)} cases, {args.rounds} turns per side of {pairs} pairs",
          file=sys.stderr)
    verdicts = ab_verdicts(cases, site, args.rounds, pairs, tolerance,
                           measured=lambda rows: history.record(baseline_document(
                               rows, cases.values(), machine.context(), machine.fingerprint(),
                               tolerance), args))
    print(f"base: {rev} = {commit[:12]}")
    return report(verdicts, tolerance, "base", started, args)


def ab_verdicts(cases: dict, site: Path, rounds: int, pairs: int, tolerance: float,
                measured: Callable[[dict], object] = lambda rows: None) -> list[Verdict]:
    """Measure base (installed at ``site``) and current kernels in turns, re-measure the
    cases slower than the tolerance (both sides, twice the turns), and judge.
    ``measured(rows)`` receives the current side's first measurement."""
    with tempfile.TemporaryDirectory(prefix="grubench-regress-") as logs:
        base, rows = ab.measure(cases.values(), site, rounds, pairs, Path(logs))
        measured(rows)

        def remeasure(keys):
            print(f"grubench regress: re-measuring {len(keys)} slower case(s), both sides",
                  file=sys.stderr)
            base_again, again = ab.measure([cases[k] for k in keys], site, 2 * rounds,
                                           pairs, Path(logs))
            return {k: (base_again[k], row["ratio"]) for k, row in again.items()
                    if row["status"] == "ok" and k in base_again}

        return compare(base, rows, tolerance, remeasure)


def report(verdicts: list[Verdict], tolerance: float, base_label: str, started: float,
           args) -> int:
    print(render_table(verdicts, tolerance, base_label))
    code = exit_code(verdicts)
    seconds = time.perf_counter() - started
    print(f"{'REGRESSION' if code else 'no regression'} ({seconds:.0f} s)")
    if args.json:
        write_atomic(args.json, json.dumps({
            "compared_with": base_label, "tolerance": tolerance, "exit_code": code,
            "seconds": seconds,
            "verdicts": [{**asdict(v), "change": v.change} for v in verdicts]}, indent=2))
    return code
