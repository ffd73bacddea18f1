"""`grubench regress`: a performance gate for CI that survives noisy machines.

Absolute times on a shared 2-core VM move 5-20% between runs, and more between machines, so
the gate never compares seconds. Each case is timed interleaved with a calibration workload
in the same worker process (a NumPy float32 matrix product with the case's forward FLOPs,
see :func:`calibration_workload`), pair by pair: the machine's momentary speed cancels in
the ratio case/calibration, and the median of the per-pair ratios is what is compared with
the committed baseline. A case slower than the tolerance is measured again, longer, before
it is declared a regression.

Exit codes: 0 no confirmed regression, 1 a confirmed regression, 2 a missing or corrupt
baseline (or another usage error).
"""
from __future__ import annotations

import itertools
import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from grubench import history

SCHEMA = "grubench.regress/1"
DEFAULT_BASELINE = Path("reports/baseline/regress-ci.json")
DEFAULT_TOLERANCE = 0.25
DEFAULT_PAIRS = 31
CASE_TIMEOUT_S = 120.0
#: test-only: a factor > 1 in this variable makes every measured case spin that much longer
SLOWDOWN_ENV = "GRUBENCH_INJECT_SLOWDOWN"


@dataclass(frozen=True)
class RegressCase:
    """One gated case; ``key`` names it in baselines and tables."""

    backend: str
    cell: str
    mode: str               # "inference" | "training"
    T: int
    B: int
    I: int  # noqa: E741 - the conventional name of the input size
    H: int
    reset_after: bool = True
    variable_lengths: bool = False
    dtype: str = "float32"
    threads: int = 1

    @property
    def key(self) -> str:
        variant = "" if self.cell == "lstm" else ("/reset_after" if self.reset_after
                                                 else "/reset_before")
        lengths = "/lengths" if self.variable_lengths else ""
        return (f"{self.backend}/{self.cell}{variant}{lengths}/{self.mode}/"
                f"{self.T},{self.B},{self.I},{self.H}/{self.dtype}/t{self.threads}")


# The pinned CI suite: our own kernels at sizes where a regression in any part shows (GEMV-
# bound batch 1, GEMM-bound batch 32, training, both GRU variants, lengths, LSTM).
CI_SUITE = (
    RegressCase("numba-cpu", "gru", "inference", 100, 1, 64, 64),
    RegressCase("numba-cpu", "gru", "inference", 50, 16, 128, 128),
    RegressCase("numba-cpu", "gru", "inference", 50, 16, 128, 128, reset_after=False),
    RegressCase("numba-cpu", "gru", "inference", 50, 16, 128, 128, variable_lengths=True),
    RegressCase("numba-cpu", "gru", "training", 64, 32, 32, 64),
    RegressCase("numba-cpu", "lstm", "inference", 100, 1, 64, 64),
    RegressCase("numba-cpu", "lstm", "training", 64, 32, 32, 64),
)


# ----------------------------------------------------------------------------- measuring

def calibration_workload(case: RegressCase) -> Callable[[], object]:
    """A NumPy float32 product with the forward FLOPs of the case's matrix products:
    (T*B, I+H) x (I+H, G*H). It runs on the same cores, caches and BLAS as the case."""
    gates = 3 if case.cell == "gru" else 4
    rng = np.random.default_rng(0)
    left = rng.standard_normal((case.T * case.B, case.I + case.H)).astype(np.float32)
    right = rng.standard_normal((case.I + case.H, gates * case.H)).astype(np.float32)
    return lambda: left @ right


def slowed(run: Callable[[], object], factor: float) -> Callable[[], object]:
    """``run`` made ``factor`` times slower by spinning after it (test-only injection)."""
    def run_slowed():
        start = time.perf_counter()
        result = run()
        deadline = start + factor * (time.perf_counter() - start)
        while time.perf_counter() < deadline:
            pass
        return result
    return run_slowed


def _repetitions(run: Callable[[], object], min_block_s: float) -> int:
    """How many calls make one timed block last at least ``min_block_s``."""
    start = time.perf_counter()
    run()
    once = max(time.perf_counter() - start, 1e-7)
    return max(1, int(np.ceil(min_block_s / once)))


def _time_block(run: Callable[[], object], repetitions: int) -> float:
    start = time.perf_counter()
    for _ in range(repetitions):
        run()
    return (time.perf_counter() - start) / repetitions


