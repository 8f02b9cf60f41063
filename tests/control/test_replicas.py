"""Two real ``healer serve`` replicas on one real PostgreSQL, spoken to over HTTP as agents
and Alertmanager speak to them: a lease is granted once whichever replica is asked, a
NOTIFY sent through one wakes a long poll held by the other, the same alert delivered to
both is one incident, and the periodic jobs (one replica at a time) reclaim a dead
agent's lease within two TTLs, whose late outcome the next host waits for."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from healer.store.credentials import hash_password, hash_token, new_token
from healer.store.engine import CONTROL_PLANE, open_engine
from healer.store.repository import Repository
from tests.pg import PgServer
from tests.serve import Replica, agent_headers, cli, fleet_policy, heartbeat, replicas

TTL = 2.0
POOL, OVERFLOW = 3, 1  # each replica's pool: at most 4 connections, plus its LISTEN
REMEDY = {"playbook": "listen-backlog-too-small", "kind": "sysctl_write",
          "target": "net.core.somaxconn"}
FP = "listen-backlog-too-small|host"


@pytest.fixture(scope="module")
def db(pg_server: PgServer, pg_head_template: str) -> Iterator[str]:
    url = pg_server.create_database(pg_head_template)
    yield url
    pg_server.drop_database(url)


@pytest.fixture(scope="module")
def policy_file() -> Iterator[Path]:
    """The shipped policy with a short lease TTL, so a reclaim fits in a test."""
    with fleet_policy(lease_ttl_seconds=TTL) as path:
        yield path


@pytest.fixture(scope="module")
def pair(db: str, policy_file: Path) -> Iterator[list[Replica]]:
    env = {"HEALER_POLICY_FILE": str(policy_file), "HEALER_DB_POOL_SIZE": str(POOL),
           "HEALER_DB_MAX_OVERFLOW": str(OVERFLOW)}
    with replicas(db, 2, env) as started:
        yield started


@pytest.fixture(scope="module")
def repo(db: str) -> Iterator[Repository]:
    """The test's own view of the database (for what needs no CLI process)."""
    engine = open_engine(db, pool_size=2, max_overflow=0)
    yield Repository(engine, CONTROL_PLANE)
    engine.dispose()


def add_host(db: str, host: str) -> str:
    """``healer host add``: the token is the last line printed."""
    return cli(db, "host", "add", host).strip().splitlines()[-1]


def report_incident(replica: Replica, host: str, token: str, ago: float = 600.0) -> None:
    at = (datetime.now(UTC) - timedelta(seconds=ago)).isoformat()
    body = {"host_id": host, "reports": [{"seq": 1, "kind": "incident", "at": at, "incident": {
        "id": 1, "playbook": "listen-backlog-too-small", "scope": "host", "status": "open",
        "first_seen": at, "last_seen": at}}]}
    resp = httpx.post(f"{replica.url}/api/v1/agent/report", json=body,
                      headers=agent_headers(token), timeout=10)
    assert resp.json() == {"acked_through": 1}, resp.text


def ask(replica: Replica, host: str, token: str, target: str) -> dict[str, Any]:
    """A lease request; each test rolls out its own remedy (its own ``target``), as the
    replicas and their database are shared by the module."""
    body = {"host_id": host, "incident_fingerprint": FP, "remedy": REMEDY | {"target": target},
            "renew": None}
    resp = httpx.post(f"{replica.url}/api/v1/agent/lease", json=body,
                      headers=agent_headers(token), timeout=10)
    assert resp.status_code == 200, resp.text
    result: dict[str, Any] = resp.json()
    return result


def fleet_of(repo: Repository, pair: list[Replica], prefix: str,
             n: int) -> list[tuple[str, str]]:
    hosts = [(f"{prefix}{i}", new_token()) for i in range(n)]
    for host, token in hosts:
        repo.add_host(host, token)
    for i, (host, token) in enumerate(hosts):
        assert heartbeat(pair[i % 2], host, token).status_code == 200
        report_incident(pair[(i + 1) % 2], host, token)
    return hosts


def test_a_lease_is_granted_once_whichever_replica_each_host_asks(
        repo: Repository, pair: list[Replica]) -> None:
    hosts = fleet_of(repo, pair, "race-", 8)
    barrier = threading.Barrier(len(hosts))

    def one(i: int) -> dict[str, Any]:
        barrier.wait()
        return ask(pair[i % 2], *hosts[i], "race.target")

    with ThreadPoolExecutor(len(hosts)) as pool:
        answers = list(pool.map(one, range(len(hosts))))
    grants = [a["grant"] for a in answers if "grant" in a]
    assert len(grants) == 1 and grants[0]["rule"] == "F-canary", answers
    # those that found the grant being decided were told so at once; asking again, every
    # one of them waits behind the canary
    assert {a["wait"]["reason"] for a in answers if "wait" in a} <= {"canary", "busy"}
    again = [ask(pair[(i + 1) % 2], *hosts[i], "race.target") for i, a in enumerate(answers)
             if "wait" in a]
    assert [a["wait"]["reason"] for a in again] == ["canary"] * (len(hosts) - 1), again


