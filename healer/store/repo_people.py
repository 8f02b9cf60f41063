"""Approvals, the audit log, paused targets, users and API tokens."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from healer.errors import StoreError
from healer.store.errors import AlreadyExists, NotFound
from healer.store.repo_base import RepoBase
from healer.store.rows import ApprovalRow, AuditRow, TokenRow, UserRow
from healer.store.tables import (
    ActionTable,
    ApprovalTable,
    AuditTable,
    PausedTargetTable,
    TokenTable,
    UserTable,
)


def _approval(r: ApprovalTable) -> ApprovalRow:
    return ApprovalRow(
        action_id=r.action_id, user=r.user, approve=r.approve, comment=r.comment, at=r.at
    )


def _user(r: UserTable) -> UserRow:
    return UserRow(
        id=r.id,
        name=r.name,
        password_hash=r.password_hash,
        role=r.role,
        slack_user_id=r.slack_user_id,
        created_at=r.created_at,
    )


def _token(r: TokenTable) -> TokenRow:
    return TokenRow(
        id=r.id, name=r.name, token_hash=r.token_hash, role=r.role, created_at=r.created_at
    )


class PeopleRepo(RepoBase):
    """What people do and are: votes, audit, pauses, users, tokens."""

    # -- approvals ---------------------------------------------------------------------
    def add_approval(
        self, action_id: int, user: str, approve: bool, comment: str = ""
    ) -> list[ApprovalRow]:
        """Record one person's vote (a re-vote replaces theirs); returns all votes."""
        row = {"host_id": self.host_id, "action_id": action_id, "user": user,
               "approve": approve, "comment": comment, "at": self.now()}
        with self._tx() as s:
            if s.get(ActionTable, action_id) is None:
                raise NotFound("action", action_id)
            self._upsert(s, ApprovalTable.__table__, row, ("action_id", "user"),
                         ("approve", "comment", "at"))
            detail = {"approve": approve, "comment": comment}
            self._audit(s, user, "approval.vote", f"action:{action_id}", detail)
            s.flush()
            return self._approvals(s, action_id)

    def list_approvals(self, action_id: int) -> list[ApprovalRow]:
        """Every vote on one action, oldest first."""
        with self._tx(write=False) as s:
            return self._approvals(s, action_id)

    def _approvals(self, s: Session, action_id: int) -> list[ApprovalRow]:
        q = sa.select(ApprovalTable).where(ApprovalTable.action_id == action_id)
        return [_approval(r) for r in s.scalars(q.order_by(ApprovalTable.at, ApprovalTable.id))]

    # -- audit -------------------------------------------------------------------------
    def add_audit(
        self, actor: str, event: str, subject: str, detail: dict[str, Any] | None = None
    ) -> None:
        """Append one audit row."""
        with self._tx() as s:
            self._audit(s, actor, event, subject, detail)

    def list_audit(self, limit: int = 200, subject: str | None = None) -> list[AuditRow]:
        """This host's audit log, newest first."""
        q = sa.select(AuditTable).where(AuditTable.host_id == self.host_id)
        if subject is not None:
            q = q.where(AuditTable.subject == subject)
        with self._tx(write=False) as s:
            rows = s.scalars(q.order_by(AuditTable.id.desc()).limit(limit))
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
            self._upsert(s, PausedTargetTable.__table__, row, ("host_id", "target"),
                         ("reason", "at"))
            self._audit(s, "healer", "target.paused", target, {"reason": reason})

    def resume_target(self, target: str, actor: str = "admin") -> None:
        """Let automation touch ``target`` again."""
        with self._tx() as s:
            s.execute(
                sa.delete(PausedTargetTable).where(
                    PausedTargetTable.host_id == self.host_id, PausedTargetTable.target == target
                )
            )
            self._audit(s, actor, "target.resumed", target, None)

    def paused_targets(self) -> set[str]:
        """Targets this host may not change automatically."""
        q = sa.select(PausedTargetTable.target).where(PausedTargetTable.host_id == self.host_id)
        with self._tx(write=False) as s:
            return set(s.scalars(q))

    # -- users and tokens (fleet-wide; host_id records the creator) --------------------
    def _add_credential(self, row: UserTable | TokenTable, what: str, name: str, event: str,
                        role: str) -> None:
        """Insert a user or token row with its audit entry; a duplicate is AlreadyExists."""
        try:
            with self._tx() as s:
                s.add(row)
                s.flush()
                self._audit(s, "admin", event, f"{what}:{name}", {"role": role})
        except StoreError as e:
            if isinstance(e.__cause__, IntegrityError):
                raise AlreadyExists(what, name) from e.__cause__
            raise

    def add_user(
        self, name: str, password_hash: str, role: str, slack_user_id: str | None = None
    ) -> UserRow:
        """Create a user; raises AlreadyExists for a taken name or Slack id."""
        row = UserTable(
            host_id=self.host_id,
            name=name,
            password_hash=password_hash,
            role=role,
            slack_user_id=slack_user_id,
            created_at=self.now(),
        )
        self._add_credential(row, "user", name, "user.added", role)
        return _user(row)

    def get_user(self, name: str) -> UserRow | None:
        """A user by name."""
        with self._tx(write=False) as s:
            row = s.scalars(sa.select(UserTable).where(UserTable.name == name)).first()
            return None if row is None else _user(row)

    def get_user_by_slack(self, slack_user_id: str) -> UserRow | None:
        """The healer user mapped to a Slack user id."""
        q = sa.select(UserTable).where(UserTable.slack_user_id == slack_user_id)
        with self._tx(write=False) as s:
            row = s.scalars(q).first()
            return None if row is None else _user(row)

    def list_users(self) -> list[UserRow]:
        """All users, by name."""
        with self._tx(write=False) as s:
            return [_user(r) for r in s.scalars(sa.select(UserTable).order_by(UserTable.name))]

    def add_token(self, name: str, token_hash: str, role: str) -> TokenRow:
        """Store an API token's hash."""
        row = TokenTable(
            host_id=self.host_id, name=name, token_hash=token_hash, role=role, created_at=self.now()
        )
        self._add_credential(row, "token", name, "token.created", role)
        return _token(row)

    def find_token(self, token_hash: str) -> TokenRow | None:
        """The token with this hash, if any."""
        q = sa.select(TokenTable).where(TokenTable.token_hash == token_hash)
        with self._tx(write=False) as s:
            row = s.scalars(q).first()
            return None if row is None else _token(row)
