"""The simulation's workers: their agents share compiled SQL, each reading its own journal."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from healer.models import Incident
from healer.sim.agent import SharedCompiledSQL, template_journal
from healer.store.repository import Repository
from healer.store.tables import IncidentTable


def _journal(tmp_path: Path, template: Path, name: str) -> Path:
    path = tmp_path / f"{name}.db"
    path.write_bytes(template.read_bytes())
    return path


def _hits(engine: sa.Engine) -> list[bool]:
    """Whether each statement ``engine`` runs from here on found its compiled SQL (raw
    SQL, such as the journal's ``BEGIN IMMEDIATE``, has nothing to find)."""
    seen: list[bool] = []

    def look(conn: Any, cursor: Any, stmt: str, params: Any, ctx: Any, many: bool) -> None:
        if ctx.cache_hit != ctx.dialect.NO_CACHE_KEY:
            seen.append(ctx.cache_hit == ctx.dialect.CACHE_HIT)

    sa.event.listen(engine, "after_cursor_execute", look)
    return seen


def test_a_second_agent_runs_what_the_first_compiled_on_its_own_journal(
        tmp_path: Path) -> None:
    template = template_journal(tmp_path / "template.db")
    shared = SharedCompiledSQL()
    first = Repository(shared.engine(_journal(tmp_path, template, "a")), "host-a")
    second = Repository(shared.engine(_journal(tmp_path, template, "b")), "host-b")
    now = datetime.now(UTC)
    first.open_incident(Incident(host_id="host-a", playbook="p", scope="host",
                                 first_seen=now, last_seen=now))
    compiled = len(shared)
    hits = _hits(second.engine)
    second.open_incident(Incident(host_id="host-b", playbook="p", scope="host",
                                  first_seen=now, last_seen=now))
    assert hits and all(hits)  # nothing compiled again ...
    assert len(shared) == compiled
    for repo, host in ((first, "host-a"), (second, "host-b")):  # ... each in its own file
        with repo.engine.connect() as c:
            assert c.execute(sa.select(IncidentTable.c.host_id)).scalars().all() == [host]


def test_a_dialect_that_would_compile_differently_gets_its_own_sql(tmp_path: Path) -> None:
    template = template_journal(tmp_path / "template.db")
    shared = SharedCompiledSQL()
    query = sa.select(IncidentTable.c.id).where(IncidentTable.c.host_id == "h")
    first = shared.engine(_journal(tmp_path, template, "a"))
    with first.connect() as c:
        c.execute(query).all()
    other = shared.engine(_journal(tmp_path, template, "b"))
    with other.connect() as c:
        c.execute(sa.text("select 1"))  # connected: the dialect has read its version
    other.dialect.server_version_info = (3, 7, 0)  # an older SQLite: other SQL
    hits = _hits(other)
    with other.connect() as c:
        c.execute(query).all()
    assert hits == [False]


def test_a_key_of_another_shape_is_kept_as_it_is() -> None:
    shared = SharedCompiledSQL(capacity=10)
    shared[("not", "a dialect")] = 1
    assert shared.get(("not", "a dialect")) == 1 and shared.get("absent", 2) == 2
