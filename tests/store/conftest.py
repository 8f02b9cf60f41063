"""Store fixtures: every repository test runs on a real SQLite file and on a real
PostgreSQL database (tests/pg.py); a settable clock.

``db_url`` and ``engine`` name a database at the head schema (on PostgreSQL a copy of a
template migrated once); ``empty_db_url`` one that has never been migrated.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from guardrails.actions import parse_action
from guardrails.decision import Decision
from healer.models import ActionRecord, ActionState, Incident
from healer.store.engine import migrate, open_engine
from healer.store.repository import Repository

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
HOST = "node-a"


class FakeClock:
    """A clock tests move by hand."""

    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


BACKENDS = ("sqlite", "postgresql")


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def db_url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    if backend == "postgresql":
        return str(request.getfixturevalue("pg_head_url"))
    return f"sqlite:///{tmp_path / 'healer.db'}"  # created and migrated by ``engine``


@pytest.fixture
def empty_db_url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    if backend == "postgresql":
        return str(request.getfixturevalue("pg_url"))
    return f"sqlite:///{tmp_path / 'empty.db'}"


@pytest.fixture
def engine(db_url: str) -> Iterator[sa.Engine]:
    eng = open_engine(db_url)
    migrate(eng)
    yield eng
    eng.dispose()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def repo(engine: sa.Engine, clock: FakeClock) -> Repository:
    return Repository(engine, HOST, clock=clock)


def make_incident(playbook: str = "listen-backlog-too-small", scope: str = "netns:t1") -> Incident:
    return Incident(host_id=HOST, playbook=playbook, scope=scope, first_seen=T0, last_seen=T0)


def make_record(
    key: str = "net.core.somaxconn",
    value: str = "4096",
    incident_id: int | None = None,
    state: ActionState = ActionState.PROPOSED,
) -> ActionRecord:
    action = parse_action({"kind": "sysctl_write", "scope": "netns:t1", "key": key, "value": value})
    return ActionRecord(
        host_id=HOST,
        incident_id=incident_id,
        action=action,
        decision=Decision(verdict="allow", reasons=("within policy",), rules=("R-somaxconn",)),
        state=state,
        created_at=T0,
        updated_at=T0,
    )
