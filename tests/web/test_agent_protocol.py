"""The agent protocol as docs/fleet-protocol.md writes it, on a control-plane app over a
real PostgreSQL: who may call (host tokens only, bound to their host), version skew (426),
back-pressure (429, 503 with Retry-After), idempotent ordered reports, the lease shapes,
and the events long poll woken by NOTIFY."""

from __future__ import annotations

import asyncio
import gc
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from guardrails import load_policy
from guardrails.fleet import hold_wait
from healer.settings import Settings
from healer.store.credentials import new_token
from healer.store.engine import CONTROL_PLANE, open_engine
from healer.store.fleet_types import LeaseAnswer, ReportBatch
from healer.store.repository import Repository
from healer.telemetry import Telemetry
from playbooks.loader import load_library
from tests.web.helpers import SILENCE_CHECK, bearer, service_bearer
from web import create_app
from web.events import EventHub
from web.fleet import FleetConfig, Holds, Lane, LaneFull, Lanes, TokenCache

VERSION = "0.1.0"
REMEDY = {"playbook": "listen-backlog-too-small", "kind": "sysctl_write",
          "target": "net.core.somaxconn"}


def control_plane(settings: Settings, repo: Repository, *, tokens: TokenCache | None = None,
                  lanes: Lanes | None = None, **hub: Any) -> TestClient:
    fleet = FleetConfig(policy=load_policy().fleet, library=load_library(),
                        hub=EventHub(repo, **hub), version=VERSION,
                        tokens=tokens or TokenCache(), lanes=lanes or Lanes())
    app = create_app(settings, repo=repo, telemetry=Telemetry(), silence_check=SILENCE_CHECK,
                     fleet=fleet)
    return TestClient(app, base_url="http://127.0.0.1:8765")


@pytest.fixture
def cp_repo(pg_head_url: str) -> Iterator[Repository]:
    engine = open_engine(pg_head_url, pool_size=4, max_overflow=4)
    yield Repository(engine, CONTROL_PLANE)
    engine.dispose()


@pytest.fixture
def cp(settings: Settings, cp_repo: Repository) -> Iterator[TestClient]:
    with control_plane(settings, cp_repo) as client:
        yield client


class Agent:
    """One host's side of the protocol, with its own token."""

    def __init__(self, client: TestClient, repo: Repository, host: str) -> None:
        self.client, self.host, self.token = client, host, new_token()
        repo.add_host(host, self.token)
        self.headers = {"Authorization": f"Bearer {self.token}",
                        "X-Healer-Agent-Version": VERSION}

    def post(self, path: str, body: dict[str, Any], **headers: str) -> Any:
        return self.client.post(f"/api/v1/agent/{path}", json={"host_id": self.host} | body,
                                headers=self.headers | headers)

    def events(self, after: str = "", wait: float = 0) -> Any:
        return self.client.get("/api/v1/agent/events", headers=self.headers,
                               params={"host_id": self.host, "after": after, "wait": wait})

    def beat(self, **extra: Any) -> Any:
        return self.post("heartbeat", {"agent_version": VERSION, "mode": "auto",
                                       "sent_at": _now_iso(), **extra})


def _now_iso(shift: float = 0.0) -> str:
    return (datetime.now(UTC) + timedelta(seconds=shift)).isoformat()


def incident(seq: int, local: int = 1, status: str = "open", ago: float = 600) -> dict[str, Any]:
    at = _now_iso(-ago)
    return {"seq": seq, "kind": "incident", "at": at, "incident": {
        "id": local, "playbook": "listen-backlog-too-small", "scope": "host",
        "status": status, "first_seen": at, "last_seen": at}}


def transition(seq: int, state: str, moves: list[str]) -> dict[str, Any]:
    at = _now_iso(-60)
    return {"seq": seq, "kind": "transition", "at": at, "action": {
        "id": 7, "incident_id": 1, "state": state, "created_at": at, "updated_at": at,
        "action": {"kind": "sysctl_write", "key": "net.core.somaxconn", "value": "4096"},
        "decision": {"verdict": "needs_approval", "reasons": ["r"], "rules": ["S-x"]},
        "transitions": [{"state": m, "at": at} for m in moves]}}


