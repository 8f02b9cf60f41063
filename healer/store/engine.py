"""Open the database, apply migrations, and build a Repository for the daemon or the CLI.

SQLite is the single-host default. The daemon and the CLI (``healer approve``) open the
same file from two processes, so it runs in WAL mode (readers never block the writer)
with ``synchronous=FULL``: in WAL mode a commit is durable across power loss only when
FULL syncs the WAL on every commit (https://www.sqlite.org/pragma.html#pragma_synchronous).

PostgreSQL (``postgresql+psycopg://``) is the fleet's shared store. Every engine holds a
bounded pool (``db_pool_size`` + ``db_max_overflow``), so callers share connections and
the server sees at most that many from one process; migrations on PostgreSQL run under
an advisory lock, so replicas starting together upgrade the schema once.
"""

from __future__ import annotations

import logging
import re
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import sqlalchemy as sa
from pydantic_core import to_json
from sqlalchemy.exc import SQLAlchemyError

from healer.errors import StoreError
from healer.settings import Settings
from healer.store.repo_base import READONLY_OPTION
from healer.store.repository import Repository

if TYPE_CHECKING:
    from alembic.config import Config

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
BUSY_TIMEOUT_MS = 5000
# Connections kept open per process, and extra ones opened under load then closed.
POOL_SIZE: int = Settings.model_fields["db_pool_size"].default
MAX_OVERFLOW: int = Settings.model_fields["db_max_overflow"].default
# pg_advisory_lock key for schema upgrades: any constant that no other lock user picks.
MIGRATION_LOCK_KEY = 0x6865616C6572  # "healer"
UPGRADE_TIMEOUT_S = 300.0
# The repository identity of a control plane (``healer serve`` on PostgreSQL): every
# replica writes its own rows (audit, the LLM's cache and budget) under this one id.
CONTROL_PLANE = "control-plane"  # a long migration on a big PostgreSQL table; SQLite takes < 1 s


def _on_sqlite_connect(dbapi_conn: Any, _record: Any) -> None:
    # Let SQLAlchemy emit BEGIN itself (the "begin" hook below); pysqlite's implicit
    # transactions would otherwise delay BEGIN past the first SELECT and break CAS writes.
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    try:
        cur.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=FULL")
        cur.execute("PRAGMA foreign_keys=ON")
    finally:
        cur.close()


def _on_sqlite_begin(conn: sa.Connection) -> None:
    # Writers take the RESERVED lock up front (BEGIN IMMEDIATE), so a read-then-write
    # transaction can never fail half way with SQLITE_BUSY_SNAPSHOT; busy_timeout queues
    # them instead. Read-only calls use a deferred BEGIN and never wait on a writer in WAL.
    # Sent on the driver's connection: a statement of SQLAlchemy's own (exec_driver_sql)
    # costs ~7 times as much, and every journal call begins one. SQLAlchemy does not wrap
    # what this hook raises, so a failure is wrapped here as its own would be.
    readonly = conn.get_execution_options().get(READONLY_OPTION, False)
    statement = "BEGIN" if readonly else "BEGIN IMMEDIATE"
    try:
        conn.connection.driver_connection.execute(statement)  # type: ignore[union-attr]
    except sqlite3.Error as e:
        raise sa.exc.DBAPIError.instance(statement, None, e, sqlite3.Error) from e


def _json_dumps(value: Any) -> str:
    # JSON columns may be handed datetimes or enums inside verification details; store
    # them the way pydantic's JSON mode would rather than failing the journal write.
    # Standard JSON on every backend: PostgreSQL rejects the bare NaN/Infinity that
    # json.dumps writes (a baseline score can be inf), so those become "NaN"/"Infinity"
    # strings, which the typed models (Evidence, Diagnosis) parse back into floats.
    return to_json(value, inf_nan_mode="strings").decode()


