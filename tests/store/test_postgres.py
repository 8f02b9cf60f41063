"""PostgreSQL only: concurrent writers under READ COMMITTED, migration races, the pool.

Races are made deterministic with a second connection that holds a row (or a unique key)
in an open transaction: the repository call under test is started in a thread, the test
waits until PostgreSQL reports that thread's backend waiting on a lock, then commits.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from healer.models import ActionState
from healer.settings import Settings
from healer.store.engine import (
    current_revisions,
    head_revisions,
    open_engine,
    open_store,
    upgrade_in_child,
)
from healer.store.errors import StaleState
from healer.store.repository import Repository
from tests.pg import PgServer, url_database

from .conftest import HOST, T0, FakeClock, make_record

S = ActionState
LOCK_WAIT_TIMEOUT_S = 10.0


def _waiting_on_locks(engine: sa.Engine) -> int:
    q = sa.text("SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = current_database() AND wait_event_type = 'Lock'")
    with engine.connect() as conn:
        return int(conn.execute(q).scalar_one())


def _while_held(engine: sa.Engine, hold: sa.Executable, call: Callable[[], Any]) -> Any:
    """Run ``hold`` in an open transaction, start ``call`` in a thread, wait until that
    thread blocks on the held lock, commit, and return what ``call`` returned (or raise
    what it raised)."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = call()
        except BaseException as e:  # handed back to the test
            outcome["error"] = e

    with engine.connect() as holder:
        holder.execute(hold)  # uncommitted: its row lock is held until commit
        worker = threading.Thread(target=run)
        worker.start()
        deadline = time.monotonic() + LOCK_WAIT_TIMEOUT_S
        while _waiting_on_locks(engine) == 0:
            assert worker.is_alive(), f"call finished without waiting: {outcome}"
            assert time.monotonic() < deadline, "call never waited on the held lock"
            time.sleep(0.01)
        holder.commit()
    worker.join(timeout=LOCK_WAIT_TIMEOUT_S)
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


@pytest.fixture
def pg_repo(pg_head_url: str) -> Iterator[Repository]:
    engine = open_engine(pg_head_url)
    yield Repository(engine, HOST, clock=FakeClock())
    engine.dispose()


def test_a_transition_that_waited_on_a_concurrent_one_names_the_winners_state(
        pg_repo: Repository) -> None:
    rec = pg_repo.add_action(make_record(state=S.AWAITING_APPROVAL))
    assert rec.id is not None
    expire = sa.text("UPDATE actions SET state = 'expired' WHERE id = :id").bindparams(id=rec.id)
    with pytest.raises(StaleState) as err:
        _while_held(pg_repo.engine, expire,
                    lambda: pg_repo.transition(rec.id or 0, S.APPROVED,
                                               expect={S.AWAITING_APPROVAL}))
    assert err.value.actual == "expired"
    assert pg_repo.get_action(rec.id).state == S.EXPIRED  # type: ignore[union-attr]
    assert [a.event for a in pg_repo.list_audit(subject=f"action:{rec.id}")] == ["action.added"]


def _race(repos: list[Repository], targets: tuple[ActionState, ...], action_id: int) -> list[str]:
    """Every repository tries its target at once; each returns the state or "stale:<seen>"."""
    barrier = threading.Barrier(len(repos))

    def decide(repo: Repository, to: ActionState) -> str:
        barrier.wait()
        try:
            return repo.transition(action_id, to, expect={S.AWAITING_APPROVAL}).state
        except StaleState as e:
            return f"stale:{e.actual}"

    with ThreadPoolExecutor(len(repos)) as pool:
        return list(pool.map(decide, repos, targets))


def test_concurrent_transitions_from_many_connections_have_exactly_one_winner(
        pg_head_url: str) -> None:
    engines = [open_engine(pg_head_url) for _ in range(4)]
    repos = [Repository(e, HOST) for e in engines]
    try:
        for _ in range(5):
            rec = repos[0].add_action(make_record(state=S.AWAITING_APPROVAL))
            assert rec.id is not None
            outcomes = _race(repos, (S.APPROVED, S.REJECTED, S.EXPIRED, S.APPROVED), rec.id)
            winners = [o for o in outcomes if not o.startswith("stale:")]
            assert len(winners) == 1, outcomes
            assert outcomes.count(f"stale:{winners[0]}") == len(repos) - 1
            moves = [a for a in repos[0].list_audit(subject=f"action:{rec.id}")
                     if a.event == "action.transition"]
            assert len(moves) == 1 and moves[0].detail["to"] == winners[0]
    finally:
        for e in engines:
            e.dispose()