# -- who may call ------------------------------------------------------------------------------
def test_a_heartbeat_answers_the_pause_and_the_clock_and_records_the_skew(
        cp: TestClient, cp_repo: Repository) -> None:
    agent = Agent(cp, cp_repo, "gpu-7")
    resp = agent.post("heartbeat", {"agent_version": VERSION, "mode": "auto",
                                    "labels": {"rack": "r12"}, "sent_at": _now_iso(3.0),
                                    "open_incidents": 2, "last_report_seq": 0})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["paused"] is False and body["heartbeat_seconds"] == 5
    assert body["server_time"].endswith("Z")
    [host] = cp.get("/api/v1/hosts", headers=bearer(cp_repo, "vera", "viewer")).json()
    assert host["host_id"] == "gpu-7" and host["labels"] == {"rack": "r12"}
    assert 2.0 < host["clock_skew_seconds"] < 4.0
    assert set(host) >= {"host_id", "last_heartbeat_at", "mode", "open_incidents", "paused",
                         "agent_version", "clock_skew_seconds"}


@pytest.mark.parametrize(("version", "status"), [
    ("0.1.9", 200), ("0.2.0", 200), ("0.0.3", 200), ("0.3.0", 426), ("1.1.0", 426),
    ("banana", 426), (None, 426)])
def test_one_minor_version_of_skew_either_way_is_accepted_any_other_is_426(
        cp: TestClient, cp_repo: Repository, version: str | None, status: int) -> None:
    agent = Agent(cp, cp_repo, "h1")
    headers = dict(agent.headers)
    if version is None:
        del headers["X-Healer-Agent-Version"]
    else:
        headers["X-Healer-Agent-Version"] = version
    resp = cp.post("/api/v1/agent/heartbeat", headers=headers, json={
        "host_id": "h1", "agent_version": "0.1.0", "mode": "auto", "sent_at": _now_iso()})
    assert resp.status_code == status, resp.text
    if status == 426:
        assert resp.json()["detail"]


def test_a_host_token_speaks_only_for_its_own_host(cp: TestClient,
                                                   cp_repo: Repository) -> None:
    mine, other = Agent(cp, cp_repo, "a"), Agent(cp, cp_repo, "b")
    resp = mine.post("heartbeat", {"host_id": other.host, "agent_version": VERSION,
                                   "mode": "auto", "sent_at": _now_iso()})
    assert resp.status_code == 403
    assert cp.get("/api/v1/agent/events", headers=mine.headers,
                  params={"host_id": other.host, "wait": 0}).status_code == 403
    assert mine.post("report", {"host_id": "b", "reports": [incident(1)]}).status_code == 403
    assert cp_repo.list_incidents(host="b") == []


def test_no_other_token_reaches_the_agent_protocol(cp: TestClient,
                                                   cp_repo: Repository) -> None:
    Agent(cp, cp_repo, "a")
    body = {"host_id": "a", "agent_version": VERSION, "mode": "auto", "sent_at": _now_iso()}
    version = {"X-Healer-Agent-Version": VERSION}
    for headers, status in ((bearer(cp_repo, "root", "admin"), 403),
                            (service_bearer(cp_repo, "alerts", "ingest"), 403),
                            ({"Authorization": "Bearer hlr_nope"}, 401), ({}, 401)):
        resp = cp.post("/api/v1/agent/heartbeat", json=body, headers=headers | version)
        assert resp.status_code == status, (headers, resp.text)
    agent_token = Agent(cp, cp_repo, "c").headers
    assert cp.get("/api/v1/incidents", headers=agent_token).status_code == 403


