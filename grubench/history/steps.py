"""Steps in a case's series over commits: where did it get slower or faster, and by how much.

Change points come from ruptures' PELT search on the log of the per-run medians (a step is
then a ratio, the same at 1 us and at 1 s) with an L2 cost and a BIC-like penalty
2 * sigma^2 * log(n), sigma being the series' own run-to-run noise (a robust estimate from
successive differences, floored at 1%). A change point is reported only when the medians
of the segments either side differ by at least ``min_effect`` (default 10%), so noise that
PELT splits on is not called a step, and each side must hold ``min_size`` runs.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

MIN_EFFECT = 0.10
MIN_SIZE = 2
NOISE_FLOOR = 0.01
SERIES_KEY = ("case", "backend", "machine", "metric")


@dataclass(frozen=True)
class Step:
    case: str
    backend: str
    machine: str
    metric: str
    commit: str | None          # the first run after the step
    previous_commit: str | None  # the last run before it
    run_id: int
    before: float               # median of the segment before
    after: float                # median of the segment after

    @property
    def change(self) -> float:
        """after / before - 1: +0.3 is 30% slower for a time."""
        return self.after / self.before - 1


def noise(log_values: np.ndarray) -> float:
    """Run-to-run standard deviation of a log series, robust to the steps themselves:
    the median absolute successive difference, scaled to sigma."""
    if len(log_values) < 3:
        return NOISE_FLOOR
    spread = 1.4826 * float(np.median(np.abs(np.diff(log_values)))) / math.sqrt(2)
    return max(spread, NOISE_FLOOR)


def change_points(values, min_effect: float = MIN_EFFECT,
                  min_size: int = MIN_SIZE) -> list[tuple[int, float, float]]:
    """(index of the first point after, median before, median after) of each step in a
    series of positive values."""
    import ruptures

    values = np.asarray(values, dtype=float)
    if len(values) < 2 * min_size or not np.all(values > 0):
        return []
    signal = np.log(values)
    sigma = noise(signal)
    algorithm = ruptures.Pelt(model="l2", min_size=min_size, jump=1).fit(signal)
    breaks = algorithm.predict(pen=2 * sigma ** 2 * math.log(len(values)))[:-1]
    bounds = [0, *breaks, len(values)]
    found = []
    for start, cut, end in zip(bounds, bounds[1:], bounds[2:]):
        before = float(np.median(values[start:cut]))
        after = float(np.median(values[cut:end]))
        if abs(after / before - 1) >= min_effect:
            found.append((cut, before, after))
    return found


def find_steps(frame, min_effect: float = MIN_EFFECT, min_size: int = MIN_SIZE) -> list[Step]:
    """Steps of every series (case, backend, machine, metric) of a store frame
    (grubench.history.store.Store.frame), oldest run first within each."""
    ok = frame[(frame["status"] == "ok") & frame["value"].notna()]
    steps = []
    for key, series in ok.groupby(list(SERIES_KEY), sort=True):
        series = series.reset_index(drop=True)
        for cut, before, after in change_points(series["value"].to_numpy(float),
                                                min_effect, min_size):
            steps.append(Step(*key, commit=series.at[cut, "commit"],
                              previous_commit=series.at[cut - 1, "commit"],
                              run_id=int(series.at[cut, "run_id"]), before=before,
                              after=after))
    return steps
