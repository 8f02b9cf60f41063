"""Reports, mirrors, votes and alerts on a real PostgreSQL: a replay changes nothing, a
gap waits for its fill, an agent's records appear with their transitions, a vote on one
goes back to that agent, and the same alert from several replicas at once is one incident."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import pytest

from healer.models import ActionState, IncidentStatus
from healer.store.credentials import hash_password
from healer.store.engine import CONTROL_PLANE, open_engine
from healer.store.fleet_types import AlertIn, Report, ReportBatch
from healer.store.repository import Repository

from .conftest import FakeClock
from .fleet_helpers import add_fleet, incident_report


@pytest.fixture
def replicas(pg_head_url: str) -> Iterator[list[Repository]]:
    clock = FakeClock()
    engines = [open_engine(pg_head_url, pool_size=3, max_overflow=0) for _ in range(3)]
    yield [Repository(e, CONTROL_PLANE, clock=clock) for e in engines]
    for e in engines:
        e.dispose()


def transition_report(seq: int, repo: Repository, *, state: str,
                      moves: list[str]) -> Report:
    t0 = repo.now() - timedelta(minutes=5)
    stamps = [(t0 + timedelta(seconds=10 * i)).isoformat() for i in range(len(moves))]
    action: dict[str, Any] = {
        "id": 7, "incident_id": 1, "state": state,
        "action": {"kind": "sysctl_write", "key": "net.core.somaxconn", "value": "4096"},
        "decision": {"verdict": "needs_approval", "reasons": ["r"], "rules": ["S-x"]},
        "created_at": stamps[0], "updated_at": stamps[-1],
        "transitions": [{"state": m, "at": at} for m, at in zip(moves, stamps, strict=True)]}
    return Report.model_validate({"seq": seq, "kind": "transition", "at": stamps[-1],
                                  "action": action})


def batch(host: str, *reports: Report) -> ReportBatch:
    return ReportBatch(host_id=host, reports=list(reports))


def snapshot(repo: Repository, host: str) -> list[object]:
    incidents = repo.list_incidents(host=host)
    actions = repo.list_actions(host=host)
    moves = repo.transitions([a.id for a in actions if a.id is not None])
    return [i.model_dump() for i in incidents] + [a.model_dump() for a in actions] + [moves]


def test_a_replayed_report_changes_nothing_and_a_gap_waits_for_its_fill(
        replicas: list[Repository]) -> None:
    repo = replicas[0]
    (host,) = add_fleet(repo, 1, sick=0)
    one = incident_report(1, 1, repo.now() - timedelta(minutes=6))
    two = transition_report(2, repo, state="awaiting_approval", moves=["awaiting_approval"])
    three = transition_report(3, repo, state="approved",
                              moves=["awaiting_approval", "approved"])
    assert repo.store_reports(batch(host, one, three)) == 1
    assert repo.list_actions(host=host) == []  # 3 waits for 2
    assert replicas[1].store_reports(batch(host, two)) == 3  # the fill: 2, then 3
    [record] = repo.list_actions(host=host)
    [incident] = repo.list_incidents(host=host)
    assert (record.state, record.incident_id) == (ActionState.APPROVED, incident.id)
    assert record.id is not None
    moves = repo.transitions([record.id])[record.id]
    assert [m.state for m in moves] == [ActionState.AWAITING_APPROVAL, ActionState.APPROVED]
    before = snapshot(repo, host)
    assert replicas[2].store_reports(batch(host, three, two, one)) == 3  # a replay
    assert snapshot(repo, host) == before


def test_a_vote_on_an_agents_record_goes_back_to_that_agent_as_its_own_id(
        replicas: list[Repository]) -> None:
    from healer.store.votes import record_vote

    repo = replicas[0]
    host, other = add_fleet(repo, 2, sick=0)
    repo.store_reports(batch(host, incident_report(1, 1, repo.now()), transition_report(
        2, repo, state="awaiting_approval", moves=["awaiting_approval"])))
    repo.add_user("alice", hash_password("correct horse"), "approver")
    [record] = repo.list_actions(states=[ActionState.AWAITING_APPROVAL], every_host=True)
    assert record.id is not None
    record_vote(replicas[1], record.id, "alice", True, "go", now=repo.now(),
                ttl_seconds=3600, via="token")
    [event] = repo.events_after(host, 0)
    assert event.payload == {"type": "vote", "action_id": 7, "user": "alice", "approve": True,
                             "comment": "go"}
    assert repo.events_after(other, 0) == []


def alert(firing: bool = True) -> AlertIn:
    return AlertIn(host_id="h0", alert_key="0f1e2d3c4b5a6978@2026-03-01T11:59:00+00:00",
                   alertname="HostListenOverflows",
                   labels={"alertname": "HostListenOverflows", "severity": "warning"},
                   fingerprint='HostListenOverflows{severity="warning"}',
                   playbook="unclassified", scope="host",
                   subject='HostListenOverflows{severity="warning"}', severity="warning",
                   firing=firing, starts_at=FakeClock().now - timedelta(minutes=1),
                   ends_at=None, evidence={"captures": {"alertname": "HostListenOverflows"}})


def test_the_same_alert_on_every_replica_at_once_is_one_incident_and_one_event(
        replicas: list[Repository]) -> None:
    add_fleet(replicas[0], 1, sick=0)

    def deliver(repo: Repository, firing: bool, barrier: threading.Barrier) -> bool:
        barrier.wait()
        return repo.ingest_alert(alert(firing))[1]

    changes = []
    for firing in (True, True, False, False):  # Alertmanager HA: each delivery, everywhere
        barrier = threading.Barrier(3)
        with ThreadPoolExecutor(3) as pool:
            changes.append(sum(pool.map(deliver, replicas, [firing] * 3, [barrier] * 3)))
    assert changes == [1, 0, 1, 0]
    [incident] = replicas[0].list_incidents(host="h0")
    assert incident.status == IncidentStatus.RESOLVED
    events = replicas[0].events_after("h0", 0)
    assert [(e.type, e.payload["incident"]["status"]) for e in events] == [
        ("incident", "firing"), ("incident", "resolved")]
    assert events[0].payload["incident"]["id"] == incident.id


def test_an_llm_answer_goes_to_the_incidents_host_once(replicas: list[Repository]) -> None:
    from healer.control.answers import deliver_answers

    repo = replicas[0]
    (host,) = add_fleet(repo, 1)
    [incident] = repo.list_incidents(host=host)
    assert incident.id is not None
    answer = {"root_cause": "listen-backlog-too-small", "confidence": 0.9}
    repo.add_llm_answer(incident.id, "m", "v1", answer=answer, failure=None, cached=False)
    assert deliver_answers(replicas[1]) == 1
    assert deliver_answers(replicas[2]) == 0
    [event] = repo.events_after(host, 0)
    assert event.payload == {"type": "diagnosis", "answer": answer, "incident_id": 1,
                             "control_plane_id": incident.id, "model": "m",
                             "fleet_fingerprint": "listen-backlog-too-small|host"}


def test_the_agents_report_of_an_alert_incident_updates_the_alerts_incident(
        replicas: list[Repository]) -> None:
    repo = replicas[0]
    add_fleet(repo, 1, sick=0)
    opened, _ = repo.ingest_alert(alert())
    at = repo.now().isoformat()
    fp = alert().fingerprint
    mirrored = Report.model_validate({"seq": 1, "kind": "incident", "at": at, "incident": {
        "id": 41, "playbook": "unclassified", "scope": "host", "subject": fp,
        "status": "open", "severity": "warning", "first_seen": at, "last_seen": at,
        "signals": {"alert:HostListenOverflows": 1.0}, "fleet_fingerprint": fp}})
    assert replicas[1].store_reports(batch("h0", mirrored)) == 1
    [incident] = repo.list_incidents(host="h0")
    assert incident.id == opened.id and incident.evidence.signals == {
        "alert:HostListenOverflows": 1.0}
    [event] = repo.events_after("h0", 0)
    assert event.payload["incident"] | {"id": None} == {
        "id": None, "alertname": "HostListenOverflows", "status": "firing",
        "labels": {"alertname": "HostListenOverflows", "severity": "warning"},
        "fleet_fingerprint": fp, "playbook": "unclassified", "severity": "warning",
        "subject": fp, "starts_at": alert().starts_at.isoformat()}