def test_a_revoked_host_token_is_refused_once_its_cached_lookup_expires(
        settings: Settings, cp_repo: Repository) -> None:
    with control_plane(settings, cp_repo, tokens=TokenCache(seconds=0.5)) as client:
        agent = Agent(client, cp_repo, "a")
        assert agent.beat().status_code == 200
        (token,) = [t for t in cp_repo.list_tokens() if t.role == "host"]
        cp_repo.revoke_token(token.id)
        time.sleep(0.6)
        resp = agent.beat()
        assert resp.status_code == 401, resp.text


def test_a_database_that_does_not_answer_is_503_with_retry_after(
        settings: Settings, tmp_path: Path) -> None:
    dead = Repository(open_engine(f"sqlite:///{tmp_path / 'no' / 'such' / 'dir.db'}"),
                      CONTROL_PLANE)
    with control_plane(settings, dead) as client:
        resp = client.post("/api/v1/agent/heartbeat", json={},
                           headers={"Authorization": "Bearer hlr_x",
                                    "X-Healer-Agent-Version": VERSION})
    assert resp.status_code == 503 and resp.headers["Retry-After"] == "2"


def test_a_replica_full_of_long_polls_answers_429_with_retry_after(
        settings: Settings, cp_repo: Repository) -> None:
    with control_plane(settings, cp_repo, max_waiters=0) as client:
        resp = Agent(client, cp_repo, "a").events(wait=5)
    assert resp.status_code == 429 and resp.headers["Retry-After"] == "2"


def test_a_full_lane_sheds_its_kind_of_request_with_429_and_the_others_go_on(
        settings: Settings, cp_repo: Repository) -> None:
    """Heartbeats have a lane with a bounded queue: past it they are sent back, and
    reports and lease answers, in lanes of their own, are not held behind them."""
    jammed = Lanes(bulk=Lane("heartbeats", threads=1, max_queued=0))
    with control_plane(settings, cp_repo, lanes=jammed) as client:
        agent = Agent(client, cp_repo, "a")
        shed = agent.beat()
        assert shed.status_code == 429 and shed.headers["Retry-After"] == "2"
        assert "busy" in shed.json()["detail"]
        reported = agent.post("report", {"reports": [incident(1)]})
        assert reported.status_code == 200 and reported.json() == {"acked_through": 1}
        asked = agent.post("lease", {"incident_fingerprint": "listen-backlog-too-small|netns",
                                     "remedy": REMEDY})
        assert asked.status_code == 200 and set(asked.json()) <= {"grant", "wait"}


def test_a_lane_runs_at_most_its_threads_at_once_and_refuses_past_its_queue() -> None:
    lane = Lane("bulk", threads=2, max_queued=3)
    running, most = 0, 0
    gate = threading.Event()

    def call() -> int:
        nonlocal running, most
        running += 1
        most = max(most, running)
        gate.wait(5)
        running -= 1
        return 1

    async def main() -> list[int | BaseException]:
        tasks = [asyncio.create_task(lane.run(call)) for _ in range(4)]
        await asyncio.sleep(0.2)
        assert lane.queued == 3
        gate.set()
        return await asyncio.gather(*tasks, return_exceptions=True)

    results = asyncio.run(main())
    assert results[:3] == [1, 1, 1] and isinstance(results[3], LaneFull)
    assert most == 2 and lane.queued == 0


def test_a_lane_reports_each_requests_time_queued_and_running_and_each_one_shed() -> None:
    telemetry = Telemetry()
    lane = Lanes(lease=Lane("leases", threads=1, max_queued=2)).observed(
        telemetry.agent_request).lease
    gate = threading.Event()

    def call() -> int:
        gate.wait(5)
        return 1

    async def main() -> list[int | BaseException]:
        tasks = [asyncio.create_task(lane.run(call)) for _ in range(3)]
        await asyncio.sleep(0.2)
        gate.set()
        return await asyncio.gather(*tasks, return_exceptions=True)

    results = asyncio.run(main())
    assert results[:2] == [1, 1] and isinstance(results[2], LaneFull)
    registry = telemetry.serve_registry

    def value(name: str, phase: str) -> float | None:
        return registry.get_sample_value(f"healer_agent_request_seconds_{name}",
                                         {"lane": "leases", "phase": phase})

    assert value("count", "queued") == 2 and value("count", "running") == 2
    # one thread: the second waited while the first ran, both about the 0.2 s held
    assert (value("sum", "queued") or 0) >= 0.15 and (value("sum", "running") or 0) >= 0.15
    assert registry.get_sample_value("healer_agent_requests_shed_total",
                                     {"lane": "leases"}) == 1


