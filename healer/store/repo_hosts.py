"""A control plane's hosts: their tokens and heartbeats, and the reports they send.

Reports are upserted on (host_id, seq) and applied strictly in ``seq`` order under the
host row's lock, whichever replica receives them: a replay changes nothing, and a report
after a gap waits, stored, until the gap fills. Applying one mirrors the agent's incident
or action record here (``source_id`` is the agent's own id), so the API, the dashboard
and the fleet's rules see every host's journal.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
from pydantic import ValidationError

from guardrails.actions import action_to_dict
from guardrails.fleet import fleet_fingerprint
from healer.errors import StoreError
from healer.logs import logfmt
from healer.models import Diagnosis, Evidence, IncidentStatus, Verification
from healer.store.credentials import hash_token
from healer.store.errors import AlreadyExists, NotFound
from healer.store.fleet_types import (
    Heartbeat,
    HostRow,
    ReportBatch,
    ReportedAction,
    ReportedIncident,
)
from healer.store.repo_base import RepoBase, add_row, get_row, insert_row, update_row
from healer.store.repo_events import emit
from healer.store.tables import (
    ActionTable,
    FleetPauseTable,
    HostTable,
    IncidentTable,
    ReportTable,
    TokenTable,
)

log = logging.getLogger("healer.store.fleet")
HOST_ROLE = "host"
FLEET_WIDE = "*"  # the fleet_pauses target of the fleet-wide kill switch
APPLY_BATCH = 1000

# A heartbeat, built once (every host sends one every 5 s: the control plane's most frequent
# write): one UPDATE ... RETURNING the host's switch, then the fleet-wide one.
_BEAT = {c: sa.bindparam(f"beat_{c}", type_=HostTable.c[c].type)
         for c in ("labels", "agent_version", "mode", "last_heartbeat_at", "clock_skew_seconds",
                   "reported_seq")}
HEARTBEAT = (sa.update(HostTable).where(HostTable.c.host_id == sa.bindparam("beat_host"))
             .values(**_BEAT).returning(HostTable.c.paused))
FLEET_WIDE_PAUSED = sa.exists().where(FleetPauseTable.c.target == FLEET_WIDE)
FLEET_PAUSED = sa.select(FLEET_WIDE_PAUSED)
# A report batch's reads, built once too (parameters ``host``, and ``applied`` or ``source``).
HOST_FOR_UPDATE = (sa.select(HostTable).where(HostTable.c.host_id == sa.bindparam("host"))
                   .with_for_update())
REPORTS_AFTER = (sa.select(ReportTable)
                 .where(ReportTable.c.host_id == sa.bindparam("host"),
                        ReportTable.c.seq > sa.bindparam("applied"))
                 .order_by(ReportTable.c.seq).limit(APPLY_BATCH))
_INCIDENT_OF = (IncidentTable.c.host_id == sa.bindparam("host"),
                IncidentTable.c.source_id == sa.bindparam("source"))
INCIDENT_BY_SOURCE = sa.select(IncidentTable).where(*_INCIDENT_OF)
INCIDENT_ID_BY_SOURCE = sa.select(IncidentTable.c.id).where(*_INCIDENT_OF)
ACTION_BY_SOURCE = sa.select(ActionTable).where(ActionTable.c.host_id == sa.bindparam("host"),
                                                ActionTable.c.source_id == sa.bindparam("source"))


class SelectorRefused(StoreError):
    """A host selector that is empty or matches every host (an empty set read as "all"
    once wiped a CDN's disks): refused, whatever the command."""


# Fleet fingerprints and remedy keys on the wire: at most this long (the agent's bound).
KEY_MAX = 512


def bounded(key: str, limit: int = KEY_MAX) -> str:
    """``key``, or its head plus a hash of the whole when it is longer than ``limit``."""
    if len(key) <= limit:
        return key
    return f"{key[:limit - 17]}#{hashlib.sha256(key.encode()).hexdigest()[:16]}"


def _host(r: sa.Row[Any], open_incidents: int) -> HostRow:
    return HostRow(host_id=r.host_id, labels={str(k): str(v) for k, v in r.labels.items()},
                   agent_version=r.agent_version, mode=r.mode,
                   last_heartbeat_at=r.last_heartbeat_at,
                   clock_skew_seconds=r.clock_skew_seconds, open_incidents=open_incidents,
                   paused=r.paused, created_at=r.created_at)


def parse_selector(text: str) -> dict[str, str]:
    """``rack=r12,zone=a`` as a dict (``host=ID`` names one host); SelectorRefused when a
    part is not ``key=value``. An empty text is an empty selector, which pausing refuses."""
    out: dict[str, str] = {}
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        key, eq, value = part.partition("=")
        if not eq or not key.strip() or not value.strip():
            raise SelectorRefused(f"selector part {part[:60]!r} is not key=value")
        out[key.strip()] = value.strip()
    return out


def matches(labels: Mapping[str, Any], host_id: str, selector: Mapping[str, str]) -> bool:
    """Whether a host's labels (and ``host_id``, as the label ``host``) match every
    ``key=value`` of ``selector``."""
    return all((host_id if k == "host" else labels.get(k)) == v for k, v in selector.items())


class HostsRepo(RepoBase):
    """Hosts, host tokens, heartbeats and reports."""

    def add_host(self, host_id: str, token: str) -> HostRow:
        """Register ``host_id`` with its token (stored as a hash, role ``host``, bound to
        the host); AlreadyExists when the host is known."""
        now = self.now()
        with self._tx() as s:
            if get_row(s, HostTable, host_id) is not None:
                raise AlreadyExists("host", host_id)
            token_id = s.execute(sa.insert(TokenTable).values(
                host_id=self.host_id, name=f"host:{host_id}"[:200], token_hash=hash_token(token),
                role=HOST_ROLE, created_at=now).returning(TokenTable.c.id)).scalar_one()
            host = add_row(s, HostTable, host_id=host_id, token_id=token_id, labels={},
                           open_incidents=0, paused=False, reported_seq=0, applied_seq=0,
                           created_at=now)
            self._audit(s, "admin", "host.added", f"host:{host_id}", None)
            return _host(host, 0)

    def host_of_token(self, token_hash: str) -> tuple[str, str | None] | None:
        """(role, bound host id) of a usable token with this hash; None when there is none."""
        q = (sa.select(TokenTable.c.role, TokenTable.c.revoked_at, TokenTable.c.expires_at,
                       HostTable.c.host_id)
             .outerjoin(HostTable, HostTable.c.token_id == TokenTable.c.id)
             .where(TokenTable.c.token_hash == token_hash))
        with self._tx(write=False) as s:
            found = s.execute(q).first()
        if found is None:
            return None
        role, revoked, expires, host_id = found
        if revoked is not None or (expires is not None and expires <= self.now()):
            return None
        return str(role), host_id

    def heartbeat(self, beat: Heartbeat) -> bool:
        """Record a heartbeat; returns whether automation is paused for this host."""
        now = self.now()
        skew = (beat.sent_at - now).total_seconds()
        params = {"beat_host": beat.host_id, "beat_labels": dict(beat.labels),
                  "beat_agent_version": beat.agent_version, "beat_mode": beat.mode,
                  "beat_last_heartbeat_at": now, "beat_clock_skew_seconds": round(skew, 3),
                  "beat_reported_seq": beat.last_report_seq}
        with self._tx() as s:
            host_paused = s.execute(HEARTBEAT, params).scalar()
            if host_paused is None:
                raise NotFound("host", beat.host_id)
            return bool(host_paused) or bool(s.scalar(FLEET_PAUSED))

    def list_hosts(self, host_id: str | None = None) -> list[HostRow]:
        """Every host (or one), by id, with its open incidents counted here."""
        open_count = (sa.select(sa.func.count(IncidentTable.c.id))
                      .where(IncidentTable.c.host_id == HostTable.c.host_id,
                             IncidentTable.c.status == IncidentStatus.OPEN.value)
                      .scalar_subquery().label("open_count"))
        q = sa.select(HostTable, open_count).order_by(HostTable.c.host_id)
        if host_id is not None:
            q = q.where(HostTable.c.host_id == host_id)
        with self._tx(write=False) as s:
            return [_host(r, int(r.open_count or 0)) for r in s.execute(q)]

    def pause_hosts(self, selector: Mapping[str, str], paused: bool,
                    actor: str) -> list[str]:
        """Pause (or resume) automation on the hosts ``selector`` matches; returns them.
        SelectorRefused when it is empty or matches every host."""
        if not selector:
            raise SelectorRefused("an empty host selector is refused (it would mean every "
                                  "host: use `healer fleet pause` without one for that)")
        with self._tx() as s:
            rows = list(s.execute(sa.select(HostTable).order_by(HostTable.c.host_id)))
            chosen = [r for r in rows if matches(r.labels, r.host_id, selector)]
            if rows and len(chosen) == len(rows):
                raise SelectorRefused(f"the selector matches every host ({len(rows)}): "
                                      "refused; the fleet-wide switch is `healer fleet pause`")
            for r in chosen:
                if r.paused != paused:
                    update_row(s, HostTable, r.host_id, paused=paused)
                    emit(s, "pause" if paused else "resume",
                         {"type": "pause"} if paused else {"type": "resume", "remedy": None},
                         r.host_id, self.now())
            self._audit(s, actor, "fleet.hosts_paused" if paused else "fleet.hosts_resumed",
                        "fleet", {"selector": dict(selector), "hosts": len(chosen)})
            return [r.host_id for r in chosen]

    # -- reports ---------------------------------------------------------------------------
    def store_reports(self, batch: ReportBatch) -> int:
        """Keep every report (a replay is a no-op), apply the ones that follow the last
        applied without a gap, in order; returns the last seq applied (``acked_through``)."""
        now = self.now()
        rows = [{"host_id": batch.host_id, "seq": r.seq, "kind": r.kind, "at": r.at,
                 "body": r.body(), "received_at": now} for r in batch.reports]
        with self._tx() as s:
            self._insert_ignore(s, ReportTable, rows, ("host_id", "seq"))
            host = s.execute(HOST_FOR_UPDATE, {"host": batch.host_id}).first()
            if host is None:
                raise NotFound("host", batch.host_id)
            updates: dict[str, Any] = {}
            applied = self._apply_reports(s, batch.host_id, int(host.applied_seq), updates)
            update_row(s, HostTable, batch.host_id, applied_seq=applied, **updates)
            return applied

    def _apply_reports(self, s: sa.Connection, host_id: str, applied: int,
                       updates: dict[str, Any]) -> int:
        """Apply the reports that follow ``applied`` in order; the host row's own changes
        (its latest sample) go into ``updates``."""
        pending = s.execute(REPORTS_AFTER, {"host": host_id, "applied": applied}).all()
        for report in pending:
            if report.seq != applied + 1:
                break  # a gap: the rest waits for it
            try:
                self._apply_one(s, host_id, report, updates)
            except (ValidationError, ValueError) as e:  # kept, never applied: say so once
                log.warning(logfmt(msg="report not applied", host=host_id, seq=report.seq,
                                   kind=report.kind, error=str(e).splitlines()[0][:200]))
            applied = int(report.seq)
        return applied

    def _apply_one(self, s: sa.Connection, host_id: str, report: sa.Row[Any],
                   updates: dict[str, Any]) -> None:
        body = report.body
        if report.kind == "incident":
            self._mirror_incident(s, host_id, ReportedIncident.model_validate(body["incident"]))
        elif report.kind == "transition":
            self._mirror_action(s, host_id, ReportedAction.model_validate(body["action"]))
        else:
            updates["sample"] = body.get("sample")

    def _mirror_incident(self, s: sa.Connection, host_id: str, inc: ReportedIncident) -> None:
        evidence = Evidence.model_validate({"signals": inc.signals} | inc.evidence
                                           ).model_dump(mode="json")
        diagnosis = None if inc.diagnosis is None \
            else Diagnosis.model_validate(inc.diagnosis).model_dump(mode="json")
        fp = bounded(inc.fleet_fingerprint or fleet_fingerprint(inc.playbook, inc.scope,
                                                                inc.subject))
        row = s.execute(INCIDENT_BY_SOURCE, {"host": host_id, "source": inc.id}).first()
        if row is None:
            row = self._alert_incident(s, host_id, inc, fp)
        values: dict[str, Any] = {
            "source_id": inc.id, "playbook": inc.playbook, "scope": inc.scope,
            "subject": inc.subject, "status": inc.status.value, "severity": inc.severity,
            "count": inc.count, "first_seen": inc.first_seen, "last_seen": inc.last_seen,
            "evidence": evidence, "diagnosis": diagnosis}
        if row is None:
            insert_row(s, IncidentTable, host_id=host_id, fleet_fingerprint=fp, **values)
            return
        if row.alert_key is None:  # an alert's incident keeps the alert's fingerprint
            values["fleet_fingerprint"] = fp
        update_row(s, IncidentTable, row.id, **values)

    def _alert_incident(self, s: sa.Connection, host_id: str, inc: ReportedIncident,
                        fp: str) -> sa.Row[Any] | None:
        """The incident an alert opened here that this report is the agent's own copy of:
        named by ``control_plane_id``, else the newest alert incident of the host with the
        same fleet fingerprint that no report has claimed yet. So the alert stays one
        incident once the agent reports it."""
        unclaimed = (IncidentTable.c.host_id == host_id, IncidentTable.c.source_id.is_(None),
                     IncidentTable.c.alert_key.is_not(None))
        if inc.control_plane_id is not None:
            return s.execute(sa.select(IncidentTable).where(
                *unclaimed, IncidentTable.c.id == inc.control_plane_id)).first()
        return s.execute(sa.select(IncidentTable).where(
            *unclaimed, IncidentTable.c.fleet_fingerprint == fp)
            .order_by(IncidentTable.c.id.desc()).limit(1)).first()

    def _mirror_action(self, s: sa.Connection, host_id: str, act: ReportedAction) -> None:
        verification = None if act.verification is None \
            else Verification.from_stored(act.verification).model_dump(mode="json")
        incident_id = None if act.incident_id is None else s.scalar(
            INCIDENT_ID_BY_SOURCE, {"host": host_id, "source": act.incident_id})
        row = s.execute(ACTION_BY_SOURCE, {"host": host_id, "source": act.id}).first()
        values = {
            "incident_id": incident_id, "kind": act.action.kind, "target": act.action.target,
            "action": action_to_dict(act.action), "decision": act.decision.model_dump(mode="json"),
            "provenance": act.provenance, "state": act.state.value, "original": act.original,
            "applied": act.applied, "verification": verification, "created_at": act.created_at,
            "updated_at": act.updated_at, "approvals_needed": act.approvals_needed,
            "rationale": act.rationale,
            "applied_at": next((t.at for t in act.transitions if t.state.value == "applying"),
                               None),
            "transitions": [t.model_dump(mode="json") for t in act.transitions]}
        if row is None:
            insert_row(s, ActionTable, host_id=host_id, source_id=act.id, **values)
        else:
            update_row(s, ActionTable, row.id, **values)