def interleaved_ratios(case_run: Callable[[], object], reference_run: Callable[[], object],
                       pairs: int, min_block_s: float = 0.004) -> list[float]:
    """Per-pair ratios case/reference, timed in ABBA order so a drift in machine speed
    during the pair weighs on both sides alike."""
    case_reps = _repetitions(case_run, min_block_s)
    reference_reps = _repetitions(reference_run, min_block_s)
    ratios = []
    for pair in range(pairs):
        if pair % 2 == 0:
            case_s = _time_block(case_run, case_reps)
            reference_s = _time_block(reference_run, reference_reps)
        else:
            reference_s = _time_block(reference_run, reference_reps)
            case_s = _time_block(case_run, case_reps)
        ratios.append(case_s / reference_s)
    return ratios


def measure_case(backend, case: RegressCase, pairs: int) -> dict:
    """Time one case on ``backend`` (a grubench.backends.Backend) against its calibration
    in this process (already thread-pinned).
    Returns {"key", "ratio", "ratios", "case_s", "status", "reason"}."""
    from grubench.problems import Problem

    if not backend.available:
        return {"key": case.key, "status": "unavailable", "reason": backend.why_unavailable}
    problem = Problem(case.cell, case.T, case.B, case.I, case.H, dtype=case.dtype,
                      reset_after=case.reset_after, variable_lengths=case.variable_lengths)
    prepared = backend.prepare(problem.make_args(seed=0))
    step = prepared.forward if case.mode == "inference" else prepared.training_step

    def run():
        step()
        prepared.synchronize()

    run()  # compile and warm caches outside the timed pairs
    factor = float(os.environ.get(SLOWDOWN_ENV, "1") or 1)
    case_run = slowed(run, factor) if factor != 1 else run
    ratios = interleaved_ratios(case_run, calibration_workload(case), pairs)
    return {"key": case.key, "status": "ok", "reason": None,
            "ratio": statistics.median(ratios), "ratios": ratios,
            "case_s": _time_block(run, 3)}


def measure(cases, pairs: int, log_dir: Path) -> dict[str, dict]:
    """Rows by case key, each backend and thread count in its own pinned worker process
    (grubench.worker); a worker that crashes or hangs yields a failed row and is replaced."""
    from grubench.worker import Worker, WorkerFailed

    rows = {}
    by_worker = lambda case: (case.backend, case.threads)  # noqa: E731
    for (backend, threads), group in itertools.groupby(sorted(cases, key=by_worker),
                                                       key=by_worker):
        worker = None
        for case in group:
            try:
                if worker is None:
                    worker = Worker(backend, threads, log_dir / f"regress-{backend}-{threads}.log",
                                    CASE_TIMEOUT_S)
                if not worker.hello["available"]:
                    row = {"status": "unavailable", "reason": worker.hello["reason"]}
                else:
                    row = worker.request({"kind": "regress", "case": asdict(case),
                                          "pairs": pairs}, CASE_TIMEOUT_S)
            except WorkerFailed as failure:
                worker = None
                row = {"status": failure.status, "reason": failure.reason}
            rows[case.key] = {**row, "key": case.key}
            print(f"  {case.key}: " + (f"ratio {row['ratio']:.4g}" if row["status"] == "ok"
                                       else f"{row['status']}: {row.get('reason')}"),
                  file=sys.stderr, flush=True)
        if worker is not None:
            worker.close()
    return rows


# ----------------------------------------------------------------------------- comparing

class BaselineError(Exception):
    """A baseline file that is missing or cannot be read as a regress baseline."""


def load_baseline(path: str | os.PathLike) -> dict:
    """The baseline document; BaselineError naming the path and what is wrong."""
    path = Path(path)
    if not path.is_file():
        raise BaselineError(f"baseline {path} does not exist; record one with "
                            f"`python -m grubench regress --update --baseline {path}`")
    try:
        document = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise BaselineError(f"baseline {path} is not valid JSON: {error}") from error
    if not isinstance(document, dict) or document.get("schema") != SCHEMA:
        raise BaselineError(f"baseline {path} is not a grubench regress baseline "
                            f"(expected schema {SCHEMA!r})")
    cases = document.get("cases")
    if not isinstance(cases, dict) or not all(
            isinstance(v, dict) and isinstance(v.get("ratio"), (int, float))
            and not isinstance(v["ratio"], bool) and v["ratio"] > 0
            for v in cases.values()):
        raise BaselineError(f"baseline {path} has no valid 'cases' mapping of key -> "
                            f"{{'ratio': positive number}}")
    return document


