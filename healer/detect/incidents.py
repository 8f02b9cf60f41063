"""Incidents from detect events: one per fingerprint (playbook + scope + subject), damped
against flapping.

A pure state machine over events and a clock; persistence goes through a small
``IncidentSink`` (the store's repository fits through ``RepositorySink``).

    (none) --fire--> open --fire--> open (updated: count += n, last_seen, evidence)
    open --clear, quiet for clear_seconds--> resolved
    resolved --fire within cooloff_seconds--> open again, same id (reopened)
    resolved --fire after the cool-off--> a new incident (opened)
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal, Protocol, runtime_checkable

from healer.detect.events import DetectEvent
from healer.models import Incident, IncidentStatus

log = logging.getLogger("healer.detect")
_RANK = {"info": 0, "warning": 1, "critical": 2}


class IncidentSink(Protocol):
    """Where incidents persist; the tracker never keeps the only copy."""

    def find(self, playbook: str, scope: str, subject: str = "") -> Incident | None:
        """The newest incident with this fingerprint, open or resolved."""
        ...

    def open(self, incident: Incident) -> Incident:
        """Insert; returns the incident with its id."""
        ...

    def update(self, incident: Incident) -> Incident:
        """Save count, last_seen, evidence, status and severity."""
        ...


class IncidentRepository(Protocol):
    """The store repository's incident methods (healer/store/repository.py)."""

    def find_incident(self, playbook: str, scope: str, *, subject: str = "",
                      status: IncidentStatus | None = None) -> Incident | None: ...

    def open_incident(self, incident: Incident) -> Incident: ...

    def update_incident(self, incident: Incident) -> Incident: ...


@runtime_checkable
class _RepositoryLike(Protocol):
    def find_incident(self, playbook: str, scope: str, *, subject: str = "",
                      status: IncidentStatus | None = None) -> Incident | None: ...


class RepositorySink:
    """Adapts the store repository to ``IncidentSink``."""

    def __init__(self, repo: IncidentRepository) -> None:
        self.repo = repo

    def find(self, playbook: str, scope: str, subject: str = "") -> Incident | None:
        return self.repo.find_incident(playbook, scope, subject=subject)

    def open(self, incident: Incident) -> Incident:
        return self.repo.open_incident(incident)

    def update(self, incident: Incident) -> Incident:
        return self.repo.update_incident(incident)


class MemorySink:
    """An in-memory sink (tests, and runs without a store)."""

    def __init__(self) -> None:
        self.incidents: list[Incident] = []

    def find(self, playbook: str, scope: str, subject: str = "") -> Incident | None:
        found = [i for i in self.incidents
                 if (i.playbook, i.scope, i.subject) == (playbook, scope, subject)]
        return found[-1] if found else None

    def open(self, incident: Incident) -> Incident:
        stored = incident.model_copy(update={"id": len(self.incidents) + 1})
        self.incidents.append(stored)
        return stored

    def update(self, incident: Incident) -> Incident:
        self.incidents = [incident if i.id == incident.id else i for i in self.incidents]
        return incident


@dataclass(frozen=True)
class IncidentChange:
    kind: Literal["opened", "updated", "resolved", "reopened"]
    incident: Incident


@dataclass
class _State:
    incident: Incident
    clear_since: float | None = None
    resolved_at: float | None = None


def _dt(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, tz=UTC)


