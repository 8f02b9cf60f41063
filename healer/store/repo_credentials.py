"""Users, API tokens and dashboard sessions (fleet-wide; host_id records the creator).

Removing a user removes their tokens and sessions and nulls the user id on their votes
(foreign keys, and explicitly here, so SQLite without foreign keys behaves the same).
A password change ends every session of that user.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from healer.errors import StoreError
from healer.store.errors import AlreadyExists, NotFound
from healer.store.repo_base import RepoBase, add_row, get_row, update_row
from healer.store.rows import SessionRow, TokenRow, UserRow
from healer.store.tables import ApprovalTable, SessionTable, TokenTable, UserTable


def _user(r: sa.Row[Any]) -> UserRow:
    return UserRow(id=r.id, name=r.name, password_hash=r.password_hash, role=r.role,
                   slack_user_id=r.slack_user_id, created_at=r.created_at)


def _token(r: sa.Row[Any], owner: str | None = None) -> TokenRow:
    return TokenRow(id=r.id, name=r.name, token_hash=r.token_hash, role=r.role,
                    created_at=r.created_at, user_id=r.user_id, owner=owner,
                    expires_at=r.expires_at, revoked_at=r.revoked_at)


class CredentialsRepo(RepoBase):
    """Who may sign in, with what, and for how long."""

    def _add_credential(self, table: sa.Table, values: dict[str, Any], what: str, event: str
                        ) -> sa.Row[Any]:
        """Insert a user or token row with its audit entry; a duplicate is AlreadyExists."""
        name = values["name"]
        try:
            with self._tx() as s:
                row = add_row(s, table, **values)
                self._audit(s, "admin", event, f"{what}:{name}", {"role": values["role"]})
                return row
        except StoreError as e:
            if isinstance(e.__cause__, IntegrityError):
                raise AlreadyExists(what, name) from e.__cause__
            raise

    # -- users -----------------------------------------------------------------------------
    def add_user(
        self, name: str, password_hash: str, role: str, slack_user_id: str | None = None
    ) -> UserRow:
        """Create a user; raises AlreadyExists for a taken name or Slack id."""
        values = {"host_id": self.host_id, "name": name, "password_hash": password_hash,
                  "role": role, "slack_user_id": slack_user_id, "created_at": self.now()}
        return _user(self._add_credential(UserTable, values, "user", "user.added"))

    def get_user(self, name: str) -> UserRow | None:
        """A user by name."""
        with self._tx(write=False) as s:
            row = s.execute(sa.select(UserTable).where(UserTable.c.name == name)).first()
            return None if row is None else _user(row)

    def get_user_by_id(self, user_id: int) -> UserRow | None:
        """A user by id."""
        with self._tx(write=False) as s:
            row = get_row(s, UserTable, user_id)
            return None if row is None else _user(row)

    def get_user_by_slack(self, slack_user_id: str) -> UserRow | None:
        """The healer user mapped to a Slack user id."""
        q = sa.select(UserTable).where(UserTable.c.slack_user_id == slack_user_id)
        with self._tx(write=False) as s:
            row = s.execute(q).first()
            return None if row is None else _user(row)

    def list_users(self) -> list[UserRow]:
        """All users, by name."""
        with self._tx(write=False) as s:
            return [_user(r) for r in s.execute(sa.select(UserTable).order_by(UserTable.c.name))]

    def _user_row(self, s: sa.Connection, name: str) -> sa.Row[Any]:
        row = s.execute(sa.select(UserTable).where(UserTable.c.name == name)).first()
        if row is None:
            raise NotFound("user", name)
        return row

    def remove_user(self, name: str, actor: str = "admin") -> None:
        """Delete a user with their tokens and sessions; their votes stop counting."""
        with self._tx() as s:
            row = self._user_row(s, name)
            s.execute(sa.update(ApprovalTable).where(ApprovalTable.c.user_id == row.id)
                      .values(user_id=None))
            s.execute(sa.delete(TokenTable).where(TokenTable.c.user_id == row.id))
            s.execute(sa.delete(SessionTable).where(SessionTable.c.user_id == row.id))
            s.execute(sa.delete(UserTable).where(UserTable.c.id == row.id))
            self._audit(s, actor, "user.removed", f"user:{name}", None)

    def set_password(self, name: str, password_hash: str, actor: str = "admin") -> int:
        """Replace a user's password and end all their sessions; returns sessions ended."""
        with self._tx() as s:
            row = self._user_row(s, name)
            s.execute(sa.update(UserTable).where(UserTable.c.id == row.id)
                      .values(password_hash=password_hash))
            ended = self._end_sessions(s, row.id)
            self._audit(s, actor, "user.password_changed", f"user:{name}",
                        {"sessions_ended": ended})
            return ended

    def set_role(self, name: str, role: str, actor: str = "admin") -> UserRow:
        """Change a user's role; takes effect on their next request, token and vote count."""
        with self._tx() as s:
            before = self._user_row(s, name)
            row = update_row(s, UserTable, before.id, role=role)
            self._audit(s, actor, "user.role_changed", f"user:{name}",
                        {"from": before.role, "to": role})
            return _user(row)

    # -- tokens ----------------------------------------------------------------------------
    def add_token(self, name: str, token_hash: str, role: str, *, user_id: int | None = None,
                  expires_at: datetime | None = None) -> TokenRow:
        """Store an API token's hash (a person's with ``user_id``, else a service's)."""
        values = {"host_id": self.host_id, "name": name, "token_hash": token_hash, "role": role,
                  "created_at": self.now(), "user_id": user_id, "expires_at": expires_at}
        return _token(self._add_credential(TokenTable, values, "token", "token.created"))

    def find_token(self, token_hash: str) -> TokenRow | None:
        """The token with this hash, if any (revoked and expired ones too: check ``usable``)."""
        q = (sa.select(TokenTable, UserTable.c.name.label("owner"))
             .outerjoin(UserTable, UserTable.c.id == TokenTable.c.user_id)
             .where(TokenTable.c.token_hash == token_hash))
        with self._tx(write=False) as s:
            found = s.execute(q).first()
            return None if found is None else _token(found, found.owner)

    def list_tokens(self) -> list[TokenRow]:
        """Every token (never the secret itself), oldest first."""
        q = (sa.select(TokenTable, UserTable.c.name.label("owner"))
             .outerjoin(UserTable, UserTable.c.id == TokenTable.c.user_id)
             .order_by(TokenTable.c.id))
        with self._tx(write=False) as s:
            return [_token(t, t.owner) for t in s.execute(q)]

    def revoke_token(self, token_id: int, actor: str = "admin") -> TokenRow:
        """Revoke one token (idempotent); NotFound for an unknown id."""
        with self._tx() as s:
            row = get_row(s, TokenTable, token_id)
            if row is None:
                raise NotFound("token", token_id)
            if row.revoked_at is None:
                row = update_row(s, TokenTable, token_id, revoked_at=self.now())
                self._audit(s, actor, "token.revoked", f"token:{row.name}", {"id": token_id})
            return _token(row)

    # -- sessions --------------------------------------------------------------------------
    def add_session(self, id_hash: str, user_id: int, expires_at: datetime) -> None:
        """Record a sign-in; the cookie holds the id whose SHA-256 is ``id_hash``."""
        with self._tx() as s:
            s.execute(sa.insert(SessionTable).values(
                host_id=self.host_id, id_hash=id_hash, user_id=user_id, created_at=self.now(),
                expires_at=expires_at))

    def get_session(self, id_hash: str) -> SessionRow | None:
        """A live session by its id's hash; None when unknown, ended or expired."""
        q = sa.select(SessionTable).where(SessionTable.c.id_hash == id_hash,
                                          SessionTable.c.expires_at > self.now())
        with self._tx(write=False) as s:
            row = s.execute(q).first()
            return None if row is None else SessionRow(user_id=row.user_id,
                                                       created_at=row.created_at,
                                                       expires_at=row.expires_at)

    def end_session(self, id_hash: str) -> None:
        """Sign-out: the session is gone on the server, whatever the browser keeps."""
        with self._tx() as s:
            s.execute(sa.delete(SessionTable).where(SessionTable.c.id_hash == id_hash))

    def _end_sessions(self, s: sa.Connection, user_id: int) -> int:
        done = s.execute(sa.delete(SessionTable).where(SessionTable.c.user_id == user_id))
        return int(done.rowcount)
