"""The Repository's shared plumbing: one short transaction per call, errors translated."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from healer.errors import StoreError
from healer.store.tables import AuditTable

Clock = Callable[[], datetime]
READONLY_OPTION = "healer_readonly"  # engine.py's begin hook opens a deferred transaction


def utcnow() -> datetime:
    """The current time, tz-aware UTC."""
    return datetime.now(UTC)


class RepoBase:
    """Holds the engine, the host id and the clock; every method runs in its own transaction."""

    def __init__(self, engine: sa.Engine, host_id: str, clock: Clock = utcnow) -> None:
        self._engine = engine
        self._ro_engine = engine.execution_options(**{READONLY_OPTION: True})
        self.host_id = host_id
        self._clock = clock

    @property
    def engine(self) -> sa.Engine:
        return self._engine

    def now(self) -> datetime:
        """The repository clock (tz-aware UTC)."""
        return self._clock()

    @contextmanager
    def _tx(self, *, write: bool = True) -> Iterator[Session]:
        """One committed transaction; sqlalchemy errors become StoreError."""
        bind = self._engine if write else self._ro_engine
        try:
            with Session(bind, expire_on_commit=False) as session, session.begin():
                yield session
        except SQLAlchemyError as e:
            raise StoreError(f"database error: {type(e).__name__}: {_short(e)}") from e

    def _audit(
        self, s: Session, actor: str, event: str, subject: str, detail: dict[str, Any] | None
    ) -> None:
        """Add an audit row inside the caller's transaction."""
        s.add(
            AuditTable(
                host_id=self.host_id,
                at=self.now(),
                actor=actor,
                event=event,
                subject=subject,
                detail=detail or {},
            )
        )

    def _insert_ignore(
        self, session: Session, table: Any, rows: Sequence[dict[str, Any]], keys: Sequence[str]
    ) -> int:
        """INSERT ... ON CONFLICT DO NOTHING (SQLite and PostgreSQL); returns rows inserted."""
        if not rows:
            return 0
        stmt = _insert_ignore_stmt(session.get_bind().dialect.name, table, keys)
        if len(rows) == 1:
            return int(session.execute(stmt, rows[0]).rowcount)  # type: ignore[attr-defined]
        session.execute(stmt, list(rows))
        return len(rows)


def _insert_ignore_stmt(dialect: str, table: Any, keys: Sequence[str]) -> Any:
    # Each dialect's module loads on first use: the PostgreSQL one costs a SQLite host ~2 MB.
    if dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        return sqlite_insert(table).on_conflict_do_nothing(index_elements=list(keys))
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(table).on_conflict_do_nothing(index_elements=list(keys))
    raise StoreError(f"unsupported database backend {dialect!r}")


def _short(e: SQLAlchemyError) -> str:
    # The statement and parameters can carry evidence or hashes; keep the message short.
    orig = getattr(e, "orig", None)
    return str(orig if orig is not None else e).splitlines()[0][:300]