@dataclass
class IncidentTracker:
    """Turns ``DetectEvent``s into ``IncidentChange``s; call ``apply`` once per cycle."""

    host_id: str
    clock: Callable[[], float] = time.time
    cooloff_seconds: float = 300.0
    clear_seconds: float = 60.0
    # An IncidentSink, or the store repository itself (adapted with RepositorySink).
    sink: IncidentSink | IncidentRepository = field(default_factory=MemorySink)
    _states: dict[tuple[str, str, str], _State] = field(default_factory=dict)

    def __post_init__(self) -> None:
        sink = self.sink
        self._sink: IncidentSink = (
            RepositorySink(sink) if isinstance(sink, _RepositoryLike) else sink)

    def resume(self, incidents: Iterable[Incident]) -> None:
        """Take up the incidents a previous run left open; call it before the first
        ``apply``. The detector starts with no memory of what fired, so it never reports
        such an incident clear: each is watched as if its signals had cleared now, and
        resolves after ``clear_seconds`` unless it fires again (a fault still there fires
        on the detector's first cycles). An alert's incident is left to its alert: only
        Alertmanager's resolved notification clears it."""
        now = self.clock()
        for inc in incidents:
            if inc.status == IncidentStatus.OPEN and not inc.from_alert \
                    and inc.host_id == self.host_id:
                self._states.setdefault((inc.playbook, inc.scope, inc.subject),
                                        _State(inc, clear_since=now))

    def apply(self, events: Iterable[DetectEvent]) -> list[IncidentChange]:
        """Apply this cycle's events, then resolve what stayed clear long enough."""
        changes: list[IncidentChange] = []
        for event in events:
            key = (event.playbook_id, event.scope, event.subject)
            if event.kind == "fire":
                changes.append(self._fire(key, event))
            else:
                state = self._state(key)
                if state and state.incident.status == IncidentStatus.OPEN \
                        and state.clear_since is None:
                    state.clear_since = event.ts
        changes += self._expire(self.clock())
        return changes

    def _state(self, key: tuple[str, str, str]) -> _State | None:
        """The key's state, loaded from the sink the first time (an incident opened before a
        restart, or by an alert that now resolves)."""
        state = self._states.get(key)
        if state is None:
            found = self._sink.find(*key)
            if found is not None:
                resolved_at = found.last_seen.timestamp() \
                    if found.status == IncidentStatus.RESOLVED else None
                state = self._states[key] = _State(found, resolved_at=resolved_at)
        return state

    def _fire(self, key: tuple[str, str, str], event: DetectEvent) -> IncidentChange:
        state = self._state(key)
        if state is not None and state.incident.status == IncidentStatus.OPEN:
            state.clear_since = None
            state.incident = self._sink.update(self._merge(state.incident, event))
            return IncidentChange("updated", state.incident)
        if (state is not None and state.resolved_at is not None
                and event.ts - state.resolved_at <= self.cooloff_seconds):
            merged = self._merge(state.incident, event).model_copy(
                update={"status": IncidentStatus.OPEN})
            state.incident = self._sink.update(merged)
            state.clear_since = state.resolved_at = None
            return IncidentChange("reopened", state.incident)
        incident = self._sink.open(Incident(
            host_id=self.host_id, playbook=event.playbook_id, scope=event.scope,
            subject=event.subject, severity=event.severity, count=max(event.count, 1),
            first_seen=_dt(event.ts), last_seen=_dt(event.ts), evidence=event.evidence))
        self._states[key] = _State(incident)
        return IncidentChange("opened", incident)

    @staticmethod
    def _merge(incident: Incident, event: DetectEvent) -> Incident:
        severity = max(incident.severity, event.severity, key=lambda s: _RANK.get(s, 1))
        return incident.model_copy(update={
            "count": incident.count + event.count,
            "last_seen": max(incident.last_seen, _dt(event.ts)),
            "evidence": event.evidence,
            "severity": severity,
        })

    def _expire(self, now: float) -> list[IncidentChange]:
        changes = []
        for key, state in list(self._states.items()):
            inc = state.incident
            if inc.status == IncidentStatus.OPEN and state.clear_since is not None \
                    and now - state.clear_since >= self.clear_seconds:
                state.incident = self._sink.update(inc.model_copy(
                    update={"status": IncidentStatus.RESOLVED}))
                state.clear_since, state.resolved_at = None, now
                changes.append(IncidentChange("resolved", state.incident))
            elif state.resolved_at is not None and now - state.resolved_at > self.cooloff_seconds:
                del self._states[key]  # past the cool-off: a new firing opens a new incident
        return changes
