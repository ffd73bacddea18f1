"""Verdicts: does each usual GRU-vs-LSTM claim hold here, per backend?

Tutorials say a GRU has fewer parameters than an LSTM, runs and trains faster, needs less
memory and reaches similar task accuracy. This module judges each claim against a results
frame (grubench.schema.COLUMNS) and, optionally, ``grubench train`` result rows; rendering
lives in grubench.report (render_verdicts).

A claim is judged at every *point* a backend measured both cells (a size T,B,I,H at a dtype
and thread count; for training results, a dataset's settings and thread count). A point's
outcome is HOLDS, FAILS ("does not hold"), NOISE ("within noise") or UNJUDGED; a backend's
verdict on a claim sums its points: all HOLDS -> "holds", all FAILS -> "does not hold", all
NOISE -> "within noise", otherwise "mixed (holds at k of n sizes)".

The rules (RULES below is the text printed under the table, built from these constants):

* speed (inference, training, time per epoch): the ratio r = LSTM median / GRU median of the
  raw per-call times (``samples_s``; for training runs, every epoch after the first of every
  seed). Its 95% confidence interval is a percentile bootstrap (scipy.stats.bootstrap,
  BOOTSTRAP_RESAMPLES resamples of each cell's samples, independently, fixed seed). GRU is
  faster when the whole interval lies above 1 and r >= 1 + MIN_SPEED_EFFECT, slower when it
  lies below 1 and r <= 1 / (1 + MIN_SPEED_EFFECT), otherwise within noise. The effect floor
  is there because GRU and LSTM cases are timed at different moments on a machine whose
  speed drifts by a few percent, which no within-case interval sees.
* memory: byte counts of one call, which repeat from call to call; GRU needs less when its
  count is below LSTM's by more than MEMORY_TIE, more when above by more than that.
* parameters: the exact count G*H*(I+H+2) (CellSpec.parameter_count), G = 3 gate blocks
  for a GRU, 4 for an LSTM: fewer is fewer.
* numerics: both cells' relative error against the float64 oracle within the target of
  grubench.tolerances (grubench.accuracy.rel_err_target).
* task accuracy: "similar" holds when the seeds' ranges [min, max] of test accuracy of the
  two cells overlap or their means are less than SIMILAR_POINTS points apart (seeds that
  land on the same accuracy have no spread, and a point is a few test examples); judged
  only with at least MIN_SEEDS seeds per cell.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from grubench.accuracy import rel_err_target
from grubench.case import NETWORK_DEFAULTS
from grubench.files import read_json
from grubench.kernels.cells import CELLS, GRU, LSTM
from grubench.tables import BYTE_UNITS, TIME_UNITS, pick_unit

#: The two cells every claim compares (the tutorials' GRU against LSTM); each is compared
#: in its default variant (the GRU's: reset_after, torch's).
COMPARED = (GRU.name, LSTM.name)

HOLDS, FAILS, NOISE, UNJUDGED = "holds", "does not hold", "within noise", "not judged"

CONFIDENCE = 0.95
BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 0
MIN_SPEED_EFFECT = 0.05
MIN_SAMPLES = 3
MEMORY_TIE = 0.02
MIN_SEEDS = 2
SIMILAR_POINTS = 1.0

RULES = (
    f"speed: r = LSTM median / GRU median of the raw per-call times (training runs: every "
    f"epoch after the first, all seeds); GRU is faster when the {CONFIDENCE:.0%} percentile "
    f"bootstrap interval of r ({BOOTSTRAP_RESAMPLES} resamples of each cell's samples) lies "
    f"above 1 and r >= {1 + MIN_SPEED_EFFECT:.2f}, slower when it lies below 1 and "
    f"r <= 1/{1 + MIN_SPEED_EFFECT:.2f}, otherwise within noise (the {MIN_SPEED_EFFECT:.0%} "
    f"floor: GRU and LSTM are timed at different moments on a drifting machine); fewer "
    f"than {MIN_SAMPLES} samples a side: not judged.",
    f"memory: byte counts of one call (they repeat call to call); within "
    f"{MEMORY_TIE:.0%} of each other counts as within noise.",
    f"parameters: the exact count G*H*(I+H+2), G = {GRU.n_gates} (GRU), {LSTM.n_gates} "
    f"(LSTM); the GRU is the {GRU.variants[0].replace('_', '-')} variant (torch's) "
    f"throughout.",
    "numerics: holds when both cells' relative error against the float64 oracle is within "
    "the target (grubench.tolerances).",
    f"task accuracy: similar (holds) when the two cells' test accuracies over the seeds, "
    f"[min, max], overlap or their means are less than {SIMILAR_POINTS:g} point apart; "
    f"fewer than {MIN_SEEDS} seeds a cell: not judged.",
    "mixed (holds at k of n): the claim holds at k of the n points (sizes; for training "
    "runs, a dataset's settings and thread counts) the backend measured.",
)


@dataclass(frozen=True)
class Claim:
    """A tutorial claim: its row label and the phrases that say what a point showed."""

    key: str
    label: str
    holds: str          # what a point where the claim holds showed: "GRU trains faster ..."
    fails: str
    noise: str = "-"
    unit: str = "size"  # what a point is, for "at k of n sizes"
    # "speed" (ratio = LSTM/GRU time), "ratio" (LSTM/GRU of a count), "tolerance" (ratio =
    # the worst error / its target) or "check" (no ratio)
    kind: str = "check"

    def phrase(self, outcome: str) -> str:
        return {HOLDS: self.holds, FAILS: self.fails, NOISE: self.noise}.get(
            outcome, "it could not be judged")


@dataclass(frozen=True)
class Point:
    """One GRU-vs-LSTM comparison: where, the outcome, the figure behind it, and the
    LSTM/GRU ratio (above 1: the GRU is faster or smaller) when the claim has one."""

    where: str
    outcome: str
    figure: str
    ratio: float | None = None
    detail: str = ""    # how sure: the interval and sample counts


@dataclass(frozen=True)
class Verdict:
    claim: Claim
    backend: str
    points: tuple[Point, ...]

    def count(self, outcome: str) -> int:
        return sum(p.outcome == outcome for p in self.points)

    @property
    def outcome(self) -> str:
        outcomes = {p.outcome for p in self.points}
        return outcomes.pop() if len(outcomes) == 1 else "mixed"

    @property
    def label(self) -> str:
        if self.outcome != "mixed":
            return self.outcome
        others = ", ".join(f"{outcome} at {self.count(outcome)}"
                           for outcome in (FAILS, NOISE, UNJUDGED) if self.count(outcome))
        return (f"mixed (holds at {self.count(HOLDS)} of {len(self.points)} "
                f"{self.claim.unit}s; {others})")


@dataclass
class VerdictSet:
    """Every verdict of a run, with its claims and backends in the order first seen."""

    claims: list[Claim] = field(default_factory=list)
    backends: list[str] = field(default_factory=list)
    verdicts: dict = field(default_factory=dict)    # (claim key, backend) -> Verdict

    def add(self, claim: Claim, backend: str, point: Point) -> None:
        """One more point of ``claim`` on ``backend``."""
        if claim not in self.claims:
            self.claims.append(claim)
        if backend not in self.backends:
            self.backends.append(backend)
        earlier = self.verdicts.get((claim.key, backend))
        points = (*(earlier.points if earlier else ()), point)
        self.verdicts[claim.key, backend] = Verdict(claim, backend, points)

    def get(self, claim: Claim, backend: str) -> Verdict | None:
        return self.verdicts.get((claim.key, backend))


# ---------------------------------------------------------------------- the claims

PARAMETERS = Claim("parameters", "parameters: GRU has fewer",
                   "GRU has fewer parameters than LSTM", "GRU has more parameters than LSTM",
                   kind="ratio")
INFERENCE = Claim("inference", "inference: GRU faster",
                  "GRU runs inference faster than LSTM", "GRU runs inference slower than LSTM",
                  "GRU and LSTM run inference equally fast within noise", kind="speed")
TRAINING = Claim("training", "training: GRU faster",
                 "GRU trains faster than LSTM", "GRU trains slower than LSTM",
                 "GRU and LSTM train equally fast within noise", kind="speed")
PEAK = Claim("peak", "memory: GRU less at the training peak",
             "a GRU training step peaks lower than an LSTM's",
             "a GRU training step peaks higher than an LSTM's",
             "GRU and LSTM training steps peak equally high", kind="ratio")
SAVED = Claim("saved", "memory: GRU saves less for backward",
              "GRU saves less for backward than LSTM", "GRU saves more for backward than LSTM",
              "GRU and LSTM save as much for backward", kind="ratio")
NUMERICS = Claim("numerics", "numerics: both match the float64 oracle",
                 "both cells match the float64 oracle within tolerance",
                 "a cell misses the float64 oracle's tolerance", kind="tolerance")


def epoch_time_claim(dataset: str) -> Claim:
    return Claim(f"epoch:{dataset}", f"time per epoch ({dataset}): GRU faster",
                 f"GRU trains an epoch of {dataset} faster than LSTM",
                 f"GRU trains an epoch of {dataset} slower than LSTM",
                 f"GRU and LSTM train an epoch of {dataset} equally fast within noise",
                 unit="setting", kind="speed")


def task_accuracy_claim(dataset: str) -> Claim:
    return Claim(f"accuracy:{dataset}", f"task accuracy ({dataset}): similar",
                 f"GRU and LSTM reach similar test accuracy on {dataset}",
                 f"GRU and LSTM test accuracies on {dataset} differ beyond the seeds' "
                 f"spread", unit="setting")


#: Why a backend shows an outcome, where the cause is known from its source; printed only
#: beside a verdict that observed that outcome. (claim key, backend, outcome) -> cause.
KNOWN_CAUSES = {
    # aten/src/ATen/native/RNN.cpp (torch 2.x): the CPU GRU runs one input GEMM, then per
    # step an addmm and separate pointwise ops; the CPU LSTM is one mkldnn_rnn_layer call.
    **{(claim, "torch-cpu", FAILS):
       "torch runs its CPU GRU step by step, a matrix product and separate pointwise ops "
       "per step, and its LSTM as one fused oneDNN call"
       for claim in ("inference", "training")},
    # kernels/numba_cpu/: both cells run the same input product, per-step product and
    # pointwise passes, over 3 gate blocks for the GRU and 4 for the LSTM.
    **{(claim, "numba-cpu", HOLDS):
       "its GRU and LSTM run the same products and pointwise passes, over 3 gate blocks "
       "against 4"
       for claim in ("inference", "training")},
}


# ---------------------------------------------------------------------- the rules

def speed_point(where: str, gru_samples, lstm_samples) -> Point:
    """GRU's speed against LSTM's at one point, from raw per-call (or per-epoch) times."""
    gru, lstm = _samples(gru_samples), _samples(lstm_samples)
    fewest = min(len(gru), len(lstm))
    if fewest < MIN_SAMPLES:
        return Point(where, UNJUDGED, "no raw times in these results" if fewest == 0 else
                     f"{fewest} raw times on one side (at least {MIN_SAMPLES} needed)")
    ratio = float(np.median(lstm) / np.median(gru))
    low, high = _bootstrap_ratio(gru, lstm)
    if low > 1 and ratio >= 1 + MIN_SPEED_EFFECT:
        outcome = HOLDS
    elif high < 1 and ratio <= 1 / (1 + MIN_SPEED_EFFECT):
        outcome = FAILS
    else:
        outcome = NOISE
    unit, scale = pick_unit([np.median(gru), np.median(lstm)], TIME_UNITS)
    figure = (f"GRU {np.median(gru) / scale:.3g} {unit} vs LSTM {np.median(lstm) / scale:.3g} "
              f"{unit}: {speed_words(ratio)}")
    detail = (f"{CONFIDENCE:.0%} CI {_interval(ratio, low, high)}; {len(gru)} GRU, "
              f"{len(lstm)} LSTM samples")
    return Point(where, outcome, figure, ratio, detail)


def _samples(value) -> np.ndarray:
    """Raw times as an array; none (results written before rows kept them: NaN) as empty."""
    return np.asarray(value if isinstance(value, (list, tuple, np.ndarray)) else [], float)


def _bootstrap_ratio(gru: np.ndarray, lstm: np.ndarray) -> tuple[float, float]:
    """The percentile bootstrap interval of median(lstm) / median(gru), each sample
    resampled on its own."""
    from scipy import stats

    def ratio(g, l_, axis=-1):
        return np.median(l_, axis=axis) / np.median(g, axis=axis)

    with warnings.catch_warnings():     # identical samples: a degenerate, still valid, interval
        warnings.simplefilter("ignore")
        result = stats.bootstrap((gru, lstm), ratio, paired=False, vectorized=True,
                                 n_resamples=BOOTSTRAP_RESAMPLES, confidence_level=CONFIDENCE,
                                 method="percentile", rng=np.random.default_rng(BOOTSTRAP_SEED))
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def factor(value: float) -> str:
    """A ratio for reading: 1.374 -> '1.37x', 23.94 -> '23.9x'."""
    return f"{value:.2f}x" if value < 10 else f"{value:.1f}x"


def speed_words(ratio: float) -> str:
    """LSTM/GRU time ratio as the GRU's speed: 1.37 -> '1.37x faster', 0.5 -> '2.00x
    slower'."""
    return f"{factor(ratio)} faster" if ratio >= 1 else f"{factor(1 / ratio)} slower"


