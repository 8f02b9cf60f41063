"""Leases in the change engine: a real engine writing real sysctls in a network namespace,
gated by a control plane over real HTTP (tests/fleet_server.py)."""

from __future__ import annotations

import logging
import socket
import time
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from guardrails.actions import Notify, SysctlWrite
from healer.act.engine import ChangeEngine
from healer.fleet.link import FleetLink
from healer.models import ActionRecord, ActionState, Incident, Proposal
from healer.notify.notifier import Notifier
from healer.settings import Settings
from healer.store.repository import Repository
from healer.store.tables import ActionTable
from healer.telemetry import Telemetry
from tests.act.conftest import Clock, Window, netns_sysctl
from tests.act.engine_kit import SPEC, Notes, feed, make_engine, somaxconn
from tests.fleet_server import ControlPlane, Throttle

from .conftest import HOST, LinkFactory, until

S = ActionState
PLAYBOOK = "listen-backlog-too-small"


class Monotonic:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def _incident(repo: Repository, clock: Clock, netns: str) -> Incident:
    return repo.open_incident(Incident(host_id=HOST, playbook=PLAYBOOK, scope=f"netns:{netns}",
                                       first_seen=clock.now, last_seen=clock.now))


def _engine(repo: Repository, clock: Clock, window: Window, tmp_path: Path, link: FleetLink,
            notes: Notes | None = None) -> ChangeEngine:
    return make_engine(repo, clock, window, tmp_path, notes, fleet=link.leases)


def _state(repo: Repository, record: ActionRecord) -> ActionState:
    found = repo.get_action(record.id or 0)
    assert found is not None
    return found.state


def _applied(netns: str, repo: Repository, clock: Clock, window: Window, tmp_path: Path,
             link: FleetLink, original: str = "128", value: str = "512"
             ) -> tuple[ChangeEngine, ActionRecord, float]:
    """somaxconn in ``netns`` raised from ``original`` under a grant: (the engine, the record
    now verifying, the overflow counter so far)."""
    netns_sysctl(netns, "net.core.somaxconn", original)
    engine = _engine(repo, clock, window, tmp_path, link)
    total = feed(window, clock, 10, overflow_rate=20, psi=1.0)
    record = engine.propose(_incident(repo, clock, netns), somaxconn(netns, value), SPEC)
    engine.step()
    until(lambda: link.leases.answer(record.id).go)
    [applied] = engine.step()
    assert applied.state == S.VERIFYING and netns_sysctl(netns, "net.core.somaxconn") == value
    return engine, applied, total


def _dead_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"  # closed again: nobody listens


def test_a_change_is_applied_with_a_grant_renewed_while_verifying_and_released_verified(
        netns: str, repo: Repository, clock: Clock, window: Window, tmp_path: Path,
        cp: ControlPlane, make_link: LinkFactory) -> None:
    netns_sysctl(netns, "net.core.somaxconn", "128")
    cp.ttl_seconds = 3.0  # renewed every second
    telemetry = Telemetry()
    link = make_link(cp.url, repo, telemetry=telemetry)
    engine = _engine(repo, clock, window, tmp_path, link)
    total = feed(window, clock, 10, overflow_rate=20, psi=1.0)
    record = engine.propose(_incident(repo, clock, netns), somaxconn(netns, "512"), SPEC)
    assert record.state == S.APPROVED
    assert engine.step() == []  # the guard allows it: the lease is asked for, nothing written
    assert netns_sysctl(netns, "net.core.somaxconn") == "128"
    until(lambda: link.leases.answer(record.id).go)
    [applied] = engine.step()
    assert applied.state == S.VERIFYING and netns_sysctl(netns, "net.core.somaxconn") == "512"
    asked = cp.requests("lease")[0].body
    assert asked["remedy"] == {"playbook": PLAYBOOK, "kind": "sysctl_write",
                               "target": "net.core.somaxconn"}
    assert asked["incident_fingerprint"] == f"{PLAYBOOK}|netns" and asked["renew"] is None
    renewal = until(lambda: [s for s in cp.requests("lease") if s.body["renew"]], timeout=4)
    assert renewal[0].body["renew"] == {"lease_id": 1, "epoch": 1}
    feed(window, clock, 8, overflow_rate=0, psi=1.0, start_total=total)
    [verified] = engine.step()
    assert verified.state == S.VERIFIED
    until(lambda: cp.releases)
    assert cp.releases == [{"host_id": HOST, "lease_id": 1, "epoch": 1, "outcome": "verified"}]

    def timed(endpoint: str) -> float:
        return telemetry.agent_registry.get_sample_value(
            "healer_fleet_request_seconds_count", {"endpoint": endpoint}) or 0.0

    until(lambda: timed("release") == 1)  # timed once its answer is read
    assert timed("lease") == 1 and timed("renew") >= 1


