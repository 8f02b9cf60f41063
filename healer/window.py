"""The metric window: the last hour of samples at full resolution, in memory.

Memory-lean by design. One shared ring of timestamps, and per metric name a ring cut into
one-minute chunks (at 1 Hz). Most host metrics barely move: on a quiet 2-core host about
500 of 650 (vmstat, snmp and sockstat counters, limits, totals) stay flat for minutes. A
chunk whose slots all hold one value is kept as that single float; only a chunk that
changed is an ``array('d')`` (8 bytes a slot). An hour of the real metric set then takes
a few MB instead of 8 bytes x 3600 slots x every name (about 19 MB). A metric missing
from a sample reads as NaN there and is skipped by every query; a name with no point
left in the window is dropped. Kernel-log records are kept in a bounded deque.
"""

from __future__ import annotations

import itertools
import math
import threading
from array import array
from collections import deque
from collections.abc import Mapping

from healer.models import KmsgRecord, ProcessInfo, Sample

NAN = float("nan")  # this very object marks an all-missing chunk (compared by identity)
CHUNK = 60  # slots per chunk: one minute at 1 Hz, the rollup granularity too


class MetricWindow:
    """A ring of ``capacity_seconds / interval`` samples; safe for one writer, many readers."""

    def __init__(self, capacity_seconds: float = 3600.0, interval: float = 1.0,
                 kmsg_capacity: int = 20_000) -> None:
        self.size = max(2, math.ceil(capacity_seconds / interval))
        self._ts = array("d", [NAN]) * self.size
        self._nchunks = -(-self.size // CHUNK)
        self._rings: dict[str, list[float | array[float]]] = {}
        self._head = 0  # next slot to write
        self._count = 0
        self._latest: Sample | None = None
        self._processes: tuple[ProcessInfo, ...] | None = None
        self._kmsg: deque[tuple[float, KmsgRecord]] = deque(maxlen=kmsg_capacity)
        self._slot_cache: dict[float, list[int]] = {}  # seconds -> slots, until next append
        self._k = -1  # the chunk being written; names split by how it holds them:
        self._flat: dict[str, float] = {}  # one value so far in chunk _k
        self._open: dict[str, array[float]] = {}  # an array in chunk _k
        self._lock = threading.Lock()

    def _chunk_len(self, k: int) -> int:
        return min(CHUNK, self.size - k * CHUNK)

    def append(self, sample: Sample) -> None:
        """Add one sample, overwriting the oldest when full."""
        with self._lock:
            i = self._head
            self._ts[i] = sample.ts
            k, j = divmod(i, CHUNK)
            if k != self._k:
                self._enter_chunk(k)
            metrics = sample.metrics
            for name in metrics.keys() - self._rings.keys():
                self._rings[name] = [NAN] * self._nchunks
                self._flat[name] = NAN
            self._write(metrics, k, j)
            if j == self._chunk_len(k) - 1:
                self._close_chunk(k)
            self._head = (i + 1) % self.size
            self._count = min(self._count + 1, self.size)
            self._slot_cache.clear()
            self._latest = sample
            if sample.processes is not None:
                self._processes = sample.processes
            self._kmsg.extend((sample.ts, r) for r in sample.kmsg)

    def _enter_chunk(self, k: int) -> None:
        """Sort the names by how chunk ``k`` holds them (once a chunk, not once a sample)."""
        self._k = k
        self._flat, self._open = {}, {}
        for name, chunks in self._rings.items():
            c = chunks[k]
            if isinstance(c, float):
                self._flat[name] = c
            else:
                self._open[name] = c

    def _write(self, metrics: Mapping[str, float], k: int, j: int) -> None:
        get, flat = metrics.get, self._flat
        moved = [n for n, c in flat.items() if get(n, NAN) != c]  # NaN != NaN: checked below
        for name in moved:
            c, v = flat[name], get(name, NAN)
            if c != c and v != v:
                continue  # still missing
            del flat[name]
            arr = self._open[name] = self._rings[name][k] = array("d", [c]) * self._chunk_len(k)
            arr[j] = v
        for name, arr in self._open.items():
            arr[j] = get(name, NAN)

    def _close_chunk(self, k: int) -> None:
        """Chunk ``k`` is whole again: one value becomes one float; all-missing names go."""
        length = self._chunk_len(k)
        for name, arr in self._open.items():
            chunks, first = self._rings[name], arr[0]
            if arr.count(first) == length:
                chunks[k] = first
            elif first != first and all(x != x for x in arr):
                chunks[k] = NAN
                if chunks.count(NAN) == self._nchunks:  # identity: no point left at all
                    del self._rings[name]
        self._k = -1  # the next append enters a fresh chunk

    def latest(self) -> Sample | None:
        """The newest sample, or None before the first."""
        return self._latest

    def names(self) -> list[str]:
        """Every metric name with a point in the window, sorted."""
        with self._lock:
            return sorted(self._rings)

    def _slots(self, seconds: float) -> list[int]:
        """Slot indexes, oldest first, whose timestamp is within ``seconds`` of the newest."""
        cached = self._slot_cache.get(seconds)
        if cached is not None:
            return cached
        out: list[int] = []
        if self._count:
            newest = self._ts[(self._head - 1) % self.size]
            cutoff = newest - seconds
            for k in range(1, self._count + 1):  # newest backwards: short queries stay cheap
                i = (self._head - k) % self.size
                if self._ts[i] < cutoff:
                    break
                out.append(i)
            out.reverse()
        self._slot_cache[seconds] = out
        return out

    def series(self, name: str, seconds: float) -> list[tuple[float, float]]:
        """``(ts, value)`` points of ``name`` over the last ``seconds``, oldest first."""
        with self._lock:
            chunks = self._rings.get(name)
            if chunks is None:
                return []
            ts = self._ts
            out = []
            for i in self._slots(seconds):
                c = chunks[i // CHUNK]
                v = c if isinstance(c, float) else c[i % CHUNK]
                if v == v:  # not NaN
                    out.append((ts[i], v))
            return out

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
