"""Small statistics for benchmark samples: medians and tails, never means alone.

Timings on a shared machine have long right tails (another process takes the cores for a
moment), so the bench reports the median as its headline and the 95th percentile as its tail.
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) by linear interpolation between order statistics.

    With few samples the 95th percentile is close to the maximum: it is reported anyway, with
    the sample count beside it, so a reader can judge how much it says.
    """
    if not values:
        return math.nan
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100.0
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def median(values: Sequence[float]) -> float:
    return percentile(values, 50.0)


def p95(values: Sequence[float]) -> float:
    return percentile(values, 95.0)


def summary(values: Sequence[float]) -> dict[str, float | int | None]:
    """n, median, p95, min and max of `values`, rounded for reports (None when there are none:
    JSON has no NaN)."""
    if not values:
        return {"n": 0, "median": None, "p95": None, "min": None, "max": None}
    return {
        "n": len(values),
        "median": round(median(values), 2),
        "p95": round(p95(values), 2),
        "min": round(min(values), 2),
        "max": round(max(values), 2),
    }


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """numerator / denominator, or None when either is missing or the denominator is zero."""
    if numerator is None or not denominator or math.isnan(numerator) or math.isnan(denominator):
        return None
    return round(numerator / denominator, 4)