def speed_span(low: float, high: float) -> str:
    """A range of LSTM/GRU time ratios in the GRU's words: '1.25x to 1.35x faster'."""
    if low >= 1:
        return f"{factor(low)} to {factor(high)} faster"
    if high < 1:
        return f"{factor(1 / high)} to {factor(1 / low)} slower"
    return f"{factor(1 / low)} slower to {factor(high)} faster"


def _interval(ratio: float, low: float, high: float) -> str:
    """The interval in the words of ``speed_words(ratio)``: inverted for 'slower'."""
    return (f"{factor(low)[:-1]}-{factor(high)}" if ratio >= 1
            else f"{factor(1 / high)[:-1]}-{factor(1 / low)}")


def memory_point(where: str, gru_bytes, lstm_bytes) -> Point:
    if _missing(gru_bytes) or _missing(lstm_bytes):
        return Point(where, UNJUDGED, "not measured for both cells")
    if gru_bytes <= 0 or lstm_bytes <= 0:   # e.g. a resident-set counter that saw no growth
        return Point(where, UNJUDGED, "a cell's counter saw no allocation")
    ratio = lstm_bytes / gru_bytes
    outcome = (HOLDS if ratio > 1 + MEMORY_TIE else FAILS if ratio < 1 / (1 + MEMORY_TIE)
               else NOISE)
    unit, scale = pick_unit([gru_bytes, lstm_bytes], BYTE_UNITS)
    more = (f"LSTM needs {factor(ratio)} as much" if ratio >= 1
            else f"GRU needs {factor(1 / ratio)} as much")
    return Point(where, outcome, f"GRU {gru_bytes / scale:.3g} {unit} vs LSTM "
                                 f"{lstm_bytes / scale:.3g} {unit}: {more}", ratio)


