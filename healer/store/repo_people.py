"""Votes, the audit log and paused targets (users, tokens, sessions: repo_credentials)."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import sqlalchemy as sa

from healer.models import ActionRecord, ActionState
from healer.store.errors import NotFound, StaleState
from healer.store.repo_base import RepoBase, get_row
from healer.store.repo_events import emit
from healer.store.repo_journal import PAUSED_TARGETS, _record
from healer.store.rows import FLEET_VOTER, ApprovalRow, AuditRow, PausedTargetRow
from healer.store.tables import ActionTable, ApprovalTable, AuditTable, PausedTargetTable, UserTable

_AWAITING = ActionState.AWAITING_APPROVAL.value


def _approval(r: sa.Row[Any]) -> ApprovalRow:
    return ApprovalRow(action_id=r.action_id, user=r.user, user_id=r.user_id, approve=r.approve,
                       comment=r.comment, at=r.at, origin=r.origin)


class PeopleRepo(RepoBase):
    """What people do and are: votes, audit, pauses, users, tokens."""

    # -- approvals ---------------------------------------------------------------------
    def add_approval(
        self, action_id: int, user: str, approve: bool, comment: str = "", *, via: str = ""
    ) -> list[ApprovalRow]:
        """Record user ``user``'s vote on an awaiting action (a re-vote replaces theirs).

        Returns all votes. Only records: the root agent's engine decides the request.
        NotFound for an unknown action or user; StaleState once the action left
        ``awaiting_approval`` (checked in the same transaction as the write). On a control
        plane, a vote on an agent's record (mirrored from its reports) also goes to that
        agent as a ``vote`` event naming its own record: its engine decides, its guard
        checks again.
        """
        with self._tx() as s:
            action = get_row(s, ActionTable, action_id)
            mirrored = action is not None and action.source_id is not None
            if action is None or (action.host_id != self.host_id and not mirrored):
                raise NotFound("action", action_id)
            if action.state != _AWAITING:
                raise StaleState(action_id, {_AWAITING}, action.state)
            user_id = s.scalars(sa.select(UserTable.c.id).where(UserTable.c.name == user)).first()
            if user_id is None:
                raise NotFound("user", user)
            row = {"host_id": self.host_id, "action_id": action_id, "user": user,
                   "user_id": user_id, "approve": approve, "comment": comment, "at": self.now()}
            # One statement: a concurrent vote of the same person (web and Slack at once) on
            # PostgreSQL would otherwise fail on the unique key instead of replacing it.
            self._upsert(s, ApprovalTable, row, ("action_id", "user"),
                         ("user_id", "approve", "comment", "at"))
            detail = {"approve": approve, "comment": comment} | ({"via": via} if via else {})
            self._audit(s, user, "approval.vote", f"action:{action_id}", detail)
            if mirrored:
                emit(s, "vote", {"type": "vote", "action_id": action.source_id, "user": user,
                                 "approve": approve, "comment": comment}, action.host_id,
                     self.now())
            return self._approvals(s, action_id)

    def add_fleet_vote(self, action_id: int, user: str, approve: bool, comment: str = ""
                       ) -> list[ApprovalRow]:
        """Record a vote the control plane relayed: a person it authenticated as an approver
        (docs/fleet-protocol.md). Kept as ``fleet:<user>``, apart from local users' votes;
        NotFound or StaleState as ``add_approval``."""
        name = f"{FLEET_VOTER}{user}"
        with self._tx() as s:
            self._awaiting(s, action_id)
            row = {"host_id": self.host_id, "action_id": action_id, "user": name,
                   "user_id": None, "approve": approve, "comment": comment, "at": self.now(),
                   "origin": "fleet"}
            self._upsert(s, ApprovalTable, row, ("action_id", "user"),
                         ("user_id", "approve", "comment", "at", "origin"))
            self._audit(s, name, "approval.vote", f"action:{action_id}",
                        {"approve": approve, "comment": comment, "via": "fleet"})
            return self._approvals(s, action_id)

    def _awaiting(self, s: sa.Connection, action_id: int) -> None:
        """NotFound unless ``action_id`` is this host's; StaleState unless it awaits votes
        (checked in the vote's own transaction)."""
        action = get_row(s, ActionTable, action_id)
        if action is None or action.host_id != self.host_id:
            raise NotFound("action", action_id)
        if action.state != _AWAITING:
            raise StaleState(action_id, {_AWAITING}, action.state)

    def list_approvals(self, action_id: int) -> list[ApprovalRow]:
        """Every vote on one action, oldest first."""
        with self._tx(write=False) as s:
            return self._approvals(s, action_id)

    def _approvals(self, s: sa.Connection, action_id: int) -> list[ApprovalRow]:
        q = sa.select(ApprovalTable).where(ApprovalTable.c.action_id == action_id)
        return [_approval(r) for r in s.execute(q.order_by(ApprovalTable.c.at, ApprovalTable.c.id))]

    def awaiting_votes(self) -> list[tuple[ActionRecord, list[ApprovalRow]]]:
        """This host's awaiting records that have votes, oldest first, with their votes.

        One indexed read per call while nothing is pending (the usual cycle); a second
        reads the votes of the records it found.
        """
        voted = sa.exists().where(ApprovalTable.c.action_id == ActionTable.c.id)
        q = (sa.select(ActionTable)
             .where(ActionTable.c.host_id == self.host_id, ActionTable.c.state == _AWAITING,
                    voted)
             .order_by(ActionTable.c.id))
        with self._tx(write=False) as s:
            records = {row.id: _record(row) for row in s.execute(q)}
            if not records:
                return []
            votes: defaultdict[int, list[ApprovalRow]] = defaultdict(list)
            for vote in s.execute(sa.select(ApprovalTable)
                                  .where(ApprovalTable.c.action_id.in_(list(records)))
                                  .order_by(ApprovalTable.c.at, ApprovalTable.c.id)):
                votes[vote.action_id].append(_approval(vote))
            return [(records[i], votes[i]) for i in records]

    # -- audit -------------------------------------------------------------------------
    def add_audit(
        self, actor: str, event: str, subject: str, detail: dict[str, Any] | None = None
    ) -> None:
        """Append one audit row."""
        with self._tx() as s:
            self._audit(s, actor, event, subject, detail)

    def list_audit(self, limit: int = 200, subject: str | None = None) -> list[AuditRow]:
        """This host's audit log, newest first."""
        q = sa.select(AuditTable).where(AuditTable.c.host_id == self.host_id)
        if subject is not None:
            q = q.where(AuditTable.c.subject == subject)
        with self._tx(write=False) as s:
            rows = s.execute(q.order_by(AuditTable.c.id.desc()).limit(limit))
            return [
                AuditRow(
                    id=r.id,
                    at=r.at,
                    actor=r.actor,
                    event=r.event,
                    subject=r.subject,
                    detail=r.detail,
                )
                for r in rows
            ]

    # -- paused targets ----------------------------------------------------------------
    def pause_target(self, target: str, reason: str) -> None:
        """Stand automation down for ``target`` until a human resumes it."""
        row = {"host_id": self.host_id, "target": target, "reason": reason, "at": self.now()}
        with self._tx() as s:
            self._upsert(s, PausedTargetTable, row, ("host_id", "target"),
                         ("reason", "at"))
            self._audit(s, "healer", "target.paused", target, {"reason": reason})

    def resume_target(self, target: str, actor: str) -> None:
        """Let automation touch ``target`` again (audited); NotFound if it is not paused."""
        with self._tx() as s:
            gone = s.execute(
                sa.delete(PausedTargetTable).where(
                    PausedTargetTable.c.host_id == self.host_id,
                    PausedTargetTable.c.target == target,
                )
            ).rowcount
            if not gone:
                raise NotFound("paused target", target)
            self._audit(s, actor, "target.resumed", target, None)

    def list_paused_targets(self) -> list[PausedTargetRow]:
        """Paused targets with why and since when, newest first."""
        q = (sa.select(PausedTargetTable).where(PausedTargetTable.c.host_id == self.host_id)
             .order_by(PausedTargetTable.c.at.desc(), PausedTargetTable.c.target))
        with self._tx(write=False) as s:
            return [PausedTargetRow(target=r.target, reason=r.reason, at=r.at)
                    for r in s.execute(q)]

    def paused_targets(self) -> set[str]:
        """Targets this host may not change automatically."""
        with self._tx(write=False) as s:
            return set(s.scalars(PAUSED_TARGETS, {"host": self.host_id}))
