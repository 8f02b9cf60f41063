"""Per-process verify metrics (``process.<pid>.<field>``) from the window's process scans.

Process metrics are not window series: the monitor scans processes every few seconds
and the window keeps only the latest scan. ``ProcessSeries`` turns the scans it is shown
into points, one per distinct scan, timestamped when first seen (the engine looks every
cycle, right after the scan was appended), so ``verify.compare`` can judge them like any
other series. Fields: ``fd_usage_ratio`` = num_fds / nofile_soft (/proc/PID/fd against
the soft RLIMIT_NOFILE, getrlimit(2)), plus the raw ProcessInfo numbers.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Sequence

from healer.models import ProcessInfo
from healer.verify.stats import Point

PROCESS_METRIC = re.compile(r"^process\.([0-9]{1,10})\.([a-z_]+)$")
RAW_FIELDS = ("num_fds", "nofile_soft", "nofile_hard", "rss_bytes", "cpu_percent")
MAX_POINTS = 720  # per metric: an hour of 5-second scans


def is_process_metric(name: str) -> bool:
    """True for ``process.<pid>.<field>`` names."""
    return PROCESS_METRIC.match(name) is not None


def process_value(info: ProcessInfo, field: str) -> float | None:
    """One process's value of ``field``; None when the scan could not read it."""
    if field == "fd_usage_ratio":
        if info.num_fds is None or not info.nofile_soft:
            return None
        return info.num_fds / info.nofile_soft
    if field in RAW_FIELDS:
        value = getattr(info, field)
        return None if value is None else float(value)
    return None


class ProcessSeries:
    """Points of per-process metrics, one per process scan seen (in memory only)."""

    def __init__(self) -> None:
        self._points: dict[str, deque[Point]] = {}
        self._seen: dict[str, object] = {}  # name -> the scan already turned into a point

    def observe(self, name: str, scan: Sequence[ProcessInfo] | None, ts: float) -> None:
        """Add the point ``scan`` gives ``name``, unless this scan was already seen."""
        m = PROCESS_METRIC.match(name)
        if m is None or scan is None or self._seen.get(name) is scan:
            return
        self._seen[name] = scan
        pid, field = int(m.group(1)), m.group(2)
        for info in scan:
            if info.pid == pid:
                value = process_value(info, field)
                if value is not None:
                    self._points.setdefault(name, deque(maxlen=MAX_POINTS)).append((ts, value))
                return

    def series(self, name: str, since: float, until: float) -> list[Point]:
        """The points of ``name`` with since <= t <= until, oldest first."""
        return [p for p in self._points.get(name, ()) if since <= p[0] <= until]