# -- reports ------------------------------------------------------------------------------------
def test_reports_apply_in_seq_order_a_gap_waits_and_a_replay_changes_nothing(
        cp: TestClient, cp_repo: Repository) -> None:
    agent = Agent(cp, cp_repo, "a")
    viewer = bearer(cp_repo, "vera", "viewer")
    one, two = incident(1), transition(2, "awaiting_approval", ["awaiting_approval"])
    three = transition(3, "approved", ["awaiting_approval", "approved"])
    assert agent.post("report", {"reports": [one, three]}).json() == {"acked_through": 1}
    assert cp.get("/api/v1/actions", headers=viewer, params={"host": "a"}).json() == []
    assert agent.post("report", {"reports": [two]}).json() == {"acked_through": 3}
    actions = cp.get("/api/v1/actions", headers=viewer, params={"host": "a"}).json()
    incidents = cp.get("/api/v1/incidents", headers=viewer, params={"host": "a"}).json()
    assert [a["state"] for a in actions] == ["approved"]
    assert [t["state"] for t in actions[0]["transitions"]] == ["awaiting_approval", "approved"]
    assert actions[0]["incident_id"] == incidents[0]["id"]
    replay = agent.post("report", {"reports": [three, two, one]})
    assert replay.json() == {"acked_through": 3}
    assert cp.get("/api/v1/actions", headers=viewer, params={"host": "a"}).json() == actions
    assert cp.get("/api/v1/incidents", headers=viewer, params={"host": "b"}).json() == []


def test_a_malformed_report_is_refused_whole(cp: TestClient, cp_repo: Repository) -> None:
    agent = Agent(cp, cp_repo, "a")
    bad = incident(2) | {"incident": None}
    assert agent.post("report", {"reports": [incident(1), bad]}).status_code == 422
    assert cp_repo.list_incidents(host="a") == []
    resp = agent.post("report", {"reports": "not a list"})
    assert resp.status_code == 422 and resp.json()["detail"][0]["loc"] == ["body", "reports"]
    not_json = cp.post("/api/v1/agent/report", content=b"{", headers=agent.headers)
    assert not_json.status_code == 422 and not_json.json()["detail"][0]["type"] == "json_invalid"


def test_reports_wait_for_their_lane_as_bytes_and_are_parsed_in_it(
        settings: Settings, cp_repo: Repository, monkeypatch: pytest.MonkeyPatch) -> None:
    """At a storm's onset hundreds of batches queue for the reports' lane: each waits as
    its body, not as the objects it parses into (which the collector would walk)."""
    gate, store = threading.Event(), cp_repo.store_reports
    monkeypatch.setattr(cp_repo, "store_reports", lambda batch: gate.wait(10) and store(batch))
    lanes = Lanes()
    with control_plane(settings, cp_repo, lanes=lanes) as client:
        agent = Agent(client, cp_repo, "a")
        with ThreadPoolExecutor(5) as pool:
            sent = [pool.submit(agent.post, "report", {"reports": [incident(seq)]})
                    for seq in range(1, 6)]
            deadline = time.monotonic() + 10
            while lanes.report.queued < 5 and time.monotonic() < deadline:
                time.sleep(0.01)
            assert lanes.report.queued == 5
            parsed = sum(isinstance(o, ReportBatch) for o in gc.get_objects())
            gate.set()
            answers = [f.result() for f in sent]
    assert parsed == 1  # the batch at the lane's one thread; the four behind it are bytes
    assert [a.status_code for a in answers] == [200] * 5
    assert len(cp_repo.list_incidents(host="a")) == 1