def test_a_grant_is_necessary_never_sufficient_the_guard_rechecks_at_apply_time(
        netns: str, repo: Repository, clock: Clock, window: Window, tmp_path: Path,
        cp: ControlPlane, make_link: LinkFactory) -> None:
    netns_sysctl(netns, "net.core.somaxconn", "128")
    link = make_link(cp.url, repo)
    engine = _engine(repo, clock, window, tmp_path, link)
    record = engine.propose(_incident(repo, clock, netns), somaxconn(netns, "512"), SPEC)
    engine.step()
    until(lambda: link.leases.answer(record.id).go)
    netns_sysctl(netns, "net.core.somaxconn", "8192")  # meanwhile someone raised it further
    [denied] = engine.step()  # 512 would now lower it: the guard refuses, grant or not
    assert denied.state == S.DENIED and "re-check at apply time" in str(
        repo.list_audit(subject=f"action:{record.id}")[0].detail)
    assert netns_sysctl(netns, "net.core.somaxconn") == "8192"
    until(lambda: cp.releases)
    assert cp.releases[0]["outcome"] == "denied"


def _told_to_wait_for_a_canary(
        netns: str, repo: Repository, clock: Clock, window: Window, tmp_path: Path,
        cp: ControlPlane, make_link: LinkFactory, *, waits: int,
        retry_after: float) -> tuple[ChangeEngine, FleetLink, ActionRecord]:
    """A somaxconn change proposed and asked for, the control plane answering "wait for
    the canary" ``waits`` times: the engine, its link and the record, once the link heard
    the first wait."""
    netns_sysctl(netns, "net.core.somaxconn", "128")
    cp.lease_answers.extend([cp.wait("canary", retry_after=retry_after)] * waits)
    link = make_link(cp.url, repo)
    engine = _engine(repo, clock, window, tmp_path, link)
    feed(window, clock, 10, overflow_rate=20, psi=1.0)
    record = engine.propose(_incident(repo, clock, netns), somaxconn(netns, "512"), SPEC)
    engine.step()
    until(lambda: link.leases.answer(record.id).wait == "canary")
    return engine, link, record


def test_behind_a_canary_the_change_waits_in_waiting_canary_then_applies_on_its_grant(
        netns: str, repo: Repository, clock: Clock, window: Window, tmp_path: Path,
        cp: ControlPlane, make_link: LinkFactory, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="healer.guard")
    engine, _, record = _told_to_wait_for_a_canary(netns, repo, clock, window, tmp_path, cp,
                                                   make_link, waits=1, retry_after=0.5)
    [waiting] = engine.step()
    assert waiting.state == S.WAITING_CANARY
    assert engine.step() == [] and netns_sysctl(netns, "net.core.somaxconn") == "128"
    [applied] = until(engine.step)  # after retry_after it asks again, and is granted
    assert applied.state == S.VERIFYING and netns_sysctl(netns, "net.core.somaxconn") == "512"
    states = [t["state"] for t in repo.action_transitions(record.id or 0)]
    assert states == ["proposed", "approved", "waiting_canary", "applying", "verifying"]
    # The guard checked before every ask, quietly; the check that let it apply is logged.
    checks = [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO]
    assert sum("at=apply" in m for m in checks) == 1
    assert not any("at=lease" in m for m in checks)


