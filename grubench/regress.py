"""`grubench regress`: a performance gate for CI that survives noisy machines.

Absolute times on a shared 2-core VM move 5-20% between runs, and more between machines, so
the gate never compares seconds. Times are the process's CPU time (:data:`CLOCK`): on a
machine shared by other jobs, wall time counts every stretch the process waits for a core
(the per-pair ratios then spread 30x; CPU time keeps them within 20%, docs/regress-clock.md).
Each case is timed interleaved with a calibration workload in the same worker process (a
NumPy float32 matrix product with the case's forward FLOPs, see
:func:`calibration_workload`), pair by pair: the machine's momentary speed cancels in
the ratio case/calibration, and the median of the per-pair ratios is what is compared.

The ratio cancels the machine's speed, not its shape (vector width, caches, BLAS kernel), so
it is compared either with a baseline recorded on a machine of the same fingerprint
(grubench.machine.fingerprint; one file per fingerprint in reports/baseline/), or, which is
right on any machine, with the base revision measured in the same run (``--against``,
grubench.ab). Without a baseline for this machine the gate falls back to the A/B test.
A case slower than the tolerance is measured again, longer, before it is declared a
regression.

Exit codes: 0 no confirmed regression, 1 a confirmed regression, 2 a missing or corrupt
baseline, a base revision that does not exist or build (or another usage error).
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

from grubench import history, machine
from grubench.case import Case, Task
from grubench.kernels.cells import cell

SCHEMA = "grubench.regress/2"
BASELINE_DIR = Path("reports/baseline")
DEFAULT_TOLERANCE = 0.25
DEFAULT_PAIRS = 31
#: A/B defaults: turns per side and case, pairs per turn, and the tolerance (A/B noise on
#: unchanged code is measured in reports/regress-proof.md).
AB_ROUNDS = 8
AB_PAIRS = 5
AB_TOLERANCE = 0.15
CASE_TIMEOUT_S = 120.0
#: Process CPU time: blind to the time spent waiting for a core on a shared machine.
CLOCK = time.process_time
#: test-only: a factor > 1 in this variable makes every measured case spin that much longer
SLOWDOWN_ENV = "GRUBENCH_INJECT_SLOWDOWN"


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


def task_entry(task: Task) -> dict:
    """A gated task as baseline files list it under "suite" and as a worker request
    carries it (the format of the files already recorded, with ``reset_after``)."""
    case = task.case
    return {"backend": task.backend, "cell": case.cell, "mode": case.mode, "T": case.T,
            "B": case.B, "I": case.I, "H": case.H, "reset_after": case.reset_after,
            "variable_lengths": case.variable_lengths, "dtype": case.dtype,
            "threads": task.threads}


def task_of(entry: dict) -> Task:
    """The task of a :func:`task_entry`."""
    case = Case(entry["cell"], entry["T"], entry["B"], entry["I"], entry["H"],
                variant=cell(entry["cell"]).variant_of(entry["reset_after"]),
                mode=entry["mode"], dtype=entry["dtype"],
                variable_lengths=entry["variable_lengths"])
    return Task(case, entry["backend"], entry["threads"])


# ----------------------------------------------------------------------------- measuring

def calibration_workload(case: Case) -> Callable[[], object]:
    """A NumPy float32 product with the forward FLOPs of the case's matrix products:
    (T*B, I+H) x (I+H, G*H). It runs on the same cores, caches and BLAS as the case."""
    rng = np.random.default_rng(0)
    left = rng.standard_normal((case.T * case.B, case.I + case.H)).astype(np.float32)
    right = rng.standard_normal((case.I + case.H, case.gates * case.H)).astype(np.float32)
    return lambda: left @ right


def slowed(run: Callable[[], object], factor: float) -> Callable[[], object]:
    """``run`` made ``factor`` times slower (in :data:`CLOCK` time) by spinning after it
    (test-only injection)."""
    def run_slowed():
        start = CLOCK()
        result = run()
        deadline = start + factor * (CLOCK() - start)
        while CLOCK() < deadline:
            pass
        return result
    return run_slowed


def _repetitions(run: Callable[[], object], min_block_s: float) -> int:
    """How many calls make one timed block last at least ``min_block_s``."""
    start = CLOCK()
    run()
    once = max(CLOCK() - start, 1e-7)
    return max(1, int(np.ceil(min_block_s / once)))


def _time_block(run: Callable[[], object], repetitions: int) -> float:
    start = CLOCK()
    for _ in range(repetitions):
        run()
    return (CLOCK() - start) / repetitions


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


def measure_case(backend, task: Task, pairs: int) -> dict:
    """Time one task on ``backend`` (a grubench.backends.Backend) against its calibration
    in this process (already thread-pinned).
    Returns {"key", "ratio", "ratios", "case_s", "status", "reason"}."""
    if not backend.available:
        return {"key": task.key, "status": "unavailable", "reason": backend.why_unavailable}
    case = task.case
    # with upstream gradients in inference too: the inputs every baseline was measured on
    prepared = backend.prepare(case.make_args(seed=0, with_grads=True))
    step = prepared.training_step if case.training else prepared.forward

    def run():
        step()
        prepared.synchronize()

    run()  # compile and warm caches outside the timed pairs
    factor = float(os.environ.get(SLOWDOWN_ENV, "1") or 1)
    case_run = slowed(run, factor) if factor != 1 else run
    ratios = interleaved_ratios(case_run, calibration_workload(case), pairs)
    return {"key": task.key, "status": "ok", "reason": None,
            "ratio": statistics.median(ratios), "ratios": ratios,
            "case_s": _time_block(run, 3)}


def measure(tasks, pairs: int, log_dir: Path) -> dict[str, dict]:
    """Rows by case key, each backend and thread count in its own pinned worker process
    (grubench.worker); a worker that crashes or hangs yields a failed row and is replaced."""
    from grubench.worker import Worker, WorkerFailed

    rows = {}
    by_worker = lambda task: (task.backend, task.threads)  # noqa: E731
    for (backend, threads), group in itertools.groupby(sorted(tasks, key=by_worker),
                                                       key=by_worker):
        worker = None
        for task in group:
            try:
                if worker is None:
                    worker = Worker(backend, threads, log_dir / f"regress-{backend}-{threads}.log",
                                    CASE_TIMEOUT_S)
                if not worker.hello["available"]:
                    row = {"status": "unavailable", "reason": worker.hello["reason"]}
                else:
                    row = worker.request({"kind": "regress", "task": task_entry(task),
                                          "pairs": pairs}, CASE_TIMEOUT_S)
            except WorkerFailed as failure:
                worker = None
                row = {"status": failure.status, "reason": failure.reason}
            rows[task.key] = {**row, "key": task.key}
            print(f"  {task.key}: " + (f"ratio {row['ratio']:.4g}" if row["status"] == "ok"
                                       else f"{row['status']}: {row.get('reason')}"),
                  file=sys.stderr, flush=True)
        if worker is not None:
            worker.close()
    return rows


# ----------------------------------------------------------------------------- comparing

class BaselineError(Exception):
    """A baseline file that is missing or cannot be read as a regress baseline."""


def baseline_path(fingerprint: dict) -> Path:
    """Where the baseline of a machine of this fingerprint lives (one file per machine)."""
    from grubench.machine import fingerprint_id

    return BASELINE_DIR / f"regress-{fingerprint_id(fingerprint)}.json"


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
    if not isinstance(document.get("fingerprint"), dict):
        raise BaselineError(f"baseline {path} has no machine 'fingerprint' mapping")
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
    first_change: float | None = None   # a re-measured case's first change


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
            remeasure: Callable[[list[str]], dict[str, tuple[float, float]]]) -> list[Verdict]:
    """Verdicts for every key in either mapping.

    ``current`` maps keys to measurement rows (status, ratio, reason); ``remeasure(keys)``
    measures the suspects again, longer, and returns their (baseline, current) ratios (the
    A/B test measures its base again too): a case is a regression only when the
    re-measurement is slower than the tolerance too.
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
            verdicts[key] = Verdict(key, None, row["ratio"], "new",
                                    row.get("base_failure") or "not in the baseline")
        else:
            state = classify(base, row["ratio"], tolerance)
            if state == "slower":
                suspects.append(key)
            verdicts[key] = Verdict(key, base, row["ratio"], state)
    if suspects:
        again = remeasure(suspects)
        for key in suspects:
            change = current[key]["ratio"] / baseline[key] - 1
            base, ratio = again.get(key, (baseline[key], None))
            if ratio is not None and classify(base, ratio, tolerance) == "slower":
                verdicts[key] = Verdict(key, base, ratio, "regression",
                                        f"first {change:+.1%}, re-measured", change)
            else:
                verdicts[key] = Verdict(key, base, ratio, "slower-unconfirmed",
                                        f"first {change:+.1%}; the re-measurement was "
                                        f"within the tolerance", change)
    return [verdicts[key] for key in sorted(verdicts)]


