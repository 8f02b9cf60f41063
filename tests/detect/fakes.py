"""A tiny in-memory WindowView and a /dev/kmsg fixture reader for detector tests."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

from healer.models import KmsgRecord, ProcessInfo, Sample

FIXTURES = Path(__file__).parent.parent / "fixtures" / "kmsg-classes"


class FakeWindow:
    """Keeps every sample; satisfies healer.detect.WindowView."""

    def __init__(self) -> None:
        self.samples: list[Sample] = []
        self._procs: tuple[ProcessInfo, ...] | None = None

    def append(self, sample: Sample) -> None:
        self.samples.append(sample)
        if sample.processes is not None:
            self._procs = sample.processes

    def latest(self) -> Sample | None:
        return self.samples[-1] if self.samples else None

    def series(self, name: str, seconds: float) -> list[tuple[float, float]]:
        if not self.samples:
            return []
        since = self.samples[-1].ts - seconds
        return [(s.ts, s.metrics[name]) for s in self.samples
                if s.ts >= since and name in s.metrics]

    def values(self, name: str, seconds: float) -> list[float]:
        return [v for _, v in self.series(name, seconds)]

    def rate(self, name: str, seconds: float) -> float | None:
        pts = self.series(name, seconds)
        if len(pts) < 2 or pts[-1][0] == pts[0][0]:
            return None
        return max(pts[-1][1] - pts[0][1], 0.0) / (pts[-1][0] - pts[0][0])

    def names(self) -> Iterable[str]:
        return set().union(*(s.metrics for s in self.samples[-5:])) if self.samples else set()

    def processes(self) -> Sequence[ProcessInfo] | None:
        return self._procs


def parse_kmsg(text: str) -> list[KmsgRecord]:
    """Records from /dev/kmsg-format lines ``PRI,SEQ,TS_US,FLAGS;message`` ('#' comments)."""
    out = []
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        prefix, _, message = line.partition(";")
        pri, seq, ts_us, *_ = prefix.split(",")
        out.append(KmsgRecord(seq=int(seq), priority=int(pri) & 7, facility=int(pri) >> 3,
                              ts_us=int(ts_us), message=message))
    return out


def fixture_records(name: str) -> list[KmsgRecord]:
    return parse_kmsg((FIXTURES / name).read_text(encoding="utf-8"))


def kmsg_line(message: str, seq: int = 1) -> KmsgRecord:
    return KmsgRecord(seq=seq, priority=4, ts_us=seq * 1000, message=message)