# -- leases --------------------------------------------------------------------------------------
def test_lease_answers_are_a_grant_or_a_wait_and_a_lost_lease_is_409(
        cp: TestClient, cp_repo: Repository) -> None:
    agents = [Agent(cp, cp_repo, f"h{i}") for i in range(3)]
    for agent in agents:
        agent.beat()
        agent.post("report", {"reports": [incident(1)]})

    def ask(agent: Agent, **extra: Any) -> Any:
        return agent.post("lease", {"action_id": 11, "incident_fingerprint":
                                    "listen-backlog-too-small|host", "remedy": REMEDY,
                                    "renew": None} | extra)

    grant = ask(agents[0]).json()["grant"]
    assert set(grant) == {"lease_id", "epoch", "ttl_seconds", "rule"}
    assert (grant["rule"], grant["ttl_seconds"]) == ("F-canary", 15.0)
    wait = ask(agents[1]).json()["wait"]
    assert (wait["reason"], wait["rule"]) == ("canary", "F-canary") and wait["retry_after"] > 0
    renewed = ask(agents[0], renew={"lease_id": grant["lease_id"], "epoch": grant["epoch"]})
    assert renewed.json()["grant"] == grant
    lost = ask(agents[1], renew={"lease_id": grant["lease_id"], "epoch": grant["epoch"]})
    assert lost.status_code == 409 and lost.json() == {"detail": "lease lost"}
    done = {"lease_id": grant["lease_id"], "epoch": grant["epoch"], "outcome": "verified"}
    assert agents[0].post("release", done).json() == {}
    assert agents[0].post("release", done).json() == {}  # a replay
    assert agents[1].post("release", done).status_code == 404  # not its lease
    assert ask(agents[1]).json()["grant"]["rule"] == "F-wave"


def test_a_remedy_in_its_systemic_hold_is_answered_from_memory_until_the_hold_ends(
        settings: Settings, cp_repo: Repository) -> None:
    """The first ask reads the hold from the database; the rest of the burst is answered
    without a lane (jammed here: every lease ask that reaches one is 429), a rollback and
    another fingerprint still go to the database, and so does everything once the hold
    ends."""
    policy = load_policy().fleet.model_copy(update={"systemic_hold_seconds": 3})
    fleet = FleetConfig(policy=policy, library=load_library(), hub=EventHub(cp_repo),
                        version=VERSION)
    app = create_app(settings, repo=cp_repo, telemetry=Telemetry(),
                     silence_check=SILENCE_CHECK, fleet=fleet)
    with TestClient(app, base_url="http://127.0.0.1:8765") as client:
        agents = [Agent(client, cp_repo, f"h{i}") for i in range(3)]
        for agent in agents:
            agent.beat()
            agent.post("report", {"reports": [incident(1, ago=0)]})

        def ask(agent: Agent, fingerprint: str = "listen-backlog-too-small|host",
                **extra: Any) -> Any:
            return agent.post("lease", {"action_id": 11, "incident_fingerprint": fingerprint,
                                        "remedy": REMEDY} | extra)

        first = ask(agents[0]).json()["wait"]
        assert (first["reason"], first["rule"]) == ("hold", "F-hold")
        fleet.lanes.lease = Lane("leases", threads=1, max_queued=0)
        kept = ask(agents[1])
        assert kept.status_code == 200, kept.text
        again = kept.json()["wait"]
        assert (again["reason"], again["rule"]) == ("hold", "F-hold")
        assert 1.0 <= again["retry_after"] <= first["retry_after"]
        assert ask(agents[2], purpose="rollback").status_code == 429
        assert ask(agents[2], fingerprint="listen-backlog-too-small|netns").status_code == 429
        time.sleep(again["retry_after"] - 0.9)  # the last second of the hold is not kept
        assert ask(agents[1]).status_code == 429
        fleet.lanes.lease = Lane("leases", threads=1, max_queued=8)
        time.sleep(1.0)
        granted = ask(agents[1]).json()
        if "wait" in granted:  # the database's hold may outlast the kept one by its read
            assert granted["wait"]["reason"] == "hold", granted
            assert granted["wait"]["retry_after"] <= 1.0, granted
            time.sleep(granted["wait"]["retry_after"])
            granted = ask(agents[1]).json()
        assert "grant" in granted and granted["grant"]["rule"] == "F-canary", granted