def test_a_change_held_behind_its_canary_is_loaded_and_seal_checked_when_it_may_move(
        netns: str, repo: Repository, clock: Clock, window: Window, tmp_path: Path,
        cp: ControlPlane, make_link: LinkFactory) -> None:
    """Hundreds of hosts may wait behind one canary: a waiting change whose wait is already
    recorded is neither read from the journal nor seal-checked per cycle, and one forged
    while it waited is still refused when its grant comes."""
    engine, link, record = _told_to_wait_for_a_canary(netns, repo, clock, window, tmp_path,
                                                      cp, make_link, waits=3, retry_after=0.3)
    engine.step()  # to waiting_canary
    engine.step()  # the wait is recorded
    assert _state(repo, record) == S.WAITING_CANARY
    checked: list[int] = []
    trusted = engine.seal.trusted
    engine.seal.trusted = lambda r: checked.append(r.id or 0) or trusted(r)  # type: ignore[method-assign]
    loaded: list[object] = []
    iter_actions = repo.iter_actions
    repo.iter_actions = lambda **kw: loaded.append(kw) or iter_actions(**kw)  # type: ignore[method-assign]
    for _ in range(3):
        assert engine.step() == []
    assert checked == [] and loaded == []
    with repo.engine.begin() as conn:  # the web side's write access, while it waits
        conn.execute(sa.update(ActionTable).where(ActionTable.c.id == record.id)
                     .values(action={**record.action.model_dump(mode="json"), "value": "65535"}))
    until(lambda: link.leases.answer(record.id).go or link.leases.answer(record.id).ask, timeout=5)
    for _ in range(3):
        engine.step()
    assert checked and _state(repo, record) == S.WAITING_CANARY  # refused, not applied
    assert netns_sysctl(netns, "net.core.somaxconn") == "128"
    assert any(a.event == "journal.untrusted" for a in repo.list_audit())


def test_a_turn_for_its_remedy_ends_a_wait_for_room_long_before_its_retry_after(
        netns: str, repo: Repository, clock: Clock, window: Window, tmp_path: Path,
        cp: ControlPlane, make_link: LinkFactory) -> None:
    """Hosts waiting for room ask again by themselves only every RETRY_ROOM seconds: a
    lease that ends brings the longest affected a turn event, and that one asks at once."""
    engine, link, record = _told_to_wait_for_a_canary(netns, repo, clock, window, tmp_path,
                                                      cp, make_link, waits=1, retry_after=600)
    assert engine.step()[0].state == S.WAITING_CANARY
    until(lambda: cp.requests("events"))  # the long poll is held open
    other = {"playbook": PLAYBOOK, "kind": "sysctl_write", "target": "net.core.rmem_max"}
    cp.push({"type": "turn", "remedy": other})  # not its remedy: it keeps waiting
    until(lambda: len(cp.requests("events")) >= 2)
    assert not link.leases.ready() and engine.step() == []
    assert len(cp.requests("lease")) == 1
    cp.push({"type": "turn", "remedy": {**other, "target": "net.core.somaxconn"}})
    until(link.leases.ready, timeout=2.0)
    [applied] = until(engine.step, timeout=5.0)
    assert applied.id == record.id and applied.state == S.VERIFYING
    assert len(cp.requests("lease")) == 2 and netns_sysctl(netns, "net.core.somaxconn") == "512"


def test_another_wait_keeps_the_change_approved_with_the_reason_recorded_once(
        netns: str, repo: Repository, clock: Clock, window: Window, tmp_path: Path,
        cp: ControlPlane, make_link: LinkFactory) -> None:
    netns_sysctl(netns, "net.core.somaxconn", "128")
    cp.lease_answers.extend([cp.wait("in_flight", retry_after=0.3)] * 3)
    link = make_link(cp.url, repo)
    engine = _engine(repo, clock, window, tmp_path, link)
    record = engine.propose(_incident(repo, clock, netns), somaxconn(netns, "512"), SPEC)
    for _ in range(3):
        engine.step()
        until(lambda: link.leases.answer(record.id).wait == "in_flight")
        engine.step()
        until(lambda: link.leases.answer(record.id).ask)
    assert _state(repo, record) == S.APPROVED
    waits = [a for a in repo.list_audit(subject=f"action:{record.id}")
             if a.event == "action.fleet_wait"]
    assert [(w.detail["reason"], w.detail["rule"]) for w in waits] == [("in_flight",
                                                                        "F-in_flight")]


