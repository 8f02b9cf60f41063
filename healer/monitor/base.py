"""The collector protocol: one method, one cycle's worth of readings."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from healer.models import SamplePart


@runtime_checkable
class Collector(Protocol):
    """A source of metrics; ``collect`` raises ``CollectorError`` when it cannot read."""

    name: str

    def collect(self) -> SamplePart: ...