def safe_url(url: str) -> str:
    """``url`` for messages and logs: the password masked, or nothing when it does not parse."""
    try:
        return sa.make_url(url).render_as_string(hide_password=True)
    except (SQLAlchemyError, ValueError):
        return "(unparsable database URL)"


def scrub(text: str, url: str) -> str:
    """``text`` with the URL's password masked wherever it occurs (a driver may echo it)."""
    try:
        password = sa.make_url(url).password
    except (SQLAlchemyError, ValueError):
        password = urlsplit(url).password if "://" in url else None
    return text.replace(password, "***") if password else text


def _store_error(what: str, url: str, e: Exception) -> StoreError:
    # Raised ``from None``: the foreign error's own text may hold the URL, password included,
    # and a logged traceback would print it; its scrubbed message is kept here instead.
    return StoreError(scrub(f"{what} {safe_url(url)}: {e}", url))


def open_engine(url: str, *, pool_size: int = POOL_SIZE,
                max_overflow: int = MAX_OVERFLOW) -> sa.Engine:
    """Create an engine with a bounded pool; SQLite gets WAL, synchronous=FULL, foreign
    keys and a busy timeout. No message or log line carries the URL's password
    (``safe_url``, ``scrub``)."""
    pool = {"pool_size": pool_size, "max_overflow": max_overflow}
    try:
        sa_url = sa.make_url(url)
        if sa_url.get_backend_name() != "sqlite":
            return sa.create_engine(sa_url, pool_pre_ping=True, json_serializer=_json_dumps,
                                    **pool)
        if sa_url.database in (None, "", ":memory:"):
            pool = {}  # one shared in-memory connection (SingletonThreadPool): no sizes
        engine = sa.create_engine(
            sa_url, connect_args={"check_same_thread": False}, json_serializer=_json_dumps,
            **pool,
        )
    except (SQLAlchemyError, ValueError, ImportError) as e:
        raise _store_error("cannot open database", url, e) from None
    sa.event.listen(engine, "connect", _on_sqlite_connect)
    sa.event.listen(engine, "begin", _on_sqlite_begin)
    return engine


def alembic_config() -> Config:
    """An Alembic Config built in code; script_location is the packaged migrations dir.

    It carries no URL: ``migrate`` hands env.py an open connection instead, so neither a
    password nor a ``%`` in the URL (configparser interpolation) ever reaches it.
    """
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    return cfg


_REVISION_LINE = re.compile(r"^(down_revision|revision)\b[^=]*=\s*(.+)$", re.MULTILINE)
_QUOTED = re.compile(r"[\"']([^\"']+)[\"']")


def head_revisions(versions_dir: Path = MIGRATIONS_DIR / "versions") -> frozenset[str]:
    """The head revision ids, read from the ``revision =`` lines of the migration files.

    Importing alembic costs the daemon about 11 MB (alembic, mako, pygments); this read
    lets a start-up at head skip it. A test checks it against ``ScriptDirectory.get_heads``.
    """
    revisions: set[str] = set()
    parents: set[str] = set()
    for path in versions_dir.glob("*.py"):
        for key, value in _REVISION_LINE.findall(path.read_text()):
            ids = _QUOTED.findall(value)
            (revisions if key == "revision" else parents).update(ids)
    return frozenset(revisions - parents)


def current_revisions(engine: sa.Engine) -> frozenset[str]:
    """The revisions stamped in ``alembic_version``; empty on a fresh database."""
    with engine.connect() as conn:
        if not sa.inspect(conn).has_table("alembic_version"):
            return frozenset()
        rows = conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalars()
        return frozenset(str(r) for r in rows)


def at_head(engine: sa.Engine) -> bool:
    """Whether the database is stamped with exactly the head revision(s)."""
    try:
        heads = head_revisions()
        return bool(heads) and current_revisions(engine) == heads
    except SQLAlchemyError as e:
        url = engine.url.render_as_string(hide_password=False)
        raise StoreError(scrub(f"migration failed: {e}", url)) from None