def test_a_grant_counts_only_while_younger_than_half_its_ttl_by_the_agents_own_clock(
        netns: str, repo: Repository, clock: Clock, window: Window, tmp_path: Path,
        cp: ControlPlane, make_link: LinkFactory) -> None:
    netns_sysctl(netns, "net.core.somaxconn", "128")
    netns_sysctl(netns, "net.ipv4.tcp_max_syn_backlog", "128")
    cp.ttl_seconds = 300.0  # TTL/2 = 150 s, by the clock the test moves
    cp.renew_status = 500  # renewals go unanswered: no refresh of a grant here
    mono = Monotonic()
    link = make_link(cp.url, repo, monotonic=mono)
    engine = _engine(repo, clock, window, tmp_path, link)
    incident = _incident(repo, clock, netns)
    old = engine.propose(incident, somaxconn(netns, "512"), SPEC)
    engine.step()
    until(lambda: link.leases.answer(old.id).go)
    mono.advance(150.5)  # the cycle was late: the grant is past TTL/2 when it comes
    young = engine.propose(incident, Proposal(action=SysctlWrite(
        scope=f"netns:{netns}", key="net.ipv4.tcp_max_syn_backlog", value="512"),
        provenance="playbook", in_playbook=True), SPEC)
    assert engine.step() == []  # the old grant is stale; the young change asks
    assert link.leases.answer(old.id).wait == "renewing"
    until(lambda: link.leases.answer(young.id).go)
    mono.advance(149.5)  # the young grant is 149.5 s old: still under TTL/2
    [applied] = engine.step()
    assert applied.id == young.id and applied.state == S.VERIFYING
    assert _state(repo, old) == S.APPROVED
    assert netns_sysctl(netns, "net.core.somaxconn") == "128"
    assert netns_sysctl(netns, "net.ipv4.tcp_max_syn_backlog") == "512"


def test_a_lease_lost_while_verifying_ends_nothing_the_regression_still_rolls_back(
        netns: str, repo: Repository, clock: Clock, window: Window, tmp_path: Path,
        cp: ControlPlane, make_link: LinkFactory) -> None:
    cp.ttl_seconds = 3.0
    repo.set_fleet_reporting(True)
    link = make_link(cp.url, repo)
    engine, record, total = _applied(netns, repo, clock, window, tmp_path, link, "129", "513")
    cp.renew_status = 409  # reclaimed: every renewal now finds the lease lost
    until(lambda: link.leases.held() == 0, timeout=4)
    feed(window, clock, 4, overflow_rate=20, psi=30.0, start_total=total)
    [rolled] = engine.step()
    assert rolled.state == S.ROLLED_BACK and netns_sysctl(netns, "net.core.somaxconn") == "129"
    assert cp.releases == []  # nothing left to hand back
    last = until(lambda: [r for r in cp.reports.values()
                          if r.get("action", {}).get("state") == "rolled_back"])
    assert last[0]["action"]["id"] == record.id


def test_a_partitioned_agent_finishes_verifying_rolls_back_and_reports_later(
        netns: str, repo: Repository, clock: Clock, window: Window, tmp_path: Path,
        cp: ControlPlane, make_link: LinkFactory) -> None:
    link = make_link(cp.url, repo)
    engine, _, total = _applied(netns, repo, clock, window, tmp_path, link, "129", "513")
    until(lambda: cp.reports and max(cp.reports) >= 4)  # proposed .. verifying reported
    port = cp.port
    cp.stop()  # the partition
    feed(window, clock, 4, overflow_rate=20, psi=30.0, start_total=total)
    [rolled] = engine.step()
    assert rolled.state == S.ROLLED_BACK and netns_sysctl(netns, "net.core.somaxconn") == "129"
    cp.start(port)  # the partition heals
    until(lambda: cp.releases, timeout=10)
    assert cp.releases[0]["outcome"] == "rolled_back"
    until(lambda: any(r.get("action", {}).get("state") == "rolled_back"
                      for r in cp.reports.values()), timeout=10)


