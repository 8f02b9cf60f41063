"""The Repository's shared plumbing: one short transaction per call, errors translated.

SQLAlchemy Core on a Connection, not the ORM: the root agent carries this store, and the
ORM would cost it ~5 MB. Rows come back as ``sa.Row`` (read by column name).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, TypeVarTuple

import sqlalchemy as sa
from sqlalchemy.exc import SQLAlchemyError

from healer.errors import StoreError
from healer.store.tables import AuditTable

Clock = Callable[[], datetime]
Ts = TypeVarTuple("Ts")
READONLY_OPTION = "healer_readonly"  # engine.py's begin hook opens a deferred transaction
AFTER_COMMIT = "healer_after_commit"  # Connection.info key: what to call once it committed


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
    def _tx(self, *, write: bool = True) -> Iterator[sa.Connection]:
        """One committed transaction; sqlalchemy errors become StoreError."""
        bind = self._engine if write else self._ro_engine
        hooks: list[Callable[[], None]] = []
        try:
            with bind.begin() as conn:
                # Connection.info belongs to the DBAPI connection and outlives this checkout:
                # the hooks of this transaction live in ``hooks``, and leave with it.
                conn.info[AFTER_COMMIT] = hooks
                try:
                    yield conn
                finally:
                    conn.info.pop(AFTER_COMMIT, None)
            for hook in hooks:  # reached only once the transaction committed
                hook()
        except SQLAlchemyError as e:
            raise StoreError(f"database error: {type(e).__name__}: {_short(e)}") from e

    @staticmethod
    def _after_commit(s: sa.Connection, hook: Callable[[], None]) -> None:
        """Call ``hook`` once ``s``'s transaction (a ``_tx``) committed, never when it rolls
        back."""
        hooks: list[Callable[[], None]] | None = s.info.get(AFTER_COMMIT)
        if hooks is None:
            raise StoreError("an after-commit hook outside a repository transaction")
        if hook not in hooks:
            hooks.append(hook)

    def _probe(self, q: sa.Select[*Ts],
               params: Mapping[str, Any] | None = None) -> list[sa.Row[*Ts]]:
        """``q``'s rows (with ``params`` for its bind parameters), read in a read-only
        transaction of its own and rolled back (there is nothing to commit): the probes
        made every cycle."""
        try:
            with self._ro_engine.connect() as conn:
                rows = list(conn.execute(q, params))
                conn.rollback()
                return rows
        except SQLAlchemyError as e:
            raise StoreError(f"database error: {type(e).__name__}: {_short(e)}") from e

    def _audit(
        self, s: sa.Connection, actor: str, event: str, subject: str,
        detail: dict[str, Any] | None
    ) -> None:
        """Add an audit row inside the caller's transaction."""
        s.execute(sa.insert(AuditTable).values(host_id=self.host_id, at=self.now(), actor=actor,
                                               event=event, subject=subject,
                                               detail=detail or {}))

    def _insert_ignore(
        self, session: sa.Connection, table: Any, rows: Sequence[dict[str, Any]],
        keys: Sequence[str]
    ) -> int:
        """INSERT ... ON CONFLICT DO NOTHING (SQLite and PostgreSQL); returns rows inserted."""
        if not rows:
            return 0
        stmt = _insert(session, table).on_conflict_do_nothing(index_elements=list(keys))
        if len(rows) == 1:
            # RETURNING, not rowcount: psycopg reports -1 for SQLAlchemy's compiled INSERT.
            return len(session.execute(stmt.returning(table.c[keys[0]]), rows[0]).all())
        session.execute(stmt, list(rows))
        return len(rows)

    def _upsert(self, session: sa.Connection, table: Any, row: dict[str, Any], keys: Sequence[str],
                update: Sequence[str]) -> None:
        """INSERT, or UPDATE the ``update`` columns of the row with the same ``keys``: one
        atomic statement, where a read-then-insert would let a concurrent writer on
        PostgreSQL (READ COMMITTED) slip in between and fail this one on the unique key."""
        stmt = _insert(session, table)
        stmt = stmt.on_conflict_do_update(index_elements=list(keys),
                                          set_={c: stmt.excluded[c] for c in update})
        session.execute(stmt, row)


def _insert(session: sa.Connection, table: Any) -> Any:
    """The dialect's INSERT, which has ON CONFLICT (SQLite's and PostgreSQL's agree)."""
    # Each dialect's module loads on first use: the PostgreSQL one costs a SQLite host ~2 MB.
    dialect = session.dialect.name
    if dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        return sqlite_insert(table)
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(table)
    raise StoreError(f"unsupported database backend {dialect!r}")


def add_row(s: sa.Connection, table: sa.Table, **values: Any) -> sa.Row[Any]:
    """INSERT one row and return it as stored (its id and server defaults included)."""
    return s.execute(sa.insert(table).values(**values).returning(*table.c)).one()


@functools.cache
def _by_key(table: sa.Table) -> sa.Select[Any]:
    """``table``'s row by primary key (parameters ``pk_0``, ...), built once per table."""
    return sa.select(table).where(*(c == sa.bindparam(f"pk_{i}")
                                    for i, c in enumerate(table.primary_key.columns)))


def get_row(s: sa.Connection, table: sa.Table, *key: Any) -> sa.Row[Any] | None:
    """The row with this primary key (its columns in table order), or None."""
    if len(key) != len(table.primary_key.columns):
        raise ValueError(f"{table.name}: {len(key)} key value(s) for "
                         f"{len(table.primary_key.columns)} key column(s)")
    return s.execute(_by_key(table), {f"pk_{i}": k for i, k in enumerate(key)}).first()


def update_row(s: sa.Connection, table: sa.Table, *key: Any, **values: Any) -> sa.Row[Any]:
    """UPDATE the row with this primary key and return it as stored."""
    where = (c == k for c, k in zip(table.primary_key.columns, key, strict=True))
    return s.execute(sa.update(table).where(*where).values(**values).returning(*table.c)).one()


def _short(e: SQLAlchemyError) -> str:
    # The statement and parameters can carry evidence or hashes; keep the message short.
    orig = getattr(e, "orig", None)
    return str(orig if orig is not None else e).splitlines()[0][:300]
