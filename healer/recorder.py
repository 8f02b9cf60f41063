"""Full-resolution samples around incidents: ``RawRecorder``.

Every metric is persisted as per-minute rollups; around an incident its own metrics are
kept at full resolution too, so the dashboard's charts and a verification resumed after a
restart read every point, not minute averages. An incident's metrics are the series its
evidence holds and the ones its playbook's changes are judged on (the verify target, the
guards and the SLOs). Recording starts when the incident opens, with the window's last
``before`` seconds, and stops ``after`` seconds past its resolution; points are buffered and
written in one insert every ``flush`` seconds. Nothing else is recorded: the other ~650
metrics of each cycle go only into the rollups. ``Settings.raw_retention_minutes`` prunes.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from healer.errors import HealerError
from healer.logs import logfmt
from healer.models import Incident, Sample, Slo
from healer.verify.labels import spec_for
from playbooks.loader import Library

log = logging.getLogger("healer.recorder")

# Before the opening: a verification baseline (30 s) and the longest detection windows
# (``for``, rate and trend spans of a few minutes) that led up to it.
BEFORE_SECONDS = 300.0
# After the resolution: a change judged late (its after-window and settle time) and the
# recovery itself stay visible on the incident's charts.
AFTER_SECONDS = 300.0
FLUSH_SECONDS = 10.0  # one insert per this many seconds of samples, never one per cycle


class RawSink(Protocol):
    """Where raw samples go (``healer.store.repository.Repository``)."""

    def add_raw_samples(self, samples: Sequence[Sample]) -> None: ...


class History(Protocol):
    """The in-memory metric window (``healer.window.MetricWindow``)."""

    def series(self, name: str, seconds: float) -> list[tuple[float, float]]: ...


@dataclass
class _Watch:
    names: frozenset[str]
    until: float | None = None  # epoch seconds; None while the incident is open


class RawRecorder:
    """Feed it each cycle's sample (``add``) and each incident change (``incident``)."""

    def __init__(self, sink: RawSink, history: History, library: Library,
                 slos: tuple[Slo, ...] = (), *, before: float = BEFORE_SECONDS,
                 after: float = AFTER_SECONDS, flush: float = FLUSH_SECONDS) -> None:
        self._sink, self._history, self._library, self._slos = sink, history, library, slos
        self._before, self._after, self._flush_every = before, after, flush
        self._watches: dict[int, _Watch] = {}
        self._names: frozenset[str] = frozenset()  # the union of the watches' names
        self._buffer: dict[float, dict[str, float]] = {}  # ts -> name -> value
        self._flushed_at: float | None = None

    @property
    def recording(self) -> frozenset[str]:
        """The metrics recorded at full resolution now."""
        return self._names

    def incident(self, kind: str, incident: Incident, now: float) -> None:
        """An incident changed: start watching it (with the window before it), or count
        down its margin once it resolves."""
        if incident.id is None:
            return
        watch = self._watches.get(incident.id)
        if kind == "resolved":
            if watch is not None:
                watch.until = now + self._after
            return
        if watch is not None and watch.until is None:
            return  # an update of an incident already recorded
        names = self.metrics_of(incident)
        self._watches[incident.id] = _Watch(names)
        self._names = frozenset().union(*(w.names for w in self._watches.values()))
        for name in names:  # a restart's open incident: whatever the window holds
            for ts, value in self._history.series(name, self._before):
                self._buffer.setdefault(ts, {})[name] = value

    def metrics_of(self, incident: Incident) -> frozenset[str]:
        """The incident's evidence series and what its changes would be judged on."""
        names = set(incident.evidence.metrics)
        spec = spec_for(self._library.get(incident.playbook), incident, None, self._slos)
        if spec is not None:
            names.update(spec.metrics)
            for slo in spec.slos:
                names.update(n for n in (slo.metric, slo.objective_metric) if n)
        return frozenset(names)

    def add(self, sample: Sample) -> None:
        """Buffer this sample's recorded metrics; write the buffer every ``flush`` seconds."""
        if self._names:
            values = {n: v for n in self._names if (v := sample.metrics.get(n)) is not None}
            if values:
                self._buffer.setdefault(sample.ts, {}).update(values)
        self._expire(sample.ts)
        if self._flushed_at is None:
            self._flushed_at = sample.ts
        if sample.ts - self._flushed_at >= self._flush_every:
            self.flush()
            self._flushed_at = sample.ts

    def _expire(self, now: float) -> None:
        done = [i for i, w in self._watches.items() if w.until is not None and w.until <= now]
        for incident_id in done:
            del self._watches[incident_id]
        if done:
            self._names = frozenset().union(*(w.names for w in self._watches.values()))

    def flush(self) -> None:
        """Write what is buffered; a store error drops it (the rollups still hold it)."""
        if not self._buffer:
            return
        samples = [Sample(ts=ts, metrics=m) for ts, m in sorted(self._buffer.items())]
        self._buffer = {}
        try:
            self._sink.add_raw_samples(samples)
        except HealerError as exc:
            log.warning(logfmt(msg="raw samples not stored", samples=len(samples), error=exc))