def _in_memory(engine: sa.Engine) -> bool:
    return engine.url.get_backend_name() == "sqlite" and engine.url.database in (None, "",
                                                                                 ":memory:")


def migrate(engine: sa.Engine) -> None:
    """Bring the schema to the newest revision (``alembic upgrade head``); safe to repeat."""
    if at_head(engine):
        return  # the common restart: alembic is never imported
    from alembic import command

    cfg = alembic_config()
    try:
        with engine.connect() as conn, _migration_lock(conn):
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")  # re-reads the version under the lock
            conn.commit()
    except SQLAlchemyError as e:
        url = engine.url.render_as_string(hide_password=False)
        raise StoreError(scrub(f"migration failed: {e}", url)) from None


@contextmanager
def _migration_lock(conn: sa.Connection) -> Iterator[None]:
    """On PostgreSQL, one migrator at a time: two control-plane replicas starting on a
    fresh database would otherwise both CREATE TABLE, and one would fail."""
    if conn.dialect.name != "postgresql":
        yield
        return
    conn.exec_driver_sql(f"SELECT pg_advisory_lock({MIGRATION_LOCK_KEY})")
    conn.commit()  # the lock is the session's; the upgrade runs in its own transaction
    try:
        yield
    finally:
        conn.rollback()  # a failed upgrade leaves an aborted transaction behind
        conn.exec_driver_sql(f"SELECT pg_advisory_unlock({MIGRATION_LOCK_KEY})")
        conn.commit()


def upgrade_in_child(url: str) -> None:
    """Run ``migrate`` on ``url`` in a child interpreter (``python -m healer.store.upgrade``,
    the URL on stdin, never in argv); raise StoreError if it fails."""
    try:
        done = subprocess.run([sys.executable, "-m", "healer.store.upgrade"], input=url,
                              capture_output=True, text=True, timeout=UPGRADE_TIMEOUT_S,
                              check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise StoreError(f"migration failed: {e}") from e
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines() or [f"exit code {done.returncode}"]
        raise StoreError(lines[-1].removeprefix("StoreError: "))


migrate_to_head = migrate  # open_store's ``migrate`` flag shadows the function's name


def open_store(settings: Settings, *, isolate_migration: bool = False,
               migrate: bool = True) -> Repository:
    """Create the state dir, open and migrate the database, and return a Repository.

    ``isolate_migration`` (the daemon) runs an upgrade, when one is due, in a child
    process (healer.store.upgrade) so alembic never stays resident; an in-memory SQLite
    database cannot be shared with a child and is always migrated here. ``migrate=False``
    (``healer serve`` under an agent): the schema must already be at head.
    """
    try:
        settings.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as e:
        raise StoreError(f"cannot create state dir {settings.state_dir}: {e}") from e
    engine = open_engine(settings.db_url, pool_size=settings.db_pool_size,
                         max_overflow=settings.db_max_overflow)
    if not migrate:
        if not _in_memory(engine) and not at_head(engine):
            raise StoreError("the database schema is not at head yet (the agent migrates it)")
    elif isolate_migration and not _in_memory(engine):
        if not at_head(engine):
            upgrade_in_child(engine.url.render_as_string(hide_password=False))
    else:
        migrate_to_head(engine)
    log.info("store opened: url=%s host_id=%s", safe_url(settings.db_url), settings.host_id)
    return Repository(engine, settings.host_id)


def is_fleet(settings: Settings) -> bool:
    """Whether ``settings`` name a shared PostgreSQL database (a fleet's control plane)."""
    try:
        return sa.make_url(settings.db_url).get_backend_name() == "postgresql"
    except (SQLAlchemyError, ValueError):
        return False


def open_control_plane(settings: Settings) -> Repository:
    """The control plane's repository: migrated (replicas starting together upgrade once,
    under the migration lock) and writing as ``CONTROL_PLANE``."""
    return open_store(settings.model_copy(update={"host_id": CONTROL_PLANE}))
