"""Small robust statistics over metric series: medians, MAD, counter rates. Pure functions."""

from __future__ import annotations

import itertools
import statistics
from collections.abc import Sequence

Point = tuple[float, float]  # (epoch seconds, value)


def is_counter(name: str) -> bool:
    """Counters end in ``_total`` (ARCHITECTURE.md metric naming); they are compared as rates."""
    return name.endswith("_total")


def to_rates(points: Sequence[Point]) -> list[Point]:
    """Per-second rates between consecutive points; a decrease (counter reset) is skipped."""
    out: list[Point] = []
    for (t0, v0), (t1, v1) in itertools.pairwise(points):
        dt = t1 - t0
        if dt > 0 and v1 >= v0:
            out.append((t1, (v1 - v0) / dt))
    return out


def median(values: Sequence[float]) -> float:
    """The median; raises ValueError on an empty sequence."""
    if not values:
        raise ValueError("median of no values")
    return float(statistics.median(values))


def mad(values: Sequence[float]) -> float:
    """Median absolute deviation from the median (unscaled): a noise floor robust to spikes."""
    m = median(values)
    return median([abs(v - m) for v in values])


def summarize(values: Sequence[float]) -> dict[str, float]:
    """n, median, MAD, min and max of a non-empty sequence."""
    return {
        "n": float(len(values)),
        "median": median(values),
        "mad": mad(values),
        "min": float(min(values)),
        "max": float(max(values)),
    }


def values_between(points: Sequence[Point], since: float, until: float) -> list[float]:
    """The values of points with since <= t <= until."""
    return [v for t, v in points if since <= t <= until]