def parameters_point(where: str, gru: int, lstm: int) -> Point:
    """The cells' exact parameter counts (CellSpec.parameter_count: G*H*(I+H+2))."""
    outcome = HOLDS if gru < lstm else FAILS if gru > lstm else NOISE
    return Point(where, outcome, f"GRU {gru:,} vs LSTM {lstm:,}: GRU {gru / lstm:.2f}x as "
                                 f"many", lstm / gru)


def numerics_point(where: str, dtype: str, errors: dict) -> Point:
    """``errors``: mode -> (GRU rel. error, LSTM rel. error)."""
    parts, used = [], []     # used: each error as a fraction of its target
    for mode, (gru, lstm) in errors.items():
        if _missing(gru) or _missing(lstm):
            continue
        target = rel_err_target(dtype, mode == "training")
        used.append(max(gru, lstm) / target)
        parts.append(f"{mode} GRU {gru:.1e}, LSTM {lstm:.1e} (target {target:.0e})")
    if not parts:
        return Point(where, UNJUDGED, "no accuracy measured for both cells")
    return Point(where, HOLDS if max(used) <= 1 else FAILS, "; ".join(parts), max(used))


def task_accuracy_point(where: str, gru_accuracies, lstm_accuracies) -> Point:
    def spread(values):
        return (f"{100 * np.mean(values):.1f}% ({100 * min(values):.1f}-"
                f"{100 * max(values):.1f})")

    seeds = min(len(gru_accuracies), len(lstm_accuracies))
    figure = f"GRU {spread(gru_accuracies)} vs LSTM {spread(lstm_accuracies)}"
    detail = f"mean (min-max) over {seeds} seed{'s' * (seeds != 1)}"
    if seeds < MIN_SEEDS:
        return Point(where, UNJUDGED, f"{figure}: one seed, no spread to judge by",
                     detail=detail)
    overlap = (max(min(gru_accuracies), min(lstm_accuracies))
               <= min(max(gru_accuracies), max(lstm_accuracies)))
    gap = 100 * (np.mean(gru_accuracies) - np.mean(lstm_accuracies))
    better = f"{'GRU' if gap > 0 else 'LSTM'} better by {abs(gap):.1f} points"
    if overlap:
        return Point(where, HOLDS, f"{figure}: ranges overlap", detail=detail)
    if abs(gap) < SIMILAR_POINTS:
        return Point(where, HOLDS, f"{figure}: {better}, under {SIMILAR_POINTS:g}",
                     detail=detail)
    return Point(where, FAILS, f"{figure}: {better}", detail=detail)


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