def test_only_the_hold_is_kept_and_a_kept_hold_ends_no_later_than_the_one_read() -> None:
    policy = load_policy().fleet
    holds, asked = Holds(), datetime(2026, 1, 1, tzinfo=UTC)
    wait = hold_wait(20.0, policy)
    holds.keep("r", "fp", wait.model_copy(update={"rule": "F-canary", "reason": "canary"}),
               asked)
    assert holds.answer("r", "fp", "apply", policy, asked) is None
    holds.keep("r", "fp", wait, asked)
    later = asked + timedelta(seconds=5)
    kept = holds.answer("r", "fp", "apply", policy, later)
    assert kept is not None and (kept.rule, kept.retry_after) == ("F-hold", 15.0)
    assert holds.answer("r", "fp", "rollback", policy, later) is None
    assert holds.answer("r", "other", "apply", policy, later) is None
    assert holds.answer("r", "fp", "apply", policy, asked + timedelta(seconds=19.5)) is None
    assert holds.answer("r", "fp", "apply", policy, asked + timedelta(seconds=5)) is None


class _Database:
    """A lease lane's answers for ``Holds.ask``: each call takes ``seconds`` and answers
    ``decision`` (or raises ``LaneFull``); the calls are counted, with when they began."""

    def __init__(self, decision: Any, seconds: float = 0.05, full: bool = False,
                 themselves: frozenset[str] | None = None) -> None:
        self.decision, self.seconds, self.full = decision, seconds, full
        self.themselves = themselves
        self.began: list[float] = []

    async def __call__(self) -> Any:
        self.began.append(time.monotonic())
        await asyncio.sleep(self.seconds)
        if self.full:
            raise LaneFull("leases")
        return LeaseAnswer(decision=self.decision, ask_themselves=self.themselves)


def _burst(holds: Holds, database: _Database, purposes: list[str],
           hosts: list[str] | None = None) -> list[Any]:
    policy = load_policy().fleet

    async def burst() -> list[Any]:
        def clock() -> datetime:
            return datetime.now(UTC)

        asks = [holds.ask("r", "fp", host, purpose, policy, clock, database)
                for host, purpose in zip(hosts or [f"h{i}" for i in range(len(purposes))],
                                         purposes, strict=True)]
        return await asyncio.gather(*asks, return_exceptions=True)

    return asyncio.run(burst())


def test_a_burst_that_comes_before_the_first_answer_waits_for_it_and_is_held_from_memory(
) -> None:
    database = _Database(hold_wait(20.0, load_policy().fleet))
    answers = _burst(Holds(), database, ["apply"] * 20)
    assert len(database.began) == 1  # one ask at the database, not twenty
    assert [a.decision.rule for a in answers] == ["F-hold"] * 20


def test_a_fleet_wide_wait_answers_the_burst_but_a_host_it_does_not_answer_asks_itself(
) -> None:
    systemic = hold_wait(20.0, load_policy().fleet).model_copy(
        update={"rule": "F-systemic", "reason": "systemic", "retry_after": 10.0})
    database = _Database(systemic, themselves=frozenset({"h3"}))  # a lease, or paused
    answers = _burst(Holds(), database, ["apply"] * 8)
    assert len(database.began) == 2  # the first ask, then h3's (the database hands its lease)
    assert [a.decision.rule for a in answers] == ["F-systemic"] * 8
    again = _Database(systemic)  # no such hosts read: nothing is shared
    _burst(Holds(), again, ["apply"] * 4)
    assert len(again.began) == 4


