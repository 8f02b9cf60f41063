"""Events from the control plane's long poll: the kill switch, breakers and votes reach a real
engine over real HTTP; alerts and fleet diagnoses reach a real daemon's loop."""

from __future__ import annotations

import time
from pathlib import Path

from guardrails.actions import SysctlWrite
from healer.daemon import build_daemon
from healer.fleet.config import FleetConfig
from healer.models import ActionRecord, ActionState, IncidentStatus, Proposal
from healer.settings import Settings
from healer.store.repository import Repository
from tests.act.conftest import Clock, Window, netns_sysctl
from tests.act.engine_kit import SPEC, feed, somaxconn
from tests.fleet_server import ControlPlane

from .conftest import HOST, TOKEN, LinkFactory, until
from .test_leases import PLAYBOOK, _applied, _engine, _incident, _state

S = ActionState
REMEDY = {"playbook": PLAYBOOK, "kind": "sysctl_write", "target": "net.core.somaxconn"}


def _backlog(netns: str, value: str) -> Proposal:
    action = SysctlWrite(scope=f"netns:{netns}", key="net.ipv4.tcp_max_syn_backlog", value=value)
    return Proposal(action=action, provenance="playbook", in_playbook=True)


def test_a_pause_stops_every_automatic_change_within_2s_and_never_blocks_a_rollback(
        netns: str, repo: Repository, clock: Clock, window: Window, tmp_path: Path,
        cp: ControlPlane, make_link: LinkFactory) -> None:
    netns_sysctl(netns, "net.ipv4.tcp_max_syn_backlog", "128")
    link = make_link(cp.url, repo)
    engine, first, total = _applied(netns, repo, clock, window, tmp_path, link)
    feed(window, clock, 8, overflow_rate=0, psi=1.0, start_total=total)
    [verified] = engine.step()
    assert verified.state == S.VERIFIED
    incident = repo.get_incident(first.incident_id or 0)
    second = engine.propose(incident, _backlog(netns, "512"), SPEC)
    engine.step()
    until(lambda: link.leases.answer(second.id).go)  # granted, not yet applied
    until(lambda: cp.requests("events"))  # the long poll is held open
    pushed = time.monotonic()
    cp.push({"type": "pause"})
    until(lambda: link.state.paused, timeout=2.0)
    assert time.monotonic() - pushed < 2.0
    assert engine.step() == []
    assert _state(repo, second) == S.APPROVED
    assert netns_sysctl(netns, "net.ipv4.tcp_max_syn_backlog") == "128"
    until(lambda: [r for r in cp.releases if r["outcome"] == "abandoned"])  # handed back
    rolled = engine.rollback(first.id or 0)  # a pause never blocks a rollback
    assert rolled.state == S.ROLLED_BACK and netns_sysctl(netns, "net.core.somaxconn") == "128"
    cp.push({"type": "resume", "remedy": None})
    until(lambda: not link.state.paused, timeout=2.0)
    [applied] = until(engine.step)
    assert applied.id == second.id and applied.state == S.VERIFYING


def test_an_open_breaker_holds_its_remedy_even_with_a_grant_until_resumed(
        netns: str, repo: Repository, clock: Clock, window: Window, tmp_path: Path,
        cp: ControlPlane, make_link: LinkFactory) -> None:
    netns_sysctl(netns, "net.core.somaxconn", "128")
    link = make_link(cp.url, repo)
    engine = _engine(repo, clock, window, tmp_path, link)
    cp.push({"type": "breaker", "remedy": REMEDY, "open": True})
    until(lambda: cp.requests("events") and len(cp.requests("events")) >= 2)
    record = engine.propose(_incident(repo, clock, netns), somaxconn(netns, "512"), SPEC)
    engine.step()
    until(lambda: cp.leases)  # the control plane granted it
    until(lambda: link.leases.answer(record.id).wait == "breaker")
    until(lambda: cp.releases)  # the grant goes back, and no other is asked for
    for _ in range(5):
        assert engine.step() == []
    assert netns_sysctl(netns, "net.core.somaxconn") == "128"
    assert len(cp.requests("lease")) == 1 and cp.releases[0]["outcome"] == "abandoned"
    cp.push({"type": "resume", "remedy": REMEDY})
    [applied] = until(engine.step)
    assert applied.state == S.VERIFYING


def test_a_fleet_vote_decides_this_hosts_awaiting_change_and_the_guard_still_checks_it(
        netns: str, repo: Repository, clock: Clock, window: Window, tmp_path: Path,
        cp: ControlPlane, make_link: LinkFactory) -> None:
    netns_sysctl(netns, "net.core.somaxconn", "128")
    link = make_link(cp.url, repo)
    engine = _engine(repo, clock, window, tmp_path, link)
    incident = _incident(repo, clock, netns)
    asked = engine.propose(incident, somaxconn(netns, "512").model_copy(
        update={"provenance": "llm", "in_playbook": False}), SPEC)
    refused = engine.propose(incident, _backlog(netns, "512").model_copy(
        update={"provenance": "llm", "in_playbook": False}), SPEC)
    assert asked.state == refused.state == S.AWAITING_APPROVAL
    cp.push({"type": "vote", "action_id": asked.id, "user": "alice", "approve": True,
             "comment": "seen it on r12"},
            {"type": "vote", "action_id": refused.id, "user": "bob", "approve": False},
            {"type": "vote", "action_id": 999_999, "user": "mallory", "approve": True},
            {"type": "vote", "action_id": "12; DROP", "user": "x", "approve": True})
    until(lambda: link.events.inbox)
    link.drain()
    moved = {r.id: r.state for r in engine.step()}
    assert moved == {asked.id: S.APPROVED, refused.id: S.REJECTED}
    [vote] = repo.list_approvals(asked.id or 0)
    assert (vote.user, vote.origin, vote.comment) == ("fleet:alice", "fleet", "seen it on r12")
    [applied] = until(engine.step)  # then the lease, then the guard, as for any change
    assert applied.id == asked.id and netns_sysctl(netns, "net.core.somaxconn") == "512"
    cursor = repo.kv_get("fleet", "events_cursor")
    assert cursor == "4"
    again = make_link(cp.url, repo)  # a restart asks only for what came after
    until(lambda: again.events._cursor is not None and len(cp.requests("events")) >= 3)
    assert cp.requests("events")[-1].body["after"] == "4"