def test_the_jobs_reclaim_a_dead_agents_lease_within_two_ttls(
        repo: Repository, pair: list[Replica]) -> None:
    (dead, dead_token), (next_host, next_token) = fleet_of(repo, pair, "reclaim-", 2)
    first = ask(pair[0], dead, dead_token, "reclaim.target")["grant"]
    assert ask(pair[1], next_host, next_token, "reclaim.target")["wait"]["reason"] == "canary"
    granted_at = time.monotonic()
    while any(x.id == first["lease_id"] for x in repo.live_leases()):
        assert time.monotonic() - granted_at < 2 * TTL + 1.0
        time.sleep(0.1)
    assert time.monotonic() - granted_at <= 2 * TTL + 0.5
    # The canary may still be verifying, cut off: the next host waits for its outcome ...
    held = ask(pair[1], next_host, next_token, "reclaim.target")["wait"]
    assert held["reason"] == "canary" and "reclaimed" in held["detail"]
    # ... which it reports late, to the other replica: verified, so the first wave goes.
    late = {"host_id": dead, "lease_id": first["lease_id"], "epoch": first["epoch"],
            "outcome": "verified"}
    resp = httpx.post(f"{pair[0].url}/api/v1/agent/release", json=late,
                      headers=agent_headers(dead_token), timeout=10)
    assert resp.status_code == 200, resp.text
    answer = ask(pair[1], next_host, next_token, "reclaim.target")
    assert answer["grant"]["rule"] == "F-wave" and answer["grant"]["epoch"] > first["epoch"]


def long_poll(replica: Replica, host: str, token: str, after: str,
              out: dict[str, Any]) -> None:
    began = time.monotonic()
    resp = httpx.get(f"{replica.url}/api/v1/agent/events", headers=agent_headers(token),
                     params={"host_id": host, "after": after, "wait": 10}, timeout=20)
    out["body"], out["answered"], out["held"] = resp.json(), time.monotonic(), \
        time.monotonic() - began


def cursor(replica: Replica, host: str, token: str) -> str:
    resp = httpx.get(f"{replica.url}/api/v1/agent/events", headers=agent_headers(token),
                     params={"host_id": host, "wait": 0}, timeout=10)
    return str(resp.json()["cursor"])


def test_a_pause_through_one_replica_wakes_a_long_poll_held_by_the_other(
        db: str, repo: Repository, pair: list[Replica]) -> None:
    host, token = fleet_of(repo, pair, "wake-", 1)[0]
    alice = repo.add_user("alice", hash_password("a long password"), "approver")
    approver = new_token()
    repo.add_token("alice-token", hash_token(approver), "approver", user_id=alice.id)
    after = cursor(pair[1], host, token)
    got: dict[str, Any] = {}
    waiter = threading.Thread(target=long_poll, args=(pair[1], host, token, after, got))
    waiter.start()
    time.sleep(0.5)  # held by replica 1 now
    sent = time.monotonic()
    paused = httpx.post(f"{pair[0].url}/api/v1/fleet/pause", json={"reason": "test"},
                        headers={"Authorization": f"Bearer {approver}"}, timeout=10)
    waiter.join(timeout=15)
    try:
        assert paused.json() == {"done": ["paused"]}, paused.text
        assert [e["type"] for e in got["body"]["events"]] == ["pause"]
        assert got["answered"] - sent < 2.0, got
        assert heartbeat(pair[1], host, token).json()["paused"] is True
    finally:
        assert cli(db, "fleet", "resume").splitlines() == ["pause lifted"]
    assert heartbeat(pair[0], host, token).json()["paused"] is False


ALERT = {"labels": {"alertname": "HostListenOverflows", "severity": "warning",
                    "instance": "dup-0:8765", "job": "healer"},
         "annotations": {"summary": "listen queues overflowing on dup-0"},
         "startsAt": "2026-11-30T12:00:00Z", "endsAt": "0001-01-01T00:00:00Z",
         "generatorURL": "http://prometheus/graph", "fingerprint": "1a2b3c4d5e6f7081"}


def webhook(status: str, alert: dict[str, Any]) -> dict[str, Any]:
    return {"version": "4", "groupKey": "{}:{alertname=\"HostListenOverflows\"}",
            "truncatedAlerts": 0, "status": status, "receiver": "healer-control-plane",
            "groupLabels": {"alertname": "HostListenOverflows"}, "commonLabels": {},
            "commonAnnotations": {}, "externalURL": "http://alertmanager:9093",
            "alerts": [alert | {"status": status}]}