@dataclass(frozen=True)
class Verdict:
    key: str
    baseline_ratio: float | None
    current_ratio: float | None
    verdict: str            # ok | faster | regression | slower-unconfirmed | new | missing | failed
    note: str = ""

    @property
    def change(self) -> float | None:
        """Relative change of the normalized time: +0.30 = 30% slower than the baseline."""
        if self.baseline_ratio is None or self.current_ratio is None:
            return None
        return self.current_ratio / self.baseline_ratio - 1


def classify(baseline_ratio: float, current_ratio: float, tolerance: float) -> str:
    """ok, faster, or slower (beyond the tolerance, to be confirmed by re-measuring)."""
    change = current_ratio / baseline_ratio - 1
    if change > tolerance:
        return "slower"
    if change < -tolerance:
        return "faster"
    return "ok"


def compare(baseline: dict[str, float], current: dict[str, dict], tolerance: float,
            remeasure: Callable[[list[str]], dict[str, float]]) -> list[Verdict]:
    """Verdicts for every key in either mapping.

    ``current`` maps keys to measurement rows (status, ratio, reason); ``remeasure(keys)``
    measures the suspects again, longer, and returns their ratios: a case is a regression
    only when the re-measurement is slower than the tolerance too.
    """
    verdicts: dict[str, Verdict] = {}
    suspects = []
    for key in sorted(set(baseline) | set(current)):
        row = current.get(key)
        base = baseline.get(key)
        if row is None:
            verdicts[key] = Verdict(key, base, None, "missing", "in the baseline, not measured")
        elif row.get("status") != "ok":
            verdicts[key] = Verdict(key, base, None, "failed",
                                    f"{row.get('status')}: {row.get('reason')}")
        elif base is None:
            verdicts[key] = Verdict(key, None, row["ratio"], "new", "not in the baseline")
        else:
            state = classify(base, row["ratio"], tolerance)
            if state == "slower":
                suspects.append(key)
            verdicts[key] = Verdict(key, base, row["ratio"], state)
    if suspects:
        again = remeasure(suspects)
        for key in suspects:
            ratio = again.get(key)
            if ratio is not None and classify(baseline[key], ratio, tolerance) == "slower":
                verdicts[key] = Verdict(key, baseline[key], ratio, "regression",
                                        f"first {current[key]['ratio']:.4g}, re-measured")
            else:
                verdicts[key] = Verdict(key, baseline[key], ratio, "slower-unconfirmed",
                                        f"first {current[key]['ratio']:.4g}; the "
                                        f"re-measurement was within the tolerance")
    return [verdicts[key] for key in sorted(verdicts)]


def exit_code(verdicts: list[Verdict]) -> int:
    return 1 if any(v.verdict == "regression" for v in verdicts) else 0


def _first_line(text: str, limit: int = 100) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= limit else line[:limit - 3] + "..."