# ---------------------------------------------------------------------- judging results

def compared_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows of the :data:`COMPARED` cells, each in its default variant, one layer in
    one direction at full length (the claims are about the cells)."""
    defaults = {name: CELLS[name].variants[0] for name in COMPARED}
    chosen = frame["cell"].map(defaults) == frame["variant"]
    for name, default in NETWORK_DEFAULTS.items():
        if name in frame:
            chosen &= frame[name].isna() | (frame[name] == default)
    return frame[chosen]


def judge(frame: pd.DataFrame, training_rows: list[dict] | None = None) -> VerdictSet:
    """Every claim against a results frame (GRU reset-after rows against LSTM rows of the
    same backend, size, dtype and threads) and ``grubench train`` rows."""
    verdicts = VerdictSet()
    ok = compared_rows(frame[frame["status"] == "ok"])
    multiple = {key: ok[key].nunique() > 1 for key in ("dtype", "threads")}
    pairs = {}   # (backend, T, B, I, H, dtype, threads) -> {(cell, mode): row}
    for row in ok.to_dict("records"):
        key = (row["backend"], *(int(row[k]) for k in "TBIH"), row["dtype"], int(row["threads"]))
        pairs.setdefault(key, {})[row["cell"], row["mode"]] = row
    for key in sorted(pairs, key=lambda k: (k[0], k[6], k[5], k[4], k[2], k[1], k[3])):
        backend, T, B, I, H, dtype, threads = key
        rows = pairs[key]
        where = (f"{T},{B},{I},{H}" + (f" {dtype}" if multiple["dtype"] else "")
                 + (f" t{threads}" if multiple["threads"] else ""))
        both = {mode: tuple(rows.get((name, mode)) for name in COMPARED)
                for mode in ("inference", "training")}
        both = {mode: (gru, lstm) for mode, (gru, lstm) in both.items()
                if gru is not None and lstm is not None}
        if not both:
            continue
        gru, lstm = next(iter(both.values()))
        points = [(PARAMETERS, parameters_point(where, int(gru["parameters"]),
                                                int(lstm["parameters"])))]
        for mode, claim in (("inference", INFERENCE), ("training", TRAINING)):
            if mode in both:
                gru, lstm = both[mode]
                points.append((claim, speed_point(where, gru["samples_s"], lstm["samples_s"])))
        if "training" in both:
            gru, lstm = both["training"]
            points += [(PEAK, memory_point(where, gru["peak_bytes"], lstm["peak_bytes"])),
                       (SAVED, memory_point(where, gru["saved_bytes"], lstm["saved_bytes"]))]
        points.append((NUMERICS, numerics_point(where, dtype, {
            mode: (gru["rel_err"], lstm["rel_err"]) for mode, (gru, lstm) in both.items()})))
        for claim, point in points:
            verdicts.add(claim, backend, point)
    for claim, backend, point in training_points(training_rows or []):
        verdicts.add(claim, backend, point)
    order = [PARAMETERS, INFERENCE, TRAINING, PEAK, SAVED, NUMERICS]
    verdicts.claims.sort(key=lambda c: order.index(c) if c in order else len(order))
    return verdicts


#: What a training row must hold to be compared, and what must agree between GRU and LSTM
#: runs for them to have had the same budget.
TRAINING_FIELDS = ("dataset", "cell", "backend", "threads", "seed", "test_accuracy",
                   "epoch_seconds")
BUDGET = ("dataset", "backend", "threads", "hidden", "epochs", "batch", "lr")


def training_points(rows: list[dict]):
    """(claim, backend, point) for the whole model's parameters, time per epoch and task
    accuracy, GRU against LSTM runs of the same dataset, backend, threads and budget,
    pooled over seeds."""
    groups: dict = {}
    for row in rows:
        budget = tuple(row.get(k) for k in BUDGET)
        groups.setdefault(budget, {}).setdefault(row["cell"], {})[row["seed"]] = row
    for budget, cells in groups.items():
        if not set(COMPARED) <= set(cells):
            continue
        dataset, backend, threads, hidden, epochs, batch, _lr = budget
        where = f"hidden {hidden}, {epochs} epochs, batch {batch}, t{threads}"
        runs = [list(cells[name].values()) for name in COMPARED]
        if all("parameters" in run[0] for run in runs):
            yield (PARAMETERS, backend, parameters_point(
                f"{dataset} model, hidden {hidden}", *(run[0]["parameters"] for run in runs)))
        yield (epoch_time_claim(dataset), backend,
               speed_point(where, *([s for r in run for s in r["epoch_seconds"][1:]]
                                    for run in runs)))
        yield (task_accuracy_claim(dataset), backend,
               task_accuracy_point(where, *([r["test_accuracy"] for r in run]
                                            for run in runs)))


def check_training_rows(results, source: str) -> None:
    """ValueError naming ``source`` and the first problem unless ``results`` is a list of
    ``grubench train`` result rows."""
    if not isinstance(results, list) or not all(isinstance(r, dict) for r in results):
        raise ValueError(f"{source} is not a grubench train result (training.json with a "
                         f"'results' list)")
    for number, row in enumerate(results, 1):
        missing = [k for k in TRAINING_FIELDS if k not in row]
        if missing:
            raise ValueError(f"{source}: result {number} lacks {', '.join(missing)}")
        if row["cell"] not in CELLS:
            raise ValueError(f"{source}: result {number}: unknown cell {row['cell']!r}")
        if not (isinstance(row["epoch_seconds"], list)
                and all(isinstance(s, (int, float)) for s in row["epoch_seconds"])):
            raise ValueError(f"{source}: result {number}: epoch_seconds must be a list of "
                             f"numbers")
        if not isinstance(row["test_accuracy"], (int, float)):
            raise ValueError(f"{source}: result {number}: test_accuracy must be a number")


def load_training(paths) -> list[dict]:
    """The result rows of ``grubench train`` files (training.json or the folder holding
    it), pooled; ValueError naming the file and what is wrong with it."""
    rows = []
    for path in map(Path, paths):
        if path.is_dir():
            path = path / "training.json"
        document = read_json(path)
        results = document.get("results") if isinstance(document, dict) else None
        check_training_rows(results, str(path))
        rows += results
    return rows


# ---------------------------------------------------------------------- what it means

def meaning(verdicts: VerdictSet, claim: Claim) -> str:
    """One sentence saying what the verdicts on ``claim`` mean, backend by backend, with
    the known causes of what was observed."""
    clauses: dict[str, list[str]] = {}     # clause -> backends, so alike backends share one
    for backend in verdicts.backends:
        verdict = verdicts.get(claim, backend)
        if verdict is None:
            continue
        n = len(verdict.points)
        parts = []
        for outcome in (HOLDS, FAILS, NOISE, UNJUDGED):
            count = verdict.count(outcome)
            if count == 0:
                continue
            where = (f"at every {claim.unit} measured" if count == n
                     else f"at {count} of {n} {claim.unit}s")
            cause = KNOWN_CAUSES.get((claim.key, backend, outcome))
            if outcome == UNJUDGED:     # why not: the points say
                cause = "; ".join(dict.fromkeys(p.figure for p in verdict.points
                                                if p.outcome == UNJUDGED))
            parts.append(f"{claim.phrase(outcome)} {where}" + (f" ({cause})" if cause else ""))
        clauses.setdefault(", and ".join(parts), []).append(backend)
    sentences = [f"with {_and(backends)}, {clause}" for clause, backends in clauses.items()]
    return f"On this machine, {'; '.join(sentences)}." if sentences else ""


def _and(names: list[str]) -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"