def test_when_the_first_answer_is_not_the_hold_each_waiter_asks_the_database_itself() -> None:
    canary = hold_wait(20.0, load_policy().fleet).model_copy(
        update={"rule": "F-canary", "reason": "canary"})
    database = _Database(canary)
    answers = _burst(Holds(), database, ["apply"] * 5)
    assert len(database.began) == 5
    first, *rest = sorted(database.began)
    assert all(b - first >= database.seconds * 0.9 for b in rest)  # after the first's answer
    assert max(rest) - min(rest) < database.seconds  # together, not one after another
    assert all(a.decision.rule == "F-canary" for a in answers)


def test_a_rollback_never_waits_and_a_failed_first_ask_frees_its_waiters() -> None:
    database = _Database(hold_wait(20.0, load_policy().fleet), seconds=0.2)
    _burst(Holds(), database, ["apply", "rollback"])
    assert database.began[1] - database.began[0] < 0.1  # the rollback went at once
    full = _Database(hold_wait(20.0, load_policy().fleet), full=True)
    answers = _burst(Holds(), full, ["apply"] * 3)
    assert len(full.began) == 3 and all(isinstance(a, LaneFull) for a in answers)


# -- events --------------------------------------------------------------------------------------
@pytest.mark.parametrize("wake", [
    {"poll_seconds": 60.0},  # NOTIFY alone: the poll would come far too late
    {"poll_seconds": 0.5, "listen": False},  # no NOTIFY (a lost connection): the poll
])
def test_a_vote_on_the_dashboard_reaches_the_waiting_long_poll_within_two_seconds(
        settings: Settings, cp_repo: Repository, wake: dict[str, Any]) -> None:
    with control_plane(settings, cp_repo, **wake) as cp:
        vote_reaches_agent(cp, cp_repo)


def vote_reaches_agent(cp: TestClient, cp_repo: Repository) -> None:
    agent, other = Agent(cp, cp_repo, "a"), Agent(cp, cp_repo, "b")
    agent.post("report", {"reports": [incident(1), transition(
        2, "awaiting_approval", ["awaiting_approval"])]})
    start = agent.events().json()["cursor"]
    [proposal] = cp.get("/api/v1/proposals", headers=bearer(cp_repo, "vera", "viewer")).json()
    got: dict[str, Any] = {}

    def poll() -> None:
        began = time.monotonic()
        got["body"] = agent.events(after=start, wait=10).json()
        got["seconds"] = time.monotonic() - began

    waiter = threading.Thread(target=poll)
    waiter.start()
    time.sleep(0.5)  # it is waiting now
    voted = time.monotonic()
    resp = cp.post(f"/api/v1/proposals/{proposal['id']}/approve",
                   headers=bearer(cp_repo, "alice", "approver"), json={"comment": "go"})
    assert resp.status_code == 200, resp.text
    waiter.join(timeout=15)  # never leave a request in flight: TestClient would hang
    answered = time.monotonic()
    [event] = got["body"]["events"]
    assert (event["type"], event["action_id"], event["user"], event["approve"]) == (
        "vote", 7, "alice", True)
    assert answered - voted < 2.0 and got["seconds"] < 10
    assert agent.events(after=got["body"]["cursor"]).json()["events"] == []
    assert other.events().json()["events"] == []


