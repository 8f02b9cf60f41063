"""The schema comes from Alembic, matches tables.py, and SQLite runs durable (WAL, FULL)."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from healer.errors import StoreError
from healer.models import IncidentStatus
from healer.settings import Settings
from healer.store.engine import (
    alembic_config,
    head_revisions,
    migrate,
    open_engine,
    open_store,
    upgrade_in_child,
)
from healer.store.repository import Repository
from healer.store.tables import metadata


def _revision(engine: sa.Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def test_migrations_create_every_table_on_an_empty_database(empty_db_url: str) -> None:
    engine = open_engine(empty_db_url)
    assert sa.inspect(engine).get_table_names() == []
    migrate(engine)
    tables = set(sa.inspect(engine).get_table_names())
    assert set(metadata.tables) <= tables
    assert {_revision(engine)} == head_revisions()
    engine.dispose()


def test_migrate_is_idempotent_on_restart(empty_db_url: str) -> None:
    first = open_engine(empty_db_url)
    migrate(first)
    first.dispose()
    second = open_engine(empty_db_url)  # a restart: new engine, same database
    migrate(second)
    migrate(second)
    assert {_revision(second)} == head_revisions()
    second.dispose()


def test_migrated_schema_matches_table_metadata(engine: sa.Engine) -> None:
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        diffs = compare_metadata(ctx, metadata)
    assert diffs == []


def test_sqlite_runs_in_wal_with_full_sync_and_foreign_keys(tmp_path: Path) -> None:
    engine = open_engine(f"sqlite:///{tmp_path / 'healer.db'}")
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 5000
    engine.dispose()


def test_open_store_creates_state_dir_and_binds_host(tmp_path: Path) -> None:
    state = tmp_path / "state" / "nested"
    repo = open_store(Settings(state_dir=state, host_id="gpu-7"))
    assert (state / "healer.db").exists()
    assert repo.host_id == "gpu-7"
    assert repo.integrity_check() == "ok"
    repo.engine.dispose()


def test_head_revisions_read_from_files_agree_with_alembic() -> None:
    script = ScriptDirectory.from_config(alembic_config())
    assert head_revisions() == frozenset(script.get_heads())


def test_migration_history_is_one_chain_with_a_single_head() -> None:
    script = ScriptDirectory.from_config(alembic_config())
    assert len(script.get_heads()) == 1, script.get_heads()
    assert len(script.get_bases()) == 1
    chain = list(script.walk_revisions())  # head to base; raises on a broken chain
    assert chain[-1].revision == "0001"


def test_daemon_store_migrates_a_fresh_database_without_importing_alembic(tmp_path: Path) -> None:
    code = (
        "import sys; from pathlib import Path; from healer.settings import Settings;"
        "from healer.store.engine import open_store, at_head;"
        f"repo = open_store(Settings(state_dir=Path({str(tmp_path)!r})), isolate_migration=True);"
        "print(at_head(repo.engine), 'alembic' in sys.modules)"
    )
    for _ in range(2):  # fresh, then a restart at head
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             check=True).stdout.split()
        assert out == ["True", "False"]


def test_corrupt_database_stops_the_daemon_store_with_a_store_error(tmp_path: Path) -> None:
    (tmp_path / "healer.db").write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError, match="migration failed"):
        open_store(Settings(state_dir=tmp_path), isolate_migration=True)


def test_failed_child_upgrade_is_one_store_error_line(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="unable to open database") as err:
        upgrade_in_child(f"sqlite:///{tmp_path / 'missing' / 'healer.db'}")
    assert "\n" not in str(err.value)


def test_a_database_at_0001_upgrades_keeping_its_incidents_without_a_subject(
        empty_db_url: str) -> None:
    from alembic import command

    engine = open_engine(empty_db_url)
    cfg = alembic_config()
    with engine.connect() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0001")
        conn.exec_driver_sql(
            "INSERT INTO incidents (host_id, playbook, scope, status, severity, count, "
            "first_seen, last_seen, evidence) VALUES ('h', 'soft-lockup', 'host', 'open', "
            "'critical', 3, '2026-01-01 00:00:00', '2026-01-01 00:00:00', '{}')")
        conn.commit()
    migrate(engine)
    assert len(head_revisions()) == 1 and _revision(engine) in head_revisions()
    with engine.connect() as conn:
        row = conn.exec_driver_sql("SELECT playbook, subject, count FROM incidents").one()
        assert tuple(row) == ("soft-lockup", "", 3)
    assert "silences" in sa.inspect(engine).get_table_names()
    engine.dispose()


def test_a_writer_kept_from_the_lock_gets_a_store_error_and_readers_go_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # BEGIN IMMEDIATE goes on the driver's connection: its failure must still reach the
    # caller as the store's own error, and the connection must stay usable.
    monkeypatch.setattr("healer.store.engine.BUSY_TIMEOUT_MS", 50)
    path = tmp_path / "healer.db"
    engine = open_engine(f"sqlite:///{path}")
    migrate(engine)
    repo = Repository(engine, "h1")
    holder = sqlite3.connect(path, isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")
        with pytest.raises(StoreError, match=r"^database error: OperationalError: database "
                                             r"is locked"):
            repo.add_audit("healer", "probe", "journal", None)
        assert repo.count_incidents(IncidentStatus.OPEN) == 0  # a deferred BEGIN: no wait
    finally:
        holder.rollback()
        holder.close()
    repo.add_audit("healer", "probe", "journal", None)
    assert [a.event for a in repo.list_audit()] == ["probe"]
    engine.dispose()
