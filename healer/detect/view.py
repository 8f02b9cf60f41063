"""What detectors may read from the metric window (``healer.window.MetricWindow`` satisfies it)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Protocol

from healer.models import ProcessInfo, Sample


class WindowView(Protocol):
    """A read-only view of the last hour of samples."""

    def latest(self) -> Sample | None:
        """The newest sample, or None when empty."""
        ...

    def series(self, name: str, seconds: float) -> list[tuple[float, float]]:
        """``(ts, value)`` points of one metric over the last ``seconds``."""
        ...

    def values(self, name: str, seconds: float) -> list[float]:
        """The values of one metric over the last ``seconds``."""
        ...

    def rate(self, name: str, seconds: float) -> float | None:
        """A counter's per-second rate over the last ``seconds``; None without two points."""
        ...

    def names(self) -> Iterable[str]:
        """Every metric name the window holds."""
        ...

    def processes(self) -> Sequence[ProcessInfo] | None:
        """The most recent process scan (scans run less often than samples)."""
        ...
