"""The fleet agent's report outbox (docs/fleet-protocol.md, ``POST /api/v1/agent/report``).

Every incident change and every journal write of a host in a fleet is queued here in the
same transaction as the change itself (JournalRepo calls ``_report``), so a crash between
the two loses nothing. The reporter (healer.fleet.reports) sends them in ``id`` order,
numbering each with the next per-host ``seq`` the first time it goes out, and deletes
them once the control plane acks them. Numbering at send time keeps the drop rule simple:
only reports never sent are dropped (samples, over the cap), so the control plane never
sees a gap it would wait on forever.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import sqlalchemy as sa
from pydantic_core import to_json

from healer.models import ActionRecord, Incident
from healer.store.repo_base import RepoBase, insert_row, update_row
from healer.store.rows import ReportRow
from healer.store.tables import AuditTable, FleetReportTable, KvTable

KV_NAMESPACE = "fleet"
SEQ_KEY = "report_seq"  # the last seq handed out
FLAG_KEY = "reporting"  # "on" while this host's agent runs in a fleet
JOURNAL_EVENTS = ("action.added", "action.transition")
# Built once (parameters ``host``, ``subject``): queued with every journal write.
JOURNAL_MOVES = (sa.select(AuditTable.c.at, AuditTable.c.detail)
                 .where(AuditTable.c.host_id == sa.bindparam("host"),
                        AuditTable.c.subject == sa.bindparam("subject"),
                        AuditTable.c.event.in_(JOURNAL_EVENTS))
                 .order_by(AuditTable.c.id))
UNSENT = (sa.select(FleetReportTable)
          .where(FleetReportTable.c.host_id == sa.bindparam("host"),
                 FleetReportTable.c.subject == sa.bindparam("subject"),
                 FleetReportTable.c.seq.is_(None))
          .order_by(FleetReportTable.c.id.desc()).limit(1))


def _size(body: dict[str, Any]) -> int:
    return len(to_json(body, inf_nan_mode="strings"))


def incident_body(incident: Incident) -> dict[str, Any]:
    """An incident as a report carries it: the API's shape (no evidence but its signals)
    plus the fleet fingerprint."""
    body: dict[str, Any] = incident.model_dump(mode="json", exclude={"evidence"})
    body["signals"] = dict(incident.evidence.signals)
    body["fleet_fingerprint"] = incident.fleet_fingerprint
    return body


def _row(r: sa.Row[Any]) -> ReportRow:
    return ReportRow(id=r.id, seq=r.seq, kind=r.kind, subject=r.subject, at=r.at, body=r.body)


class ReportsRepo(RepoBase):
    """The outbox of reports; ``fleet_reports`` turns the queueing of changes on."""

    fleet_reports: bool = False
    # Called once a transaction that queued a report committed: the sender goes at once
    # instead of finding it on its next look (other root processes' reports wait for that).
    on_report: Callable[[], None] | None = None

    # -- queueing, inside the caller's transaction --------------------------------------
    def _report(self, s: sa.Connection, kind: str, subject: str, body: dict[str, Any], *,
                coalesce: bool = False) -> None:
        """Queue one report with the change being written. ``coalesce``: a newer state of
        the same subject replaces its report not yet sent (an incident's updates)."""
        if not self.fleet_reports:
            return
        if self.on_report is not None:
            self._after_commit(s, self.on_report)
        now, size = self.now(), _size(body)
        if coalesce:
            pending = s.execute(UNSENT, {"host": self.host_id, "subject": subject}).first()
            if pending is not None:
                update_row(s, FleetReportTable, pending.id, body=body, size=size, at=now)
                return
        insert_row(s, FleetReportTable, host_id=self.host_id, seq=None, kind=kind,
                   subject=subject, at=now, body=body, size=size)

    def _transition_report(self, s: sa.Connection, record: ActionRecord) -> None:
        """A journal write's report: the record after it, with its transitions so far."""
        if not self.fleet_reports or record.id is None:
            return
        body: dict[str, Any] = record.model_dump(mode="json")
        body["transitions"] = self._transitions(s, record.id)
        self._report(s, "transition", f"action:{record.id}", body)

    def _transitions(self, s: sa.Connection, action_id: int) -> list[dict[str, str]]:
        params = {"host": self.host_id, "subject": f"action:{action_id}"}
        return [{"state": str(detail.get("to", "")), "at": at.isoformat()}
                for at, detail in s.execute(JOURNAL_MOVES, params)]

    def action_transitions(self, action_id: int) -> list[dict[str, str]]:
        """Every state one journal record entered, with when: ``[{"state", "at"}]``."""
        with self._tx(write=False) as s:
            return self._transitions(s, action_id)

    # -- the flag other root processes follow ---------------------------------------------
    def set_fleet_reporting(self, on: bool) -> None:
        """Turn reporting on (the agent runs in a fleet) or off, here and for every other
        root process that writes the journal (``healer rollback`` reads it back)."""
        self.fleet_reports = on
        with self._tx() as s:
            if on:
                self._upsert(s, KvTable, {
                    "host_id": self.host_id, "namespace": KV_NAMESPACE, "key": FLAG_KEY,
                    "value": "on", "expires_at": None, "updated_at": self.now()},
                    ("host_id", "namespace", "key"), ("value", "updated_at"))
            else:
                s.execute(sa.delete(KvTable).where(
                    KvTable.c.host_id == self.host_id, KvTable.c.namespace == KV_NAMESPACE,
                    KvTable.c.key == FLAG_KEY))

    def follow_fleet_reporting(self) -> None:
        """Report journal writes when this host's agent does (root CLI commands)."""
        with self._tx(write=False) as s:
            self.fleet_reports = self._kv(s, FLAG_KEY) == "on"

    def _kv(self, s: sa.Connection, key: str) -> str | None:
        return s.scalar(sa.select(KvTable.c.value).where(
            KvTable.c.host_id == self.host_id, KvTable.c.namespace == KV_NAMESPACE,
            KvTable.c.key == key))

    def _set_last_seq(self, s: sa.Connection, seq: int) -> None:
        self._upsert(s, KvTable, {
            "host_id": self.host_id, "namespace": KV_NAMESPACE, "key": SEQ_KEY,
            "value": str(seq), "expires_at": None, "updated_at": self.now()},
            ("host_id", "namespace", "key"), ("value", "updated_at"))

    # -- the reporter's side ----------------------------------------------------------
    def add_report(self, kind: str, subject: str, body: dict[str, Any]) -> None:
        """Queue a report of its own (a sample summary)."""
        with self._tx() as s:
            self._report(s, kind, subject, body)

    def last_report_seq(self) -> int:
        """The highest seq handed out (0 before the first report went out)."""
        with self._tx(write=False) as s:
            return int(self._kv(s, SEQ_KEY) or 0)

    def report_batch(self, max_reports: int, max_bytes: int) -> list[ReportRow]:
        """The oldest reports, up to ``max_reports`` and ``max_bytes`` (at least one), each
        numbered: those sent before keep their seq, the rest get the next ones."""
        q = (sa.select(FleetReportTable).where(FleetReportTable.c.host_id == self.host_id)
             .order_by(FleetReportTable.c.id).limit(max_reports))
        with self._tx() as s:
            rows: list[sa.Row[Any]] = []
            total = 0
            for row in s.execute(q).all():
                if rows and total + row.size > max_bytes:
                    break
                rows.append(row)
                total += row.size
            last = int(self._kv(s, SEQ_KEY) or 0)
            numbered: list[sa.Row[Any]] = []
            for row in rows:
                if row.seq is None:
                    last += 1
                    row = update_row(s, FleetReportTable, row.id, seq=last)
                numbered.append(row)
            if any(r.seq is None for r in rows):
                self._set_last_seq(s, last)
            return [_row(r) for r in numbered]

    def ack_reports(self, acked_through: int) -> bool:
        """Delete what the control plane acked. True when it acked more than this host ever
        numbered (it kept a history this host lost: a reset state directory): the reports
        in flight are numbered again above its mark, to be sent again."""
        with self._tx() as s:
            last = int(self._kv(s, SEQ_KEY) or 0)
            if acked_through <= last:
                s.execute(sa.delete(FleetReportTable).where(
                    FleetReportTable.c.host_id == self.host_id,
                    FleetReportTable.c.seq <= acked_through))
                return False
            sent = s.execute(sa.select(FleetReportTable)
                             .where(FleetReportTable.c.host_id == self.host_id,
                                    FleetReportTable.c.seq.is_not(None))
                             .order_by(FleetReportTable.c.id)).all()
            for n, row in enumerate(sent, start=acked_through + 1):
                update_row(s, FleetReportTable, row.id, seq=n)
            self._set_last_seq(s, acked_through + len(sent))
            return True

    def report_totals(self) -> tuple[int, int]:
        """(reports waiting, their bytes)."""
        q = sa.select(sa.func.count(FleetReportTable.c.id),
                      sa.func.coalesce(sa.func.sum(FleetReportTable.c.size), 0)).where(
            FleetReportTable.c.host_id == self.host_id)
        ((count, size),) = self._probe(q)  # asked every second: a probe
        return int(count), int(size)

    def cap_reports(self, max_bytes: int, droppable: Sequence[str] = ("sample",)) -> int:
        """Drop reports never sent, of the ``droppable`` kinds, oldest first, until the
        outbox holds at most ``max_bytes``; returns how many went. Transitions are never
        droppable: over the cap with nothing else left, the outbox keeps them all."""
        with self._tx() as s:
            total = int(s.scalar(sa.select(sa.func.coalesce(sa.func.sum(FleetReportTable.c.size),
                                                            0))
                                 .where(FleetReportTable.c.host_id == self.host_id)) or 0)
            if total <= max_bytes:
                return 0
            q = (sa.select(FleetReportTable.c.id, FleetReportTable.c.size)
                 .where(FleetReportTable.c.host_id == self.host_id,
                        FleetReportTable.c.seq.is_(None),
                        FleetReportTable.c.kind.in_(list(droppable)))
                 .order_by(FleetReportTable.c.id))
            doomed: list[int] = []
            for report_id, size in s.execute(q):
                if total <= max_bytes:
                    break
                doomed.append(report_id)
                total -= size
            for start in range(0, len(doomed), 500):
                s.execute(sa.delete(FleetReportTable).where(
                    FleetReportTable.c.id.in_(doomed[start:start + 500])))
            return len(doomed)
