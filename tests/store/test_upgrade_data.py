"""Upgrading a database that holds real rows at revision 0001 keeps every row."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from alembic import command

from healer.store.engine import alembic_config, migrate, open_engine
from healer.store.repository import Repository

T = datetime(2026, 1, 2, 3, 4, 5)  # naive UTC, as SQLite stores it
HOST = "old-host"
ROWS: dict[str, list[dict[str, Any]]] = {
    "incidents": [{"id": 1, "host_id": HOST, "playbook": "pb", "scope": "host",
                   "status": "open", "severity": "warning", "count": 3, "first_seen": T,
                   "last_seen": T, "evidence": {}, "diagnosis": None}],
    "actions": [{"id": 1, "host_id": HOST, "incident_id": 1, "kind": "sysctl_write",
                 "target": "sysctl_write:host:net.core.somaxconn",
                 "action": {"kind": "sysctl_write", "scope": "host",
                            "key": "net.core.somaxconn", "value": "4096"},
                 "decision": {"verdict": "needs_approval", "reasons": [], "rules": [],
                              "approval": "quorum:2"},
                 "provenance": "playbook", "state": "awaiting_approval", "original": None,
                 "applied": None, "created_at": T, "updated_at": T, "applied_at": None,
                 "deadline": None, "verification": None, "approvals_needed": 2,
                 "rationale": "why"}],
    "users": [{"id": 1, "host_id": HOST, "name": "alice", "password_hash": "$argon2id$x",
               "role": "approver", "slack_user_id": "U1", "created_at": T}],
    "approvals": [
        {"id": 1, "host_id": HOST, "action_id": 1, "user": "alice", "approve": True,
         "comment": "ok", "at": T},
        {"id": 2, "host_id": HOST, "action_id": 1, "user": "alice-bot", "approve": True,
         "comment": "a token's name", "at": T}],
    "tokens": [
        {"id": 1, "host_id": HOST, "name": "alice-bot", "token_hash": "a" * 64,
         "role": "admin", "created_at": T},
        {"id": 2, "host_id": HOST, "name": "alerts", "token_hash": "b" * 64,
         "role": "ingest", "created_at": T}],
    "audit": [{"id": 1, "host_id": HOST, "at": T, "actor": "alice", "event": "user.login",
               "subject": "user:alice", "detail": {}}],
    "kv": [{"host_id": HOST, "namespace": "llm", "key": "k", "value": "v", "expires_at": None,
            "updated_at": T}],
    "outbox": [{"id": 1, "host_id": HOST, "channel": "log", "event": "incident_opened",
                "payload": {}, "dedupe_key": "d", "attempts": 0, "next_attempt": T,
                "created_at": T, "delivered_at": None, "last_error": None, "dead": False}],
    "paused_targets": [{"host_id": HOST, "target": "t", "reason": "drift", "at": T}],
    "raw_samples": [{"id": 1, "host_id": HOST, "name": "load.1m", "ts": T, "value": 0.5}],
    "rollups": [{"id": 1, "host_id": HOST, "name": "load.1m", "minute": T, "min": 0.1,
                 "max": 0.9, "avg": 0.5, "last": 0.4, "count": 60}],
}


def test_upgrading_a_populated_0001_database_keeps_every_row(empty_db_url: str) -> None:
    engine = open_engine(empty_db_url)
    cfg = alembic_config()
    with engine.connect() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0001")
        conn.commit()
    meta = sa.MetaData()
    meta.reflect(engine)
    assert set(ROWS) == set(meta.tables) - {"alembic_version"}  # a row in every table
    with engine.begin() as conn:
        for table, rows in ROWS.items():
            conn.execute(meta.tables[table].insert(), rows)

    migrate(engine)

    with engine.connect() as conn:
        for table, rows in ROWS.items():
            count = conn.execute(sa.select(sa.func.count()).select_from(sa.table(table)))
            assert count.scalar() == len(rows), table
    repo = Repository(engine, HOST, clock=lambda: datetime.now(UTC))
    record = repo.get_action(1)
    assert record is not None and record.approvals_needed == 2
    votes = {v.user: v.user_id for v in repo.list_approvals(1)}
    assert votes == {"alice": 1, "alice-bot": None}  # a token's name is no person
    tokens = {t.name: t for t in repo.list_tokens()}
    assert tokens["alice-bot"].revoked_at is not None  # a person's token without an owner
    assert tokens["alerts"].revoked_at is None and tokens["alerts"].role == "ingest"
    user = repo.get_user("alice")
    assert user is not None and user.slack_user_id == "U1"
    assert repo.list_audit()[0].subject == "user:alice"
    assert repo.kv_get("llm", "k") == "v"
    assert repo.paused_targets() == {"t"}
    engine.dispose()