def exit_code(verdicts: list[Verdict]) -> int:
    return 1 if any(v.verdict == "regression" for v in verdicts) else 0


def _first_line(text: str, limit: int = 100) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= limit else line[:limit - 3] + "..."


def render_table(verdicts: list[Verdict], tolerance: float, base_label: str = "baseline"
                 ) -> str:
    """A plain-text table of every case: baseline ratio, current ratio, change, verdict."""
    header = ("case", base_label, "current", "change", "verdict")
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


def baseline_document(rows: dict[str, dict], machine: dict, fingerprint: dict,
                      tolerance: float) -> dict:
    # A/B rows carry no case_s: their turns time the case against the calibration only
    cases = {key: {"ratio": row["ratio"], "case_s": row.get("case_s")}
             for key, row in rows.items() if row.get("status") == "ok"}
    return {"schema": SCHEMA, "fingerprint": fingerprint, "machine": machine,
            "tolerance": tolerance, "cases": cases, "suite": [task_entry(t) for t in CI_SUITE]}


# ----------------------------------------------------------------------------- command

SUITES = {"ci": CI_SUITE}


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
    from grubench import ab
    from grubench.files import check_writable_dir

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
    from grubench.files import check_writable_dir, write_atomic

    check_writable_dir(path.parent)
    started = time.perf_counter()
    pairs = args.pairs or DEFAULT_PAIRS
    with tempfile.TemporaryDirectory(prefix="grubench-regress-") as logs:
        print(f"grubench regress: {len(cases)} cases, {pairs} pairs each", file=sys.stderr)
        rows = measure(cases.values(), pairs, Path(logs))
    document = baseline_document(rows, machine.context(), fingerprint,
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
        history.record(baseline_document(rows, machine.context(), baseline["fingerprint"],
                                         tolerance), args)

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
                               rows, machine.context(), machine.fingerprint(), tolerance),
                               args))
    print(f"base: {rev} = {commit[:12]}")
    return report(verdicts, tolerance, "base", started, args)


def ab_verdicts(cases: dict, site: Path, rounds: int, pairs: int, tolerance: float,
                measured: Callable[[dict], object] = lambda rows: None) -> list[Verdict]:
    """Measure base (installed at ``site``) and current kernels in turns, re-measure the
    cases slower than the tolerance (both sides, twice the turns), and judge.
    ``measured(rows)`` receives the current side's first measurement."""
    from grubench import ab

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
    from grubench.files import write_atomic

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
