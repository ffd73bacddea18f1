"""The regression gate's judgement: each task's current ratio against its baseline (a
recorded file, or the base revision measured in the same run), a slower task re-measured
before it is called a regression, and the table of verdicts."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable


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
                again_note = ("the re-measurement failed" if ratio is None
                              else "the re-measurement was within the tolerance")
                verdicts[key] = Verdict(key, base, ratio, "slower-unconfirmed",
                                        f"first {change:+.1%}; {again_note}", change)
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
