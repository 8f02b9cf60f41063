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
from sqlalchemy.orm import Session

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
from healer.store.repo_base import RepoBase
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


def _host(r: HostTable, open_incidents: int) -> HostRow:
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
            if s.get(HostTable, host_id) is not None:
                raise AlreadyExists("host", host_id)
            row = TokenTable(host_id=self.host_id, name=f"host:{host_id}"[:200],
                             token_hash=hash_token(token), role=HOST_ROLE, created_at=now)
            s.add(row)
            s.flush()
            host = HostTable(host_id=host_id, token_id=row.id, labels={}, open_incidents=0,
                             paused=False, reported_seq=0, applied_seq=0, created_at=now)
            s.add(host)
            self._audit(s, "admin", "host.added", f"host:{host_id}", None)
            s.flush()
            return _host(host, 0)

    def host_of_token(self, token_hash: str) -> tuple[str, str | None] | None:
        """(role, bound host id) of a usable token with this hash; None when there is none."""
        q = (sa.select(TokenTable.role, TokenTable.revoked_at, TokenTable.expires_at,
                       HostTable.host_id)
             .outerjoin(HostTable, HostTable.token_id == TokenTable.id)
             .where(TokenTable.token_hash == token_hash))
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
        # One UPDATE ... RETURNING and one read, no ORM object: every host does this every
        # 5 s, so it is the control plane's most frequent write.
        update = (sa.update(HostTable).execution_options(synchronize_session=False)
                  .where(HostTable.host_id == beat.host_id)
                  .values(labels=dict(beat.labels), agent_version=beat.agent_version,
                          mode=beat.mode, last_heartbeat_at=now,
                          clock_skew_seconds=round(skew, 3), reported_seq=beat.last_report_seq)
                  .returning(HostTable.paused))
        fleet_wide = sa.select(sa.exists().where(FleetPauseTable.target == FLEET_WIDE))
        with self._tx() as s:
            host_paused = s.execute(update).scalar()
            if host_paused is None:
                raise NotFound("host", beat.host_id)
            return bool(host_paused) or bool(s.scalar(fleet_wide))

    def list_hosts(self, host_id: str | None = None) -> list[HostRow]:
        """Every host (or one), by id, with its open incidents counted here."""
        open_count = (sa.select(sa.func.count(IncidentTable.id))
                      .where(IncidentTable.host_id == HostTable.host_id,
                             IncidentTable.status == IncidentStatus.OPEN.value)
                      .scalar_subquery())
        q = sa.select(HostTable, open_count).order_by(HostTable.host_id)
        if host_id is not None:
            q = q.where(HostTable.host_id == host_id)
        with self._tx(write=False) as s:
            return [_host(r, int(n or 0)) for r, n in s.execute(q)]

    def pause_hosts(self, selector: Mapping[str, str], paused: bool,
                    actor: str) -> list[str]:
        """Pause (or resume) automation on the hosts ``selector`` matches; returns them.
        SelectorRefused when it is empty or matches every host."""
        if not selector:
            raise SelectorRefused("an empty host selector is refused (it would mean every "
                                  "host: use `healer fleet pause` without one for that)")
        with self._tx() as s:
            rows = list(s.scalars(sa.select(HostTable).order_by(HostTable.host_id)))
            chosen = [r for r in rows if matches(r.labels, r.host_id, selector)]
            if rows and len(chosen) == len(rows):
                raise SelectorRefused(f"the selector matches every host ({len(rows)}): "
                                      "refused; the fleet-wide switch is `healer fleet pause`")
            for r in chosen:
                if r.paused != paused:
                    r.paused = paused
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
            self._insert_ignore(s, ReportTable.__table__, rows, ("host_id", "seq"))
            host = s.scalars(sa.select(HostTable).where(HostTable.host_id == batch.host_id)
                             .with_for_update()).first()
            if host is None:
                raise NotFound("host", batch.host_id)
            host.applied_seq = self._apply_reports(s, batch.host_id, host)
            return int(host.applied_seq)

    def _apply_reports(self, s: Session, host_id: str, host: HostTable) -> int:
        applied = int(host.applied_seq)
        pending = s.scalars(sa.select(ReportTable)
                            .where(ReportTable.host_id == host_id, ReportTable.seq > applied)
                            .order_by(ReportTable.seq).limit(APPLY_BATCH))
        for report in pending:
            if report.seq != applied + 1:
                break  # a gap: the rest waits for it
            try:
                self._apply_one(s, host_id, host, report)
            except (ValidationError, ValueError) as e:  # kept, never applied: say so once
                log.warning(logfmt(msg="report not applied", host=host_id, seq=report.seq,
                                   kind=report.kind, error=str(e).splitlines()[0][:200]))
            applied = int(report.seq)
        return applied

    def _apply_one(self, s: Session, host_id: str, host: HostTable, report: ReportTable) -> None:
        body = report.body
        if report.kind == "incident":
            self._mirror_incident(s, host_id, ReportedIncident.model_validate(body["incident"]))
        elif report.kind == "transition":
            self._mirror_action(s, host_id, ReportedAction.model_validate(body["action"]))
        else:
            host.sample = body.get("sample")

    def _mirror_incident(self, s: Session, host_id: str, inc: ReportedIncident) -> None:
        evidence = Evidence.model_validate({"signals": inc.signals} | inc.evidence
                                           ).model_dump(mode="json")
        diagnosis = None if inc.diagnosis is None \
            else Diagnosis.model_validate(inc.diagnosis).model_dump(mode="json")
        fp = bounded(inc.fleet_fingerprint or fleet_fingerprint(inc.playbook, inc.scope,
                                                                inc.subject))
        row = s.scalars(sa.select(IncidentTable).where(IncidentTable.host_id == host_id,
                                                       IncidentTable.source_id == inc.id)).first()
        if row is None:
            row = self._alert_incident(s, host_id, inc, fp)
        if row is None:
            row = IncidentTable(host_id=host_id, evidence={}, fleet_fingerprint=fp)
            s.add(row)
        row.source_id, row.playbook, row.scope, row.subject = inc.id, inc.playbook, inc.scope, \
            inc.subject
        row.status, row.severity, row.count = inc.status.value, inc.severity, inc.count
        row.first_seen, row.last_seen = inc.first_seen, inc.last_seen
        row.evidence, row.diagnosis = evidence, diagnosis
        if row.alert_key is None:  # an alert's incident keeps the alert's fingerprint
            row.fleet_fingerprint = fp

    def _alert_incident(self, s: Session, host_id: str, inc: ReportedIncident,
                        fp: str) -> IncidentTable | None:
        """The incident an alert opened here that this report is the agent's own copy of:
        named by ``control_plane_id``, else the newest alert incident of the host with the
        same fleet fingerprint that no report has claimed yet. So the alert stays one
        incident once the agent reports it."""
        unclaimed = (IncidentTable.host_id == host_id, IncidentTable.source_id.is_(None),
                     IncidentTable.alert_key.is_not(None))
        if inc.control_plane_id is not None:
            return s.scalars(sa.select(IncidentTable).where(
                *unclaimed, IncidentTable.id == inc.control_plane_id)).first()
        return s.scalars(sa.select(IncidentTable).where(
            *unclaimed, IncidentTable.fleet_fingerprint == fp)
            .order_by(IncidentTable.id.desc()).limit(1)).first()

    def _mirror_action(self, s: Session, host_id: str, act: ReportedAction) -> None:
        verification = None if act.verification is None \
            else Verification.from_stored(act.verification).model_dump(mode="json")
        incident_id = None if act.incident_id is None else s.scalar(
            sa.select(IncidentTable.id).where(IncidentTable.host_id == host_id,
                                              IncidentTable.source_id == act.incident_id))
        row = s.scalars(sa.select(ActionTable).where(ActionTable.host_id == host_id,
                                                     ActionTable.source_id == act.id)).first()
        if row is None:
            row = ActionTable(host_id=host_id, source_id=act.id)
            s.add(row)
        row.incident_id, row.kind, row.target = incident_id, act.action.kind, act.action.target
        row.action, row.decision = action_to_dict(act.action), act.decision.model_dump(mode="json")
        row.provenance, row.state = act.provenance, act.state.value
        row.original, row.applied, row.verification = act.original, act.applied, verification
        row.created_at, row.updated_at = act.created_at, act.updated_at
        row.approvals_needed, row.rationale = act.approvals_needed, act.rationale
        row.applied_at = next((t.at for t in act.transitions if t.state.value == "applying"),
                              None)
        row.transitions = [t.model_dump(mode="json") for t in act.transitions]
