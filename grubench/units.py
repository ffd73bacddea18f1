"""Units a table shows its numbers in: one unit per table, picked from the values, so
the report and the verdicts print times and bytes alike."""
from __future__ import annotations

import math

TIME_UNITS = (("s", 1.0), ("ms", 1e-3), ("us", 1e-6))
BYTE_UNITS = (("GiB", 2.0 ** 30), ("MiB", 2.0 ** 20), ("KiB", 2.0 ** 10), ("B", 1.0))


def pick_unit(values, units) -> tuple[str, float]:
    """The largest of ``units`` (name, scale; largest first) in which the smallest
    positive value reads at least 0.1, so one table keeps one unit and short numbers."""
    positive = [v for v in values if v and v > 0 and not math.isnan(v)]
    smallest = min(positive) if positive else units[0][1]
    for name, scale in units:
        if smallest >= 0.1 * scale:
            return name, scale
    return units[-1]