def test_an_unreachable_control_plane_holds_every_change_tells_a_person_once_and_lets_messages_out(
        netns: str, repo: Repository, clock: Clock, window: Window, tmp_path: Path,
        make_link: LinkFactory) -> None:
    netns_sysctl(netns, "net.core.somaxconn", "128")
    notifier = Notifier(Settings(state_dir=tmp_path / "state", host_id=HOST), repo)
    link = make_link(_dead_url(), repo, config={"unreachable_after": 0.3}, notifier=notifier)
    engine = _engine(repo, clock, window, tmp_path, link)
    change = engine.propose(_incident(repo, clock, netns), somaxconn(netns, "512"), SPEC)
    message = engine.propose(None, Proposal(action=Notify(message="disk is filling"),
                                            provenance="playbook", in_playbook=True))
    for _ in range(20):
        link.drain()
        engine.step()
        clock.advance(1)
        time.sleep(0.1)
    assert _state(repo, change) == S.APPROVED
    assert netns_sysctl(netns, "net.core.somaxconn") == "128"
    assert link.leases.answer(change.id).wait == "unreachable"
    assert _state(repo, message) == S.VERIFIED  # notify and escalate are not fleet-gated
    told = [n for n in repo.due_notifications(clock.now + timedelta(days=1), limit=100)
            if n.payload["subject"] == "fleet:control-plane"]
    assert len(told) == 1  # once for the outage, not once a cycle
    assert "fleet-gated changes wait" in told[0].payload["text"]


def test_crash_recovery_restores_an_unverified_change_with_the_network_down(
        netns: str, repo: Repository, clock: Clock, window: Window, tmp_path: Path,
        cp: ControlPlane, make_link: LinkFactory) -> None:
    link = make_link(cp.url, repo)
    _applied(netns, repo, clock, window, tmp_path, link)
    link.stop()
    cp.stop()  # the agent dies mid-verify, and comes back to no network
    offline = make_link(_dead_url(), repo, start=False)
    restarted = _engine(repo, clock, window, tmp_path, offline)
    repo.set_fleet_reporting(True)
    [restored] = restarted.reconcile_on_start()
    assert restored.state == S.ROLLED_BACK and netns_sysctl(netns, "net.core.somaxconn") == "128"
    queued = repo.report_batch(100, 10**9)  # told once the control plane is back
    assert queued[-1].kind == "transition" and queued[-1].body["state"] == "rolled_back"


def test_back_pressure_on_lease_requests_is_honoured(
        netns: str, repo: Repository, clock: Clock, window: Window, tmp_path: Path,
        cp: ControlPlane, make_link: LinkFactory) -> None:
    netns_sysctl(netns, "net.core.somaxconn", "128")
    cp.throttles["lease"] = Throttle(429, 1, "1")
    link = make_link(cp.url, repo)
    engine = _engine(repo, clock, window, tmp_path, link)
    record = engine.propose(_incident(repo, clock, netns), somaxconn(netns, "512"), SPEC)
    engine.step()
    until(lambda: link.leases.answer(record.id).wait == "backpressure")
    refused_at = cp.requests("lease")[0].at
    [applied] = until(engine.step, timeout=5)
    assert applied.state == S.VERIFYING
    retried_at = cp.requests("lease")[1].at
    assert retried_at - refused_at >= 0.8  # Retry-After: 1, less at most 20 % jitter


def test_a_control_plane_refusing_this_version_grants_nothing(
        netns: str, repo: Repository, clock: Clock, window: Window, tmp_path: Path,
        cp: ControlPlane, make_link: LinkFactory) -> None:
    netns_sysctl(netns, "net.core.somaxconn", "128")
    cp.version = "1.1.0"  # another major version: 426
    link = make_link(cp.url, repo)
    engine = _engine(repo, clock, window, tmp_path, link)
    record = engine.propose(_incident(repo, clock, netns), somaxconn(netns, "512"), SPEC)
    engine.step()
    until(lambda: link.leases.answer(record.id).wait == "outdated")
    assert engine.step() == [] and _state(repo, record) == S.APPROVED