def test_the_same_alert_delivered_to_both_replicas_is_one_incident(
        db: str, repo: Repository, pair: list[Replica]) -> None:
    host = "dup-0"
    token = add_host(db, host)  # it reports nothing: its one incident is the alert's
    ingest = cli(db, "token", "create", "alertmanager", "--role", "ingest").splitlines()[-1]
    headers = {"Authorization": f"Bearer {ingest}"}
    after = cursor(pair[0], host, token)
    for status in ("firing", "firing", "resolved", "resolved"):
        body = webhook(status, ALERT)
        with ThreadPoolExecutor(4) as pool:  # HA: every delivery reaches every replica
            sent = list(pool.map(lambda r, b=body: httpx.post(
                f"{r.url}/api/v1/alerts/alertmanager", json=b, headers=headers, timeout=10),
                pair * 2))
        assert {r.status_code for r in sent} == {200}, [r.text for r in sent]
    vera = repo.add_user("vera", hash_password("a long password"), "viewer")
    viewer = new_token()
    repo.add_token("vera-token", hash_token(viewer), "viewer", user_id=vera.id)
    [incident] = httpx.get(f"{pair[0].url}/api/v1/incidents", params={"host": host},
                           headers={"Authorization": f"Bearer {viewer}"}, timeout=10).json()
    assert (incident["status"], incident["playbook"]) == ("resolved", "unclassified")
    events = httpx.get(f"{pair[1].url}/api/v1/agent/events", headers=agent_headers(token),
                       params={"host_id": host, "after": after, "wait": 0}, timeout=10).json()
    alerts = [e["incident"] for e in events["events"] if e["type"] == "incident"]
    assert [a["status"] for a in alerts] == ["firing", "resolved"]
    assert {a["id"] for a in alerts} == {incident["id"]}
    assert alerts[0]["subject"] == 'HostListenOverflows{job="healer",severity="warning"}'
    assert alerts[0]["playbook"] == "unclassified"  # no playbook claims this alert


def _connections(server: PgServer, db: str) -> int:
    name = sa.make_url(db).database
    with server.connect() as conn:
        row = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s",
                           (name,)).fetchone()
    return int(row[0]) if row else 0


def test_database_connections_are_bounded_by_the_pools_not_by_the_agents(
        db: str, repo: Repository, pair: list[Replica], pg_server: PgServer) -> None:
    hosts = fleet_of(repo, pair, "crowd-", 40)
    stop = threading.Event()
    peak = 0

    def agent(i: int) -> None:
        host, token = hosts[i]
        while not stop.is_set():  # a long poll each, and heartbeats between
            httpx.get(f"{pair[i % 2].url}/api/v1/agent/events", headers=agent_headers(token),
                      params={"host_id": host, "wait": 1}, timeout=20)
            heartbeat(pair[(i + 1) % 2], host, token)

    with ThreadPoolExecutor(len(hosts)) as pool:
        running = [pool.submit(agent, i) for i in range(len(hosts))]
        deadline = time.monotonic() + 4.0
        while time.monotonic() < deadline:
            peak = max(peak, _connections(pg_server, db))
            time.sleep(0.05)
        stop.set()
        for done in running:
            done.result()  # every agent was answered: none failed for want of a connection
    mine = 2  # this test's own repository pool
    assert peak <= 2 * (POOL + OVERFLOW + 1) + mine, peak


def test_a_stopping_replica_answers_its_long_polls_at_once_and_exits_cleanly(
        db: str, repo: Repository, policy_file: Path) -> None:
    """SIGTERM: every long poll held is answered (no events, its cursor) well within the
    grace period, so none is cancelled and logged as an error; the replica exits 0."""
    hosts = [(f"stop-{i}", new_token()) for i in range(3)]
    for host, token in hosts:
        repo.add_host(host, token)
    with replicas(db, 1, {"HEALER_POLICY_FILE": str(policy_file)}) as [replica]:
        afters = [cursor(replica, host, token) for host, token in hosts]
        got: list[dict[str, Any]] = [{} for _ in hosts]
        waiters = [threading.Thread(target=long_poll, args=(replica, host, token, after, out))
                   for (host, token), after, out in zip(hosts, afters, got, strict=True)]
        for waiter in waiters:
            waiter.start()
        time.sleep(0.5)  # all three held now
        sent = time.monotonic()
        replica.proc.terminate()
        for waiter in waiters:
            waiter.join(timeout=15)
        assert replica.proc.wait(timeout=15) == 0, replica.log_tail()
        log = replica.log.read_text(errors="replace")
    for out, after in zip(got, afters, strict=True):
        assert "body" in out, "a long poll was cut, not answered"
        assert out["body"] == {"cursor": after, "events": []}, out
        assert out["answered"] - sent < 1.5, out  # the grace period is 3 s
    assert "Exception in ASGI application" not in log and "Cancel" not in log, log[-2000:]