def test_a_fleet_pause_reaches_every_waiting_agent(cp: TestClient,
                                                   cp_repo: Repository) -> None:
    agents = [Agent(cp, cp_repo, f"h{i}") for i in range(3)]
    cursors = [a.events().json()["cursor"] for a in agents]
    bodies: list[Any] = [None] * 3
    reads: list[object] = []  # the events table read for one host
    events_after = cp_repo.events_after
    cp_repo.events_after = lambda *a: reads.append(a) or events_after(*a)  # type: ignore[method-assign]

    def poll(i: int) -> None:
        bodies[i] = agents[i].events(after=cursors[i], wait=10).json()

    waiters = [threading.Thread(target=poll, args=(i,)) for i in range(3)]
    for w in waiters:
        w.start()
    time.sleep(0.5)
    paused = time.monotonic()
    admin = bearer(cp_repo, "root", "admin")
    assert cp.post("/api/v1/fleet/pause", headers=admin, json={}).json() == {"done": ["paused"]}
    for w in waiters:
        w.join(timeout=15)
    assert time.monotonic() - paused < 2.0
    assert [[e["type"] for e in b["events"]] for b in bodies] == [["pause"]] * 3
    # the broadcast woke every long poll, each answered from the hub's memory of the newest
    # events (one read per replica), none reading the table for its own host
    assert reads == []
    assert agents[0].beat().json()["paused"] is True
    refused = cp.post("/api/v1/fleet/pause", headers=admin, json={"hosts": ""})
    assert refused.status_code == 400 and "empty" in refused.json()["detail"]


def test_events_from_before_the_replica_started_are_read_from_the_table(
        settings: Settings, cp_repo: Repository) -> None:
    """The hub keeps in memory only what came after it started: an agent whose cursor is
    older (its first poll, or back after a while) reads the table, and misses nothing."""
    assert cp_repo.fleet_pause(None, "root")
    with control_plane(settings, cp_repo) as cp:
        agent = Agent(cp, cp_repo, "a")
        first = agent.events().json()
        assert [e["type"] for e in first["events"]] == ["pause"]
        assert agent.events(after=first["cursor"]).json()["events"] == []


# -- the fleet view ------------------------------------------------------------------------------
def test_the_fleet_view_shows_hosts_rollouts_and_a_pause_switch_that_works(
        cp: TestClient, cp_repo: Repository) -> None:
    agents = [Agent(cp, cp_repo, f"h{i}") for i in range(2)]
    for agent in agents:
        agent.beat(labels={"rack": "r1"})
        agent.post("report", {"reports": [incident(1)]})
    agents[0].post("lease", {"incident_fingerprint": "listen-backlog-too-small|host",
                             "remedy": REMEDY})
    viewer, approver = bearer(cp_repo, "vera", "viewer"), bearer(cp_repo, "alice", "approver")
    page = cp.get("/fleet", headers=viewer)
    assert page.status_code == 200
    for text in ('href="/fleet"', "h0", "h1", "rack=r1", "h0 (in canary)",
                 "listen-backlog-too-small:sysctl_write:net.core.somaxconn", "running"):
        assert text in page.text, text
    assert "fleet-switch" not in page.text  # a viewer sees no switch
    flipped = cp.post("/fleet/switch", headers=approver, data={"action": "pause"},
                      follow_redirects=False)
    assert flipped.status_code == 303 and "paused" in flipped.headers["location"]
    status = cp.get("/api/v1/fleet", headers=viewer).json()
    assert status["paused"] is True and [r["rollout"]["canary"] for r in status["rollouts"]] \
        == ["h0"]
    assert all(h["paused"] for h in cp.get("/api/v1/hosts", headers=viewer).json())
    assert cp.post("/fleet/switch", headers=viewer, data={"action": "resume"}).status_code \
        == 403


def test_a_report_batch_may_be_4_mib_and_other_bodies_1_mib(
        cp: TestClient, cp_repo: Repository) -> None:
    agent = Agent(cp, cp_repo, "a")
    big = incident(1)
    big["incident"]["evidence"] = {"kmsg": ["x" * 1000] * 2000}  # about 2 MB of lines
    assert agent.post("report", {"reports": [big]}).json() == {"acked_through": 1}
    assert agent.post("heartbeat", {"agent_version": VERSION, "mode": "auto",
                                    "sent_at": _now_iso(), "labels": {"x": "y" * 200},
                                    "pad": "z" * (1024 * 1024)}).status_code == 413
    big["incident"]["evidence"] = {"kmsg": ["x" * 1000] * 4500}
    big["seq"] = 2
    assert agent.post("report", {"reports": [big]}).status_code == 413