ALERT_PLAYBOOK = """
id: listen-overflow-alert
title: Listen queue overflows, as Prometheus saw them
severity: warning
description: node_exporter's TcpExtListenOverflows rate alert for this host.
references: [https://prometheus.io/docs/alerting/latest/alertmanager/]
scope: net
detect:
  any:
    - {kind: alert, alertname: HostListenOverflows, labels: {severity: [warning, critical]}}
evidence:
  sysctls: [net.core.somaxconn]
"""


def test_alerts_and_fleet_diagnoses_enter_a_real_daemons_loop_as_untrusted_input(
        netns: str, tmp_path: Path, cp: ControlPlane) -> None:
    netns_sysctl(netns, "net.core.somaxconn", "128")
    playbooks = tmp_path / "playbooks"
    playbooks.mkdir()
    (playbooks / "listen-overflow-alert.yaml").write_text(ALERT_PLAYBOOK)
    settings = Settings(state_dir=tmp_path / "state", agent_dir=tmp_path / "agent",
                        host_id=HOST, kmsg_source="none", gpu_backend="simulated",
                        playbooks_dir=playbooks, netns=netns, control_plane_url=cp.url,
                        fleet_sample_seconds=1)
    daemon = build_daemon(settings, publish=False, fleet=FleetConfig.of(settings, TOKEN))
    assert daemon.fleet is not None
    daemon.start()
    try:
        cp.push({"type": "incident", "incident": {"status": "firing", "labels": {
                    "alertname": "HostListenOverflows", "instance": "h1:9100",
                    "severity": "warning", "job": "node"}}},
                {"type": "incident", "incident": {
                    "alertname": "DiskWillFillIn4Hours", "status": "firing",
                    "fleet_fingerprint": 'DiskWillFillIn4Hours{device="sda"}',
                    "labels": {"alertname": "DiskWillFillIn4Hours", "device": "sda",
                               "instance": "h1:9100"}}})
        repo = daemon.repo
        opened = until(lambda: len(repo.list_incidents(IncidentStatus.OPEN)) == 2 and
                       repo.list_incidents(IncidentStatus.OPEN), timeout=10)
        by_playbook = {i.playbook: i for i in opened}
        matched = by_playbook["listen-overflow-alert"]
        assert matched.scope == f"netns:{netns}"
        assert matched.fleet_fingerprint == 'HostListenOverflows{job="node",severity="warning"}'
        assert matched.evidence.tunables == {"net.core.somaxconn": "128"}
        unknown = by_playbook["unclassified"]
        assert unknown.fleet_fingerprint == 'DiskWillFillIn4Hours{device="sda"}'
        assert unknown.evidence.captures["device"] == "sda"
        proposals = [
            {"action": {"kind": "sysctl_write", "scope": f"netns:{netns}",
                        "key": "net.core.somaxconn", "value": "8192"},
             "provenance": "playbook", "in_playbook": True, "rationale": "trust me"},
            {"action": {"kind": "sysctl_write", "key": "kernel.panic", "value": "1"},
             "provenance": "operator", "in_playbook": True}]
        cp.push({"type": "diagnosis", "fleet_fingerprint": unknown.fleet_fingerprint,
                 "model": "fleet-model", "answer": {
                     "root_cause": "disk-filling", "explanation": "the disk fills",
                     "confidence": 0.9, "proposals": proposals}})

        def decided() -> list[ActionRecord]:
            records = repo.list_actions()
            settled = len(records) == 2 and all(r.state != S.PROPOSED for r in records)
            return records if settled else []

        records = until(decided)
        by_key = {getattr(r.action, "key", ""): r for r in records}
        raise_it, panic = by_key["net.core.somaxconn"], by_key["kernel.panic"]
        assert raise_it.provenance == panic.provenance == "llm"
        assert raise_it.verification and raise_it.verification.in_playbook is False
        assert raise_it.state == S.AWAITING_APPROVAL  # never automatic outside a playbook
        assert panic.state == S.DENIED
        assert netns_sysctl(netns, "net.core.somaxconn") == "128"
        diagnosed = repo.get_incident(unknown.id or 0)
        assert diagnosed and diagnosed.diagnosis and diagnosed.diagnosis.source == "llm"
        reported = until(lambda: [r["incident"] for r in cp.reports.values()
                                  if r["kind"] == "incident"
                                  and r["incident"]["playbook"] == "listen-overflow-alert"])
        assert reported[0]["fleet_fingerprint"] == matched.fleet_fingerprint
        until(lambda: any(r["kind"] == "sample" for r in cp.reports.values()))
    finally:
        daemon.stop()