def render_table(verdicts: list[Verdict], tolerance: float) -> str:
    """A plain-text table of every case: baseline ratio, current ratio, change, verdict."""
    header = ("case", "baseline", "current", "change", "verdict")
    rows = []
    for v in verdicts:
        rows.append((v.key,
                     "-" if v.baseline_ratio is None else f"{v.baseline_ratio:.4g}",
                     "-" if v.current_ratio is None else f"{v.current_ratio:.4g}",
                     "-" if v.change is None else f"{v.change:+.1%}",
                     v.verdict + (f" ({_first_line(v.note)})" if v.note else "")))
    widths = [max(len(r[i]) for r in rows + [header]) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip()
             for row in [header] + rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines.append(f"ratio = case time / calibration product time, same worker, interleaved; "
                 f"tolerance {tolerance:+.0%}")
    return "\n".join(lines)


def baseline_document(rows: dict[str, dict], machine: dict, tolerance: float) -> dict:
    cases = {key: {"ratio": row["ratio"], "case_s": row["case_s"]}
             for key, row in rows.items() if row.get("status") == "ok"}
    return {"schema": SCHEMA, "machine": machine, "tolerance": tolerance, "cases": cases,
            "suite": [asdict(c) for c in CI_SUITE]}


# ----------------------------------------------------------------------------- command

SUITES = {"ci": CI_SUITE}


def add_subcommand(subparsers) -> None:
    parser = subparsers.add_parser(
        "regress", help="performance gate: compare with a committed baseline",
        description="Measure the pinned CI suite, each case as a ratio to a calibration "
                    "product timed interleaved in the same worker, and compare with the "
                    "baseline. Exit 0: no confirmed regression; 1: a confirmed regression; "
                    "2: missing or corrupt baseline.")
    parser.add_argument("--baseline", default=str(DEFAULT_BASELINE),
                        help=f"baseline JSON (default {DEFAULT_BASELINE})")
    parser.add_argument("--tolerance", type=float, default=DEFAULT_TOLERANCE,
                        help="allowed slowdown of the normalized time before a case is "
                             "re-measured and, if confirmed, a regression (default 0.25)")
    parser.add_argument("--suite", default="ci", help=f"one of: {', '.join(SUITES)}")
    parser.add_argument("--pairs", type=int, default=DEFAULT_PAIRS,
                        help=f"interleaved case/calibration pairs per case "
                             f"(default {DEFAULT_PAIRS}; re-measurements use twice as many)")
    parser.add_argument("--update", action="store_true",
                        help="measure and rewrite the baseline (atomically) instead of comparing")
    history.add_option(parser)
    parser.set_defaults(handler=handle)


def handle(args) -> int:
    from grubench import machine
    from grubench.files import check_writable_dir, write_atomic

    if args.suite not in SUITES:
        raise ValueError(f"unknown regress suite {args.suite!r}; valid: {', '.join(SUITES)}")
    if not 0 < args.tolerance < 10:
        raise ValueError(f"--tolerance must be a fraction between 0 and 10, got "
                         f"{args.tolerance}")
    if args.pairs < 3:
        raise ValueError(f"--pairs must be at least 3, got {args.pairs}")
    cases = {case.key: case for case in SUITES[args.suite]}
    baseline = None
    if not args.update:
        try:
            baseline = load_baseline(args.baseline)
        except BaselineError as error:
            print(f"grubench regress: {error}", file=sys.stderr)
            return 2
    if args.update:
        check_writable_dir(Path(args.baseline).parent)
    context = machine.context()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="grubench-regress-") as logs:
        print(f"grubench regress: {len(cases)} cases, {args.pairs} pairs each",
              file=sys.stderr)
        rows = measure(cases.values(), args.pairs, Path(logs))
        history.record(baseline_document(rows, context, args.tolerance), args)
        if args.update:
            document = baseline_document(rows, context, args.tolerance)
            write_atomic(args.baseline, json.dumps(document, indent=2, default=str) + "\n")
            print(f"baseline {args.baseline} written with {len(document['cases'])} cases "
                  f"({time.perf_counter() - started:.0f} s)")
            failed = [k for k, row in rows.items() if row["status"] != "ok"]
            for key in failed:
                print(f"  not recorded: {key}: {rows[key]['status']}: {rows[key]['reason']}")
            return 1 if failed else 0

        def remeasure(keys):
            print(f"grubench regress: re-measuring {len(keys)} slower case(s)",
                  file=sys.stderr)
            again = measure([cases[k] for k in keys if k in cases], 2 * args.pairs,
                            Path(logs))
            return {k: row["ratio"] for k, row in again.items() if row["status"] == "ok"}

        ratios = {key: entry["ratio"] for key, entry in baseline["cases"].items()}
        if not set(ratios) & set(cases):
            print(f"grubench regress: baseline {args.baseline} holds none of the "
                  f"{args.suite} suite's cases (another suite, or stale?); re-record it "
                  f"with --update", file=sys.stderr)
            return 2
        verdicts = compare(ratios, rows, args.tolerance, remeasure)
    recorded_on = machine.short_name(baseline.get("machine") or {})
    if recorded_on != machine.short_name(context):
        print(f"note: the baseline was recorded on {recorded_on}; this is "
              f"{machine.short_name(context)} (ratios travel better than times, not "
              f"perfectly)")
    print(render_table(verdicts, args.tolerance))
    code = exit_code(verdicts)
    print(f"{'REGRESSION' if code else 'no regression'} "
          f"({time.perf_counter() - started:.0f} s)")
    return code
