"""Per-minute rollups of every metric, computed from the samples' own timestamps."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from healer.models import Sample
from healer.store.rows import Rollup


@dataclass
class _Agg:
    min: float
    max: float
    total: float
    last: float
    count: int


class RollupAccumulator:
    """Feed ``Sample``s in time order; ``add`` returns the finished minute's rollups when
    a sample lands in a new minute. No clock: the minute comes from ``Sample.ts``."""

    def __init__(self) -> None:
        self._minute: int | None = None  # epoch minute being accumulated
        self._aggs: dict[str, _Agg] = {}

    def add(self, sample: Sample) -> list[Rollup]:
        """Accumulate one sample; returns the previous minute's rows if it just ended."""
        minute = int(sample.ts // 60)
        done = self.flush() if self._minute is not None and minute != self._minute else []
        self._minute = minute
        aggs = self._aggs
        for name, value in sample.metrics.items():  # every metric, every second: kept inline
            if value - value != 0.0:
                continue  # NaN/inf (x - x is NaN) would poison min/avg; not a reading
            agg = aggs.get(name)
            if agg is None:
                aggs[name] = _Agg(value, value, value, value, 1)
                continue
            if value < agg.min:
                agg.min = value
            elif value > agg.max:
                agg.max = value
            agg.total += value
            agg.last = value
            agg.count += 1
        return done

    def flush(self) -> list[Rollup]:
        """Emit what has accumulated for the current minute (at shutdown) and start over."""
        if self._minute is None:
            return []
        start = datetime.fromtimestamp(self._minute * 60, UTC)
        rows = [
            Rollup(
                name=name,
                minute=start,
                min=a.min,
                max=a.max,
                avg=a.total / a.count,
                last=a.last,
                count=a.count,
            )
            for name, a in sorted(self._aggs.items())
        ]
        self._minute, self._aggs = None, {}
        return rows
