"""The fleet's switches and its periodic bookkeeping: the kill switch, breakers, systemic
fleet incidents, rollouts that went quiet, what still wants a page, and alerts.

Every change an agent must learn of goes out as an event (healer.store.repo_events) in
the same transaction; the periodic jobs (healer.control) call the ``tick`` methods on
one replica at a time.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from guardrails.fleet import FAILED, FleetState, Remedy, Rollout, ended, systemic
from guardrails.policy import FleetPolicy
from healer.models import Incident, IncidentStatus
from healer.store.fleet_types import (
    AlertIn,
    BreakerRow,
    FleetIncidentRow,
    FleetStatus,
    RolloutRow,
)
from healer.store.repo_base import _insert, get_row, update_row
from healer.store.repo_events import EventsRepo, emit, xact_lock
from healer.store.repo_hosts import FLEET_WIDE
from healer.store.repo_journal import _incident
from healer.store.repo_leases import (
    LeasesRepo,
    live_rollout,
    open_systemic,
    remedy_lock,
    save_rollout,
    trip,
)
from healer.store.rows import LLMAnswerRow
from healer.store.tables import (
    BreakerTable,
    FleetIncidentTable,
    FleetPauseTable,
    HostTable,
    IncidentTable,
    LeaseTable,
    LlmAnswerTable,
    ReportTable,
    RolloutTable,
)

KEEP_EVENTS = timedelta(days=1)  # an agent away longer starts again from the newest


def _breaker(r: sa.Row[Any]) -> BreakerRow:
    return BreakerRow(remedy=r.remedy, tripped_at=r.tripped_at, failures=r.failures,
                      reset_at=r.reset_at, reset_by=r.reset_by)


def _fleet_incident(r: sa.Row[Any]) -> FleetIncidentRow:
    return FleetIncidentRow(id=r.id, kind=r.kind, fingerprint=r.fingerprint, status=r.status,
                            hosts=r.hosts, reporting=r.reporting, opened_at=r.opened_at,
                            resolved_at=r.resolved_at)


class FleetRepo(LeasesRepo, EventsRepo):
    """The kill switch, fleet status, periodic evaluation and alert incidents."""

    # -- the kill switch ------------------------------------------------------------------
    def fleet_pause(self, remedy: Remedy | None, actor: str, reason: str = "") -> bool:
        """Stop every automatic action fleet-wide (or of one remedy); False if it was."""
        target = FLEET_WIDE if remedy is None else remedy.key
        now = self.now()
        with self._tx() as s:
            if get_row(s, FleetPauseTable, target) is not None:
                return False
            s.execute(sa.insert(FleetPauseTable).values(target=target, paused_by=actor,
                                                        reason=reason, at=now))
            payload: dict[str, object] = {"type": "pause"}
            if remedy is not None:
                payload["remedy"] = remedy.model_dump()
            emit(s, "pause", payload, None, now)
            self._audit(s, actor, "fleet.paused", f"fleet:{target}", {"reason": reason})
            return True

    def fleet_resume(self, remedy: Remedy | None, actor: str) -> list[str]:
        """Lift the fleet-wide pause and resolve the open systemic fleet incidents (a person
        looked); with a remedy, lift its pause and close its breaker. Returns what changed."""
        now = self.now()
        done: list[str] = []
        with self._tx() as s:
            target = FLEET_WIDE if remedy is None else remedy.key
            if get_row(s, FleetPauseTable, target) is not None:
                s.execute(sa.delete(FleetPauseTable).where(FleetPauseTable.c.target == target))
                done.append("pause lifted")
            if remedy is None:
                done += self._resolve_systemic(s, actor, now)
            else:
                done += self._reset_breaker(s, remedy, actor, now)
            if done:
                emit(s, "resume", {"type": "resume",
                                   "remedy": None if remedy is None else remedy.model_dump()},
                     None, now)
                self._audit(s, actor, "fleet.resumed", f"fleet:{target}", {"done": done})
        return done

    def _resolve_systemic(self, s: sa.Connection, actor: str, now: datetime) -> list[str]:
        rows = sorted(s.execute(sa.update(FleetIncidentTable)
                                .where(FleetIncidentTable.c.status == "open")
                                .values(status="resolved", open_key=None, resolved_at=now,
                                        resolved_by=actor)
                                .returning(FleetIncidentTable.c.id,
                                           FleetIncidentTable.c.fingerprint)),
                      key=lambda r: r.id)
        return [f"fleet incident {r.id} ({r.fingerprint}) resolved" for r in rows]

    def _reset_breaker(self, s: sa.Connection, remedy: Remedy, actor: str,
                       now: datetime) -> list[str]:
        xact_lock(s, remedy_lock(remedy.key))
        row = get_row(s, BreakerTable, remedy.key)
        if row is None or row.tripped_at is None:
            return []
        update_row(s, BreakerTable, remedy.key, tripped_at=None, reset_at=now, reset_by=actor)
        emit(s, "breaker", {"type": "breaker", "remedy": remedy.model_dump(), "open": False},
             None, now)
        return [f"breaker of {remedy.key} closed"]

    def fleet_status(self, policy: FleetPolicy) -> FleetStatus:
        """The switches and what the fleet is doing now."""
        since = self.now() - timedelta(seconds=policy.reporting_seconds)
        with self._tx(write=False) as s:
            pauses = set(s.scalars(sa.select(FleetPauseTable.c.target)))
            hosts = s.execute(sa.select(HostTable.c.host_id, HostTable.c.paused,
                                        HostTable.c.last_heartbeat_at)).all()
            rollouts = list(s.execute(sa.select(RolloutTable)
                                      .where(RolloutTable.c.live_key.is_not(None))
                                      .order_by(RolloutTable.c.id)))
            breakers = list(s.execute(sa.select(BreakerTable)
                                      .where(BreakerTable.c.tripped_at.is_not(None))))
            incidents = list(s.execute(sa.select(FleetIncidentTable)
                                       .where(FleetIncidentTable.c.status == "open")))
        return FleetStatus(
            paused=FLEET_WIDE in pauses, paused_remedies=sorted(pauses - {FLEET_WIDE}),
            paused_hosts=sorted(h for h, paused, _ in hosts if paused), hosts=len(hosts),
            reporting_hosts=sum(1 for *_, beat in hosts if beat is not None and beat >= since),
            rollouts=[RolloutRow(id=r.id, rollout=Rollout.model_validate(r.state),
                                 updated_at=r.updated_at)
                      for r in rollouts],
            in_flight=self.live_leases(), breakers=[_breaker(b) for b in breakers],
            fleet_incidents=[_fleet_incident(i) for i in incidents])

    # -- periodic evaluation (one replica at a time) --------------------------------------
    def evaluate_systemic(self, policy: FleetPolicy) -> list[str]:
        """Open a systemic fleet incident for every fingerprint the rule holds for now;
        returns the fingerprints newly opened."""
        now = self.now()
        since = now - timedelta(seconds=policy.systemic_window_seconds)
        q = (sa.select(IncidentTable.c.fleet_fingerprint,
                       sa.func.count(sa.distinct(IncidentTable.c.host_id)))
             .where(IncidentTable.c.first_seen >= since, IncidentTable.c.fleet_fingerprint != "")
             .group_by(IncidentTable.c.fleet_fingerprint)
             .having(sa.func.count(sa.distinct(IncidentTable.c.host_id))
                     >= policy.systemic_min_hosts))
        opened: list[str] = []
        with self._tx() as s:
            for fingerprint, _ in s.execute(q).all():
                counts = self.fleet_counts(s, fingerprint, policy)
                state = FleetState(reporting_hosts=counts[0], recent_hosts=counts[2])
                if systemic(state, policy) and open_systemic(s, fingerprint, counts, now,
                                                            self.host_id):
                    opened.append(fingerprint)
        return opened

    def evaluate_breakers(self, policy: FleetPolicy) -> list[str]:
        """Trip every closed breaker whose failures reached K (a release trips it at once;
        this catches what a crash between the two left behind); returns those tripped."""
        since = self.now() - timedelta(seconds=policy.breaker_window_seconds)
        q = (sa.select(LeaseTable.c.remedy).where(LeaseTable.c.outcome.in_(sorted(FAILED)),
                                                LeaseTable.c.released_at >= since)
             .group_by(LeaseTable.c.remedy)
             .having(sa.func.count(sa.distinct(LeaseTable.c.host_id)) >= policy.breaker_failures))
        with self._tx(write=False) as s:
            candidates = list(s.scalars(q))
        tripped: list[str] = []
        for key in candidates:
            with self._tx() as s:
                xact_lock(s, remedy_lock(key))
                failed = self.failed_hosts(s, key, policy)
                if len(failed) >= policy.breaker_failures and trip(
                        s, Remedy.parse(key), failed, self.now(), self.host_id):
                    tripped.append(key)
        return tripped

    def end_quiet_rollouts(self, policy: FleetPolicy) -> list[str]:
        """End the rollouts whose fingerprint no host has had open for
        ``rollout_quiet_seconds``; returns their remedies."""
        now = self.now()
        quiet_since = now - timedelta(seconds=policy.rollout_quiet_seconds)
        last_open = (sa.select(sa.func.max(IncidentTable.c.last_seen))
                     .where(IncidentTable.c.fleet_fingerprint == RolloutTable.c.fingerprint)
                     .scalar_subquery())
        still_open = sa.exists().where(
            IncidentTable.c.fleet_fingerprint == RolloutTable.c.fingerprint,
                                       IncidentTable.c.status == IncidentStatus.OPEN.value)
        q = sa.select(RolloutTable.c.remedy).where(
            RolloutTable.c.live_key.is_not(None), ~still_open,
            sa.or_(last_open.is_(None), last_open < quiet_since),
            RolloutTable.c.started_at < quiet_since)
        with self._tx(write=False) as s:
            remedies = list(s.scalars(q))
        for key in remedies:
            with self._tx() as s:
                xact_lock(s, remedy_lock(key))
                row, rollout = live_rollout(s, key)
                if rollout is not None:
                    save_rollout(s, row, ended(rollout, "quiet", now), now)
        return remedies

    def unpaged(self) -> tuple[list[FleetIncidentRow], list[BreakerRow]]:
        """Open fleet incidents and tripped breakers no page has gone out for yet."""
        with self._tx(write=False) as s:
            incidents = s.execute(sa.select(FleetIncidentTable).where(
                FleetIncidentTable.c.status == "open", FleetIncidentTable.c.paged_at.is_(None)))
            breakers = s.execute(sa.select(BreakerTable).where(
                BreakerTable.c.tripped_at.is_not(None), BreakerTable.c.paged_at.is_(None)))
            return [_fleet_incident(i) for i in incidents], [_breaker(b) for b in breakers]

    def mark_paged(self, fleet_incident: int | None = None, breaker: str | None = None) -> None:
        """Record that the page about a fleet incident or a breaker went out (queued)."""
        now = self.now()
        with self._tx() as s:
            if fleet_incident is not None:
                s.execute(sa.update(FleetIncidentTable)
                          .where(FleetIncidentTable.c.id == fleet_incident).values(paged_at=now))
            if breaker is not None:
                s.execute(sa.update(BreakerTable).where(BreakerTable.c.remedy == breaker)
                          .values(paged_at=now))

    def prune_fleet(self) -> int:
        """Drop events older than a day and reports applied more than a day ago."""
        before = self.now() - KEEP_EVENTS
        pruned = self.prune_events(before)
        applied = (sa.select(HostTable.c.applied_seq)
                   .where(HostTable.c.host_id == ReportTable.c.host_id).scalar_subquery())
        with self._tx() as s:
            done = s.execute(sa.delete(ReportTable).where(ReportTable.c.received_at < before,
                                                          ReportTable.c.seq <= applied))
            return pruned + int(done.rowcount)

    # -- the fleet's LLM answers -----------------------------------------------------------
    def deliver_diagnosis(self, answer: LLMAnswerRow) -> bool:
        """Send one stored LLM answer to its incident's host as a ``diagnosis`` event, and
        mark it taken, in one transaction; False for a failure record (nothing to send)."""
        now = self.now()
        with self._tx() as s:
            incident = get_row(s, IncidentTable, answer.incident_id)
            sent = incident is not None and answer.answer is not None
            if incident is not None and answer.answer is not None:
                emit(s, "diagnosis", {"type": "diagnosis",
                                      "fleet_fingerprint": incident.fleet_fingerprint,
                                      "incident_id": incident.source_id,
                                      "control_plane_id": incident.id,
                                      "model": answer.model,
                                      "answer": answer.answer}, incident.host_id, now)
            s.execute(sa.update(LlmAnswerTable).where(LlmAnswerTable.c.id == answer.id)
                      .values(taken_at=now))
        return sent

    # -- alerts ----------------------------------------------------------------------------
    def ingest_alert(self, alert: AlertIn) -> tuple[Incident, bool]:
        """Open (or resolve) the incident of one alert on its host; True when that changed
        something, and then the host's agent hears of it. Duplicates change nothing, on
        one replica or several at once (the unique (host, alert_key))."""
        now = self.now()
        status = IncidentStatus.OPEN if alert.firing else IncidentStatus.RESOLVED
        row = {"host_id": alert.host_id, "playbook": alert.playbook, "scope": alert.scope,
               "subject": alert.subject, "status": status.value, "severity": alert.severity,
               "count": 1, "first_seen": alert.starts_at,
               "last_seen": alert.ends_at or alert.starts_at, "evidence": alert.evidence,
               "diagnosis": None, "fleet_fingerprint": alert.fingerprint, "source_id": None,
               "alert_key": alert.alert_key}
        with self._tx() as s:
            stmt = _insert(s.dialect.name, IncidentTable).on_conflict_do_nothing(
                index_elements=["host_id", "alert_key"])
            new = s.execute(stmt.returning(IncidentTable.c.id), row).first()
            changed = new is not None and alert.firing
            if new is None and not alert.firing:
                changed = s.execute(
                    sa.update(IncidentTable)
                    .where(IncidentTable.c.host_id == alert.host_id,
                           IncidentTable.c.alert_key == alert.alert_key,
                           IncidentTable.c.status == IncidentStatus.OPEN.value)
                    .values(status=IncidentStatus.RESOLVED.value, last_seen=now)
                    .returning(IncidentTable.c.id)).first() is not None
            found = s.execute(sa.select(IncidentTable).where(
                IncidentTable.c.host_id == alert.host_id,
                IncidentTable.c.alert_key == alert.alert_key)).one()
            incident = _incident(found)
            if changed:
                emit(s, "incident", {"type": "incident",
                                     "incident": incident_event(incident, alert)},
                     alert.host_id, now)
                self._audit(s, "alertmanager", "alert.firing" if alert.firing
                            else "alert.resolved", f"incident:{incident.id}",
                            {"host": alert.host_id, "alert_key": alert.alert_key})
        return incident, changed


def incident_event(incident: Incident, alert: AlertIn) -> dict[str, object]:
    """What an ``incident`` event carries: the alert (its name, labels, ``firing`` or
    ``resolved``, fleet fingerprint) for the agent to match against its own playbooks, and
    the control plane's incident (``id``: the agent may report it back as
    ``control_plane_id``)."""
    return {"id": incident.id, "alertname": alert.alertname, "labels": alert.labels,
            "status": "firing" if alert.firing else "resolved",
            "fleet_fingerprint": alert.fingerprint, "playbook": incident.playbook,
            "severity": incident.severity, "subject": incident.subject,
            "starts_at": incident.first_seen.isoformat()}
