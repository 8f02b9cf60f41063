"""Incidents and the action journal (commit-confirmed: every write is its own transaction)."""

from __future__ import annotations

import functools
from collections.abc import Callable, Collection, Iterator
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from guardrails.actions import action_to_dict, parse_action
from guardrails.decision import Decision
from healer.models import (
    TRANSITIONS,
    ActionRecord,
    ActionState,
    Diagnosis,
    Evidence,
    Incident,
    IncidentStatus,
    Verification,
)
from healer.store.errors import IllegalTransition, NotFound, StaleState
from healer.store.repo_base import add_row, change_row, get_row, insert_row
from healer.store.repo_reports import ReportsRepo, incident_body
from healer.store.rows import (
    GuardReads,
    HistoryEntry,
    IncidentActivity,
    Pending,
    SealCheck,
    Transition,
)
from healer.store.seal import SEALED_FIELDS, Sealer
from healer.store.tables import (
    ActionTable,
    AuditTable,
    IncidentTable,
    JournalLogTable,
    PausedTargetTable,
)

# Rows per page when iterating the journal completely (``iter_actions``, ``iter_incidents``):
# a page is one short read transaction, so a writer in another process never waits long.
PAGE_SIZE = 500
# Fields a transition may set besides the state (the actuator's read-backs and verdicts).
TRANSITION_FIELDS = frozenset({"original", "applied", "deadline", "verification", "decision"})

# The probes made every cycle, built once: a statement built per call costs its
# construction and its cache key each time (about 4 times the execution on SQLite), and an
# agent makes several a cycle. Parameters: ``host``, ``states``, ``incident``, ``action``.
_MINE = ActionTable.c.host_id == sa.bindparam("host")
_IN_STATES = ActionTable.c.state.in_(sa.bindparam("states", expanding=True))
IN_STATES = (sa.select(ActionTable.c.id, ActionTable.c.state, ActionTable.c.created_at)
             .where(_MINE, _IN_STATES).order_by(ActionTable.c.id))
ANY_IN_STATES = sa.select(ActionTable.c.id).where(_MINE, _IN_STATES).limit(1)
_OF_INCIDENT = ActionTable.c.incident_id == sa.bindparam("incident")
LAST_CHANGED = (sa.select(ActionTable.c.state, ActionTable.c.updated_at)
                .where(_MINE, _OF_INCIDENT)
                .order_by(ActionTable.c.updated_at.desc(), ActionTable.c.id.desc()).limit(1))
ANY_LIVE = sa.select(ActionTable.c.id).where(_MINE, _OF_INCIDENT, _IN_STATES).limit(1)
# The seal's checks, made for each change the engine moves: the log's extent, and a row's
# newest log entry (parameter ``action``).
_LOG_MINE = JournalLogTable.c.host_id == sa.bindparam("host")
JOURNAL_EXTENT = sa.select(sa.func.count(),
                           sa.func.coalesce(sa.func.max(JournalLogTable.c.seq), 0)).where(_LOG_MINE)
NEWEST_LOG = (sa.select(JournalLogTable)
              .where(_LOG_MINE, JournalLogTable.c.action_id == sa.bindparam("action"))
              .order_by(JournalLogTable.c.seq.desc()).limit(1))
# The journal's writes, built once too: a transition reads the state under lock, then sets
# it only where it is still that state (parameters ``row_id``, ``was`` and the columns it
# sets); a seal takes the next seq and stamps the row (``row_id``, ``seq``, ``mac``).
STATE_FOR_UPDATE = (sa.select(ActionTable.c.state)
                    .where(ActionTable.c.id == sa.bindparam("row_id")).with_for_update())
MOVE = sa.update(ActionTable).where(ActionTable.c.id == sa.bindparam("row_id"),
                                    ActionTable.c.state == sa.bindparam("was"))