def test_kv_put_racing_an_insert_of_the_same_key_overwrites_it(pg_repo: Repository) -> None:
    other = sa.text("INSERT INTO kv (host_id, namespace, key, value, updated_at) "
                    "VALUES (:h, 'llm', 'k', 'theirs', :t)").bindparams(h=HOST, t=T0)
    _while_held(pg_repo.engine, other, lambda: pg_repo.kv_put("llm", "k", "ours", 60))
    assert pg_repo.kv_get("llm", "k") == "ours"


def test_a_vote_racing_the_same_persons_vote_replaces_it(pg_repo: Repository) -> None:
    alice = pg_repo.add_user("alice", "h", "approver")
    rec = pg_repo.add_action(make_record(state=S.AWAITING_APPROVAL))
    other = sa.text('INSERT INTO approvals (host_id, action_id, "user", user_id, approve, '
                    "comment, at) VALUES (:h, :a, 'alice', :u, true, 'web', :t)").bindparams(
                        h=HOST, a=rec.id, u=alice.id, t=T0)
    votes = _while_held(pg_repo.engine, other,
                        lambda: pg_repo.add_approval(rec.id or 0, "alice", False, "slack"))
    assert [(v.user, v.approve, v.comment) for v in votes] == [("alice", False, "slack")]


def test_pausing_a_target_racing_another_pause_keeps_one_row(pg_repo: Repository) -> None:
    target = "sysctl_write:host:net.core.somaxconn"
    other = sa.text("INSERT INTO paused_targets (host_id, target, reason, at) "
                    "VALUES (:h, :g, 'drift', :t)").bindparams(h=HOST, g=target, t=T0)
    _while_held(pg_repo.engine, other, lambda: pg_repo.pause_target(target, "drift again"))
    assert pg_repo.paused_targets() == {target}


def test_replicas_migrating_one_fresh_database_at_once_all_succeed(pg_url: str) -> None:
    # Processes, like replicas (alembic's ``context`` and ``op`` are process-global).
    with ThreadPoolExecutor(3) as pool:
        list(pool.map(upgrade_in_child, [pg_url] * 3))  # re-raises the first StoreError
    engine = open_engine(pg_url)
    try:
        assert current_revisions(engine) == head_revisions()
    finally:
        engine.dispose()


def _connections(engine: sa.Engine, application: str) -> int:
    q = sa.text("SELECT count(*) FROM pg_stat_activity WHERE application_name = :a")
    with engine.connect() as conn:
        return int(conn.execute(q.bindparams(a=application)).scalar_one())


def test_the_pool_bounds_connections_whatever_the_number_of_callers(
        pg_head_url: str, tmp_path: Path) -> None:
    app = "healer-pool-test"
    url = f"{pg_head_url}&application_name={app}"
    settings = Settings(state_dir=tmp_path, database_url=url, host_id=HOST, db_pool_size=2,
                        db_max_overflow=1)
    repo = open_store(settings)
    watcher = open_engine(pg_head_url)
    peak = 0
    stop = threading.Event()

    def caller(i: int) -> None:
        while not stop.is_set():
            repo.kv_put("t", str(i), "v")
            repo.kv_get("t", str(i))

    try:
        with ThreadPoolExecutor(12) as pool:
            callers = [pool.submit(caller, i) for i in range(12)]
            deadline = time.monotonic() + 2.0
            while time.monotonic() < deadline:
                peak = max(peak, _connections(watcher, app))
            stop.set()
            for done in callers:
                done.result()  # every caller got a connection in the end: none failed
    finally:
        stop.set()
        repo.engine.dispose()
        watcher.dispose()
    assert 2 <= peak <= 3  # db_pool_size + db_max_overflow, though 12 threads call at once


def test_a_dropped_test_database_is_gone(pg_server: PgServer) -> None:
    url = pg_server.create_database()
    pg_server.drop_database(url)
    with pg_server.connect() as conn:
        names = [r[0] for r in conn.execute("SELECT datname FROM pg_database")]
    assert url_database(url) not in names
