"""The metric window: the last hour of samples at full resolution, in memory.

Memory-lean by design: one shared ring of timestamps plus one ``array('d')`` ring
per metric name (8 bytes a slot; 500 metrics x 3600 slots is about 14 MB), created
the first time a name appears. A metric missing from a sample reads as NaN there
and is skipped by every query. Kernel-log records are kept in a bounded deque.
"""

from __future__ import annotations

import itertools
import math
import threading
from array import array
from collections import deque

from healer.models import KmsgRecord, ProcessInfo, Sample

NAN = float("nan")


class MetricWindow:
    """A ring of ``capacity_seconds / interval`` samples; safe for one writer, many readers."""

    def __init__(self, capacity_seconds: float = 3600.0, interval: float = 1.0,
                 kmsg_capacity: int = 20_000) -> None:
        self.size = max(2, math.ceil(capacity_seconds / interval))
        self._ts = array("d", [NAN]) * self.size
        self._rings: dict[str, array[float]] = {}
        self._head = 0  # next slot to write
        self._count = 0
        self._latest: Sample | None = None
        self._processes: tuple[ProcessInfo, ...] | None = None
        self._kmsg: deque[tuple[float, KmsgRecord]] = deque(maxlen=kmsg_capacity)
        self._lock = threading.Lock()

    def append(self, sample: Sample) -> None:
        """Add one sample, overwriting the oldest when full."""
        with self._lock:
            i = self._head
            self._ts[i] = sample.ts
            metrics = sample.metrics
            for name, ring in self._rings.items():
                ring[i] = metrics.get(name, NAN)
            for name in metrics.keys() - self._rings.keys():
                ring = self._rings[name] = array("d", [NAN]) * self.size
                ring[i] = metrics[name]
            self._head = (i + 1) % self.size
            self._count = min(self._count + 1, self.size)
            self._latest = sample
            if sample.processes is not None:
                self._processes = sample.processes
            self._kmsg.extend((sample.ts, r) for r in sample.kmsg)

    def latest(self) -> Sample | None:
        """The newest sample, or None before the first."""
        return self._latest

    def names(self) -> list[str]:
        """Every metric name seen so far, sorted."""
        with self._lock:
            return sorted(self._rings)

    def _slots(self, seconds: float) -> list[int]:
        """Slot indexes, oldest first, whose timestamp is within ``seconds`` of the newest."""
        out: list[int] = []
        if self._count == 0:
            return out
        newest = self._ts[(self._head - 1) % self.size]
        cutoff = newest - seconds
        for k in range(1, self._count + 1):  # newest backwards: short queries stay cheap
            i = (self._head - k) % self.size
            if self._ts[i] < cutoff:
                break
            out.append(i)
        out.reverse()
        return out

    def series(self, name: str, seconds: float) -> list[tuple[float, float]]:
        """``(ts, value)`` points of ``name`` over the last ``seconds``, oldest first."""
        with self._lock:
            ring = self._rings.get(name)
            if ring is None:
                return []
            ts = self._ts
            return [(ts[i], ring[i]) for i in self._slots(seconds) if not math.isnan(ring[i])]

    def values(self, name: str, seconds: float) -> list[float]:
        """The values of ``name`` over the last ``seconds``, oldest first."""
        return [v for _, v in self.series(name, seconds)]

    def rate(self, name: str, seconds: float) -> float | None:
        """Per-second increase of counter ``name``; a drop counts as a reset (from 0)."""
        pts = self.series(name, seconds)
        if len(pts) < 2 or pts[-1][0] <= pts[0][0]:
            return None
        increase = 0.0
        for (_, prev), (_, cur) in itertools.pairwise(pts):
            increase += cur - prev if cur >= prev else cur
        return increase / (pts[-1][0] - pts[0][0])

    def kmsg(self, seconds: float) -> list[KmsgRecord]:
        """Kernel-log records that arrived within the last ``seconds`` (bounded)."""
        with self._lock:
            if self._latest is None:
                return []
            cutoff = self._latest.ts - seconds
            return [r for ts, r in self._kmsg if ts >= cutoff]

    def processes(self) -> tuple[ProcessInfo, ...] | None:
        """The latest process scan."""
        return self._processes