TOP_SEQ = sa.select(sa.func.max(JournalLogTable.c.seq)).where(_LOG_MINE)
STAMP = sa.update(ActionTable).where(ActionTable.c.id == sa.bindparam("row_id"))
# The guard's reads of a target's recent changes (parameters ``host``, ``target``, ``since``).
_APPLIED_SINCE = ActionTable.c.applied_at >= sa.bindparam("since")
HISTORY = (sa.select(ActionTable)
           .where(_MINE, ActionTable.c.target == sa.bindparam("target"), _APPLIED_SINCE)
           .order_by(ActionTable.c.applied_at, ActionTable.c.id))
CHANGES_SINCE = sa.select(sa.func.count(ActionTable.c.id)).where(_MINE, _APPLIED_SINCE)
PAUSED_TARGETS = (sa.select(PausedTargetTable.c.target)
                  .where(PausedTargetTable.c.host_id == sa.bindparam("host")))
COUNT_INCIDENTS = sa.select(sa.func.count(IncidentTable.c.id)).where(
    IncidentTable.c.host_id == sa.bindparam("host"),
    IncidentTable.c.status == sa.bindparam("status"))


def _states(states: Collection[ActionState]) -> list[str]:
    return [ActionState(x).value for x in states]


def _incident(row: sa.Row[Any]) -> Incident:
    return Incident(
        id=row.id,
        host_id=row.host_id,
        playbook=row.playbook,
        scope=row.scope,
        subject=row.subject,
        status=IncidentStatus(row.status),
        severity=row.severity,
        count=row._mapping["count"],  # Row.count is the tuple method to mypy
        first_seen=row.first_seen,
        last_seen=row.last_seen,
        evidence=Evidence.model_validate(row.evidence),
        diagnosis=None if row.diagnosis is None else Diagnosis.model_validate(row.diagnosis),
    )


def _record(row: sa.Row[Any]) -> ActionRecord:
    return ActionRecord(
        id=row.id,
        host_id=row.host_id,
        incident_id=row.incident_id,
        action=parse_action(row.action),
        decision=Decision.model_validate(row.decision),
        provenance=row.provenance,  # validated by pydantic
        state=ActionState(row.state),
        original=row.original,
        applied=row.applied,
        created_at=row.created_at,
        updated_at=row.updated_at,
        deadline=row.deadline,
        verification=None if row.verification is None
        else Verification.from_stored(row.verification),
        approvals_needed=row.approvals_needed,
        rationale=row.rationale,
    )


def _history(row: sa.Row[Any]) -> HistoryEntry:
    record = _record(row)
    ver = record.verification
    kept_short = record.state == ActionState.VERIFIED and record.verdict == "insufficient"
    assert row.applied_at is not None
    return HistoryEntry(
        target=row.target, ts=row.applied_at, state=record.state, value=record.applied,
        action_id=record.id,
        judged=ver.judged if ver is not None else True,  # False: a crash-recovery restore
        convergence=record.convergence if kept_short else None,
    )


def _stored(value: Any) -> Any:
    """A transition field as the JSON columns keep it: models as their JSON dump."""
    if isinstance(value, Decision | Verification):
        return value.model_dump(mode="json")
    return value


def _sealed_values(row: sa.Row[Any]) -> dict[str, Any]:
    return {name: getattr(row, name) for name in SEALED_FIELDS}


class JournalRepo(ReportsRepo):
    """Incident and action-journal methods of the Repository.

    ``sealer`` (set by the root agent and root CLI, which hold the journal key) seals every
    journal write; ``on_sealed(seq)`` runs after each sealed commit (the high-water mark).
    In a fleet (``fleet_reports``), every incident change and journal write is queued as a
    report in its own transaction (healer.store.repo_reports).
    """

    sealer: Sealer | None = None
    on_sealed: Callable[[int], None] | None = None

    # -- incidents ---------------------------------------------------------------------
    def open_incident(self, incident: Incident) -> Incident:
        """Insert a new incident; returns it with its id."""
        values = dict(
            host_id=incident.host_id,
            playbook=incident.playbook,
            scope=incident.scope,
            subject=incident.subject,
            status=incident.status.value,
            severity=incident.severity,
            count=incident.count,
            first_seen=incident.first_seen,
            last_seen=incident.last_seen,
            evidence=incident.evidence.model_dump(mode="json"),
            diagnosis=None
            if incident.diagnosis is None
            else incident.diagnosis.model_dump(mode="json"),
        )
        with self._tx() as s:
            row = add_row(s, IncidentTable, **values)
            opened = _incident(row)
            self._report(s, "incident", f"incident:{row.id}", incident_body(opened))
            return opened

    def update_incident(self, incident: Incident) -> Incident:
        """Update count, last_seen, evidence, status and severity by id."""
        if incident.id is None:
            raise NotFound("incident", "None")
        with self._tx() as s:
            found = change_row(s, IncidentTable, incident.id, count=incident.count,
                               last_seen=incident.last_seen,
                               evidence=incident.evidence.model_dump(mode="json"),
                               status=incident.status.value, severity=incident.severity)
            if found is None:
                raise NotFound("incident", incident.id)
            updated = _incident(found)
            self._report(s, "incident", f"incident:{found.id}", incident_body(updated),
                         coalesce=True)
            return updated

    def find_incident(
        self, playbook: str, scope: str, *, subject: str = "",
        status: IncidentStatus | None = None
    ) -> Incident | None:
        """The newest incident of this host with this fingerprint (and status, if given)."""
        q = sa.select(IncidentTable).where(
            IncidentTable.c.host_id == self.host_id,
            IncidentTable.c.playbook == playbook,
            IncidentTable.c.scope == scope,
            IncidentTable.c.subject == subject,
        )
        if status is not None:
            q = q.where(IncidentTable.c.status == status.value)
        with self._tx(write=False) as s:
            row = s.execute(q.order_by(IncidentTable.c.id.desc()).limit(1)).first()
            return None if row is None else _incident(row)

    def get_incident(self, id: int) -> Incident | None:
        """One incident by id (any host: ids are unique in a shared database)."""
        with self._tx(write=False) as s:
            row = get_row(s, IncidentTable, id)
            return None if row is None else _incident(row)

    def list_incidents(
        self, status: IncidentStatus | None = None, limit: int = 100, *,
        host: str | None = None, every_host: bool = False,
    ) -> list[Incident]:
        """This host's incidents (or ``host``'s, or every host's), newest first."""
        q = sa.select(IncidentTable)
        if not every_host:
            q = q.where(IncidentTable.c.host_id == (host or self.host_id))
        if status is not None:
            q = q.where(IncidentTable.c.status == status.value)
        with self._tx(write=False) as s:
            rows = s.execute(q.order_by(IncidentTable.c.id.desc()).limit(limit))
            return [_incident(r) for r in rows]

    def iter_incidents(self, status: IncidentStatus | None = None, *,
                       page: int = PAGE_SIZE) -> Iterator[Incident]:
        """Every one of this host's incidents (in ``status``), newest first, read a page at a
        time: unlike ``list_incidents`` it never stops at a limit."""
        q = sa.select(IncidentTable).where(IncidentTable.c.host_id == self.host_id)
        if status is not None:
            q = q.where(IncidentTable.c.status == status.value)
        last: int | None = None
        while True:
            paged = q if last is None else q.where(IncidentTable.c.id < last)
            with self._tx(write=False) as s:
                rows = [_incident(r) for r in
                        s.execute(paged.order_by(IncidentTable.c.id.desc()).limit(page))]
            yield from rows
            if len(rows) < page:
                return
            last = rows[-1].id

    def count_incidents(self, status: IncidentStatus) -> int:
        """How many of this host's incidents are in ``status``."""
        with self._tx(write=False) as s:
            return int(s.scalar(COUNT_INCIDENTS, {"host": self.host_id,
                                                  "status": IncidentStatus(status).value}) or 0)

    def set_diagnosis(self, incident_id: int, diagnosis: Diagnosis) -> None:
        """Attach (or replace) the diagnosis of an incident."""
        with self._tx() as s:
            n = s.execute(
                sa.update(IncidentTable)
                .where(IncidentTable.c.id == incident_id)
                .values(diagnosis=diagnosis.model_dump(mode="json"))
            ).rowcount
            if n == 0:
                raise NotFound("incident", incident_id)
            if self.fleet_reports:
                row = get_row(s, IncidentTable, incident_id)
                assert row is not None
                self._report(s, "incident", f"incident:{incident_id}",
                             incident_body(_incident(row)), coalesce=True)

    # -- action journal ----------------------------------------------------------------
    def add_action(self, record: ActionRecord) -> ActionRecord:
        """Durably insert a journal record (and its audit row); returns it with its id."""
        values = dict(
            host_id=record.host_id,
            incident_id=record.incident_id,
            kind=record.action.kind,
            target=record.action.target,
            action=action_to_dict(record.action),
            decision=record.decision.model_dump(mode="json"),
            provenance=record.provenance,
            state=record.state.value,
            original=record.original,
            applied=record.applied,
            created_at=record.created_at,
            updated_at=record.updated_at,
            applied_at=record.updated_at if record.state == ActionState.APPLYING else None,
            deadline=record.deadline,
            verification=_stored(record.verification),
            approvals_needed=record.approvals_needed,
            rationale=record.rationale,
        )
        with self._tx() as s:
            row = add_row(s, ActionTable, **values)
            seq = self._seal(s, row)
            detail = {"to": record.state.value, "verdict": record.decision.verdict}
            self._audit(s, "healer", "action.added", f"action:{row.id}", detail)
            added = _record(row)
            self._transition_report(s, added)
        self._sealed(seq)
        return added

    def transition(
        self,
        id: int,
        to: ActionState,
        *,
        expect: Collection[ActionState],
        actor: str = "healer",
        comment: str = "",
        **fields: Any,
    ) -> ActionRecord:
        """Compare-and-set the state (legal per TRANSITIONS); raises StaleState if moved."""
        unknown = set(fields) - TRANSITION_FIELDS
        if unknown:
            raise TypeError(f"transition() got unexpected fields {sorted(unknown)}")
        expect = frozenset(ActionState(e) for e in expect)
        legal = {e for e in expect if to in TRANSITIONS.get(e, frozenset())}
        if not legal:
            raise IllegalTransition(id, "|".join(sorted(expect)) or None, to.value)
        with self._tx() as s:
            # FOR UPDATE (PostgreSQL; SQLite's BEGIN IMMEDIATE already holds the write lock):
            # a concurrent decider waits here and then reads the state the winner left, so
            # the loser's StaleState names it and its legality check sees the real state.
            current = s.scalar(STATE_FOR_UPDATE, {"row_id": id})
            if current is None:
                raise NotFound("action", id)
            if current not in expect:
                raise StaleState(id, expect, current)
            if current not in legal:
                raise IllegalTransition(id, current, to.value)
            now = self.now()
            values = {k: _stored(v) for k, v in fields.items()}
            values.update(state=to.value, updated_at=now)
            if to == ActionState.APPLYING:
                values["applied_at"] = now
            # The WHERE on the old state keeps this a CAS even if the row lock is ever lost.
            n = s.execute(MOVE, {**values, "row_id": id, "was": current}).rowcount
            if n != 1:
                raise StaleState(id, expect, None)
            detail = {"from": current, "to": to.value, "comment": comment}
            self._audit(s, actor, "action.transition", f"action:{id}", detail)
            row = get_row(s, ActionTable, id)
            assert row is not None
            seq = self._seal(s, row)
            moved = _record(row)
            self._transition_report(s, moved)
        self._sealed(seq)
        return moved

    # -- the seal (healer.store.seal) -----------------------------------------------------
    def _seal(self, s: sa.Connection, row: sa.Row[Any]) -> int | None:
        """Seal this version of ``row`` (as stored) with the next sequence number, in the
        same transaction as the write; None when this process holds no journal key."""
        if self.sealer is None:
            return None
        last = s.scalar(TOP_SEQ, {"host": self.host_id})
        seq = int(last or 0) + 1
        mac = self.sealer.row_mac(_sealed_values(row), seq)
        s.execute(STAMP, {"row_id": row.id, "seq": seq, "mac": mac})
        insert_row(s, JournalLogTable, host_id=self.host_id, seq=seq, action_id=row.id,
                   row_mac=mac, mac=self.sealer.log_mac(seq, row.id, mac))
        return seq

    def _sealed(self, seq: int | None) -> None:
        if seq is not None and self.on_sealed is not None:
            self.on_sealed(seq)  # after the commit: the high-water mark never runs ahead

    def seal_check(self, action_id: int) -> SealCheck:
        """Why journal row ``action_id`` is not to be trusted (None when it is sealed by
        this host's key, is the version its newest log entry sealed, and nothing replaced
        it), with the log's extent read in the same transaction (``journal_extent``)."""
        with self._tx(write=False) as s:
            count, top = s.execute(JOURNAL_EXTENT, {"host": self.host_id}).one()
            row = get_row(s, ActionTable, action_id)
            newest = s.execute(NEWEST_LOG, {"host": self.host_id, "action": action_id}).first()
        return SealCheck(int(count), int(top), self._row_problem(row, newest))

    def _row_problem(self, row: sa.Row[Any] | None, newest: sa.Row[Any] | None) -> str | None:
        if self.sealer is None:
            return "no journal key in this process"
        if row is None or row.host_id != self.host_id:
            return "no such row of this host"
        if row.seq is None or row.mac is None:
            return "the row carries no seal"
        if not self.sealer.row_ok(_sealed_values(row), row.seq, row.mac):
            return "the row's seal does not match its fields (changed or forged)"
        if newest is None or not self.sealer.log_ok(newest.seq, newest.action_id,
                                                    newest.row_mac, newest.mac):
            return "no sealed log entry for the row"
        if newest.seq != row.seq or newest.row_mac != row.mac:
            return f"an older version of the row (write {row.seq}; newest is {newest.seq})"
        return None

    def journal_extent(self) -> tuple[int, int]:
        """(entries, highest seq) of this host's journal log: equal when nothing is missing."""
        with self._tx(write=False) as s:
            count, top = s.execute(JOURNAL_EXTENT, {"host": self.host_id}).one()
        return int(count), int(top)

    def journal_entries(self, after: int) -> list[tuple[int, int, str, str]]:
        """Log entries (seq, action_id, row_mac, mac) above ``after``, oldest first."""
        q = (sa.select(JournalLogTable.c.seq, JournalLogTable.c.action_id,
                       JournalLogTable.c.row_mac,
                       JournalLogTable.c.mac)
             .where(JournalLogTable.c.host_id == self.host_id, JournalLogTable.c.seq > after)
             .order_by(JournalLogTable.c.seq))
        with self._tx(write=False) as s:
            return [(int(a), int(b), str(c), str(d)) for a, b, c, d in s.execute(q)]

    def reseal_all(self, *, unsealed_only: bool) -> int:
        """Seal rows again under the current key, oldest first (the first start after the
        seal came, or ``healer journal adopt``); returns how many were sealed."""
        assert self.sealer is not None
        q = sa.select(ActionTable).where(ActionTable.c.host_id == self.host_id)
        if unsealed_only:
            q = q.where(ActionTable.c.seq.is_(None))
        sealed = 0
        with self._tx() as s:
            for row in s.execute(q.order_by(ActionTable.c.id)).all():
                seq = self._seal(s, row)
                sealed += 1
        if sealed:
            self._sealed(seq)
        return sealed

    def get_action(self, id: int) -> ActionRecord | None:
        """One journal record by id."""
        with self._tx(write=False) as s:
            row = get_row(s, ActionTable, id)
            return None if row is None else _record(row)

    def list_actions(
        self,
        *,
        states: Collection[ActionState] | None = None,
        incident_id: int | None = None,
        limit: int = 100,
        host: str | None = None,
        every_host: bool = False,
    ) -> list[ActionRecord]:
        """This host's (or ``host``'s, or every host's) newest ``limit`` records, optionally
        by states and incident (for a listing; the change path reads them all with
        ``iter_actions``)."""
        q, params = self._actions_query(states, incident_id, host=host, every_host=every_host)
        with self._tx(write=False) as s:
            rows = s.execute(q.order_by(ActionTable.c.id.desc()).limit(limit), params)
            return [_record(r) for r in rows]

    def _actions_query(self, states: Collection[ActionState] | None, incident_id: int | None,
                       target: str | None = None, created_before: datetime | None = None, *,
                       host: str | None = None, every_host: bool = False
                       ) -> tuple[sa.Select[Any], dict[str, Any]]:
        """The journal query with these filters (those given), and its parameters."""
        params: dict[str, Any] = {
            "host": None if every_host else (host or self.host_id),
            "states": None if states is None else _states(states), "incident": incident_id,
            "target": target, "created_before": created_before}
        params = {k: v for k, v in params.items() if v is not None}
        return _filtered(frozenset(params)), params

    def iter_actions(
        self,
        *,
        states: Collection[ActionState] | None = None,
        incident_id: int | None = None,
        target: str | None = None,
        created_before: datetime | None = None,
        oldest_first: bool = False,
        page: int = PAGE_SIZE,
    ) -> Iterator[ActionRecord]:
        """Every matching record of this host's journal, newest first (or oldest first),
        read a page at a time; unlike ``list_actions`` it never stops at a limit. Pages
        follow the id (keyset), so a record that another writer moves meanwhile is neither
        skipped nor repeated; one that leaves ``states`` before its page is read is not
        yielded. The change path iterates with this."""
        q, params = self._actions_query(states, incident_id, target, created_before)
        first, rest = _paged(q, oldest_first, page)
        last: int | None = None
        while True:
            with self._tx(write=False) as s:
                rows = [_record(r) for r in s.execute(
                    first if last is None else rest, {**params, "last": last})]
            yield from rows
            if len(rows) < page:
                return
            last = rows[-1].id

    def has_actions(self, states: Collection[ActionState], *,
                    created_before: datetime | None = None) -> bool:
        """Whether any of this host's records is in ``states`` (created at or before
        ``created_before`` when given): one indexed probe, cheap enough for every cycle."""
        params = {"host": self.host_id, "states": _states(states)}
        if created_before is None:
            return bool(self._probe(ANY_IN_STATES, params))
        q = ANY_IN_STATES.where(ActionTable.c.created_at <= created_before)
        return bool(self._probe(q, params))

    def in_states(self, states: Collection[ActionState]) -> list[Pending]:
        """Every record of this host in ``states``: its id, state and creation time, and
        nothing else. One indexed probe answers what the change engine's cycle has to do:
        nothing, usually, or only wait for the fleet, which needs no record loaded."""
        rows = self._probe(IN_STATES, {"host": self.host_id, "states": _states(states)})
        return [Pending(id, ActionState(state), at) for id, state, at in rows]

    def incident_activity(self, incident_id: int,
                          live: Collection[ActionState]) -> IncidentActivity:
        """Whether any of the incident's records is in ``live``, and the state and time of
        the one that changed last: two indexed reads, however long the incident's journal."""
        params = {"host": self.host_id, "incident": incident_id, "states": _states(live)}
        with self._tx(write=False) as s:
            last = s.execute(LAST_CHANGED, params).first()
            if last is None:
                return IncidentActivity(live=False, last_state=None, last_change=None)
            found = s.execute(ANY_LIVE, params).first() is not None
        return IncidentActivity(live=found, last_state=ActionState(last[0]),
                                last_change=last[1])

    def history(self, target: str, since: datetime) -> list[HistoryEntry]:
        """Changes to ``target`` that started applying since ``since``, oldest first."""
        with self._tx(write=False) as s:
            return self._history(s, target, since)

    def _history(self, s: sa.Connection, target: str, since: datetime) -> list[HistoryEntry]:
        params = {"host": self.host_id, "target": target, "since": since}
        return [_history(r) for r in s.execute(HISTORY, params) if r.applied_at is not None]

    def guard_reads(self, target: str, history_since: datetime,
                    changes_since: datetime) -> GuardReads:
        """What the guard reads for a change to ``target``, in one read transaction:
        ``history(target, history_since)``, ``changes_since(changes_since)`` and
        ``paused_targets()``."""
        with self._tx(write=False) as s:
            return GuardReads(
                history=self._history(s, target, history_since),
                changes=self._changes_since(s, changes_since),
                paused=frozenset(s.scalars(PAUSED_TARGETS, {"host": self.host_id})))

    def transitions(self, action_ids: Collection[int]) -> dict[int, list[Transition]]:
        """Each record's moves, oldest first: as its agent reported them (a mirrored
        record), else from this journal's audit rows (``action.added``, then each
        ``action.transition``)."""
        ids = sorted(set(action_ids))
        if not ids:
            return {}
        with self._tx(write=False) as s:
            stored: dict[int, list[dict[str, Any]] | None] = {
                int(i): t for i, t in s.execute(
                    sa.select(ActionTable.c.id, ActionTable.c.transitions)
                    .where(ActionTable.c.id.in_(ids)))}
            local = [i for i in ids if stored.get(i) is None]
            audit = s.execute(
                sa.select(AuditTable.c.subject, AuditTable.c.at, AuditTable.c.detail)
                .where(AuditTable.c.subject.in_([f"action:{i}" for i in local]),
                       AuditTable.c.event.in_(("action.added", "action.transition")))
                .order_by(AuditTable.c.at, AuditTable.c.id)).all() if local else []
        out = {i: [Transition.model_validate(t) for t in moves]
               for i, moves in stored.items() if moves is not None}
        for i in local:
            out[i] = []
        for subject, at, detail in audit:
            out[int(subject.removeprefix("action:"))].append(
                Transition(state=ActionState(detail["to"]), at=at))
        return out

    def changes_since(self, since: datetime) -> int:
        """How many changes this host started applying since ``since`` (blast radius)."""
        with self._tx(write=False) as s:
            return self._changes_since(s, since)

    def _changes_since(self, s: sa.Connection, since: datetime) -> int:
        return int(s.scalar(CHANGES_SINCE, {"host": self.host_id, "since": since}) or 0)


# The journal query's filters, by parameter name; each shape of query is built once.
_FILTERS: dict[str, sa.ColumnElement[bool]] = {
    "host": _MINE, "states": _IN_STATES, "incident": _OF_INCIDENT,
    "target": ActionTable.c.target == sa.bindparam("target"),
    "created_before": ActionTable.c.created_at <= sa.bindparam("created_before"),
}


@functools.cache
def _filtered(names: frozenset[str]) -> sa.Select[Any]:
    return sa.select(ActionTable).where(*(f for name, f in _FILTERS.items() if name in names))


@functools.lru_cache(maxsize=64)
def _paged(q: sa.Select[Any], oldest_first: bool,
           page: int) -> tuple[sa.Select[Any], sa.Select[Any]]:
    """``q``'s first page and the page after id ``last`` (a parameter), in id order."""
    if oldest_first:
        first = q.order_by(ActionTable.c.id.asc()).limit(page)
        return first, first.where(ActionTable.c.id > sa.bindparam("last"))
    first = q.order_by(ActionTable.c.id.desc()).limit(page)
    return first, first.where(ActionTable.c.id < sa.bindparam("last"))
