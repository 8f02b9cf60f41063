"""max_per_incident and drift on verified changes, on a real netns sysctl."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from guardrails.actions import CgroupLimit, Escalate
from healer.act.engine import ChangeEngine
from healer.act.limits import max_per_incident_for
from healer.models import ActionState, Incident
from healer.store.repository import Repository
from playbooks.loader import load_library
from playbooks.schema import Playbook

from .conftest import Clock, Window, netns_sysctl
from .engine_kit import Notes, feed, make_engine, somaxconn

S = ActionState


def _playbook(cap: int | None) -> Playbook:
    """A one-remedy playbook without a verify block (kept once the read-back holds)."""
    return Playbook.model_validate({
        "id": "capped", "title": "t", "severity": "warning", "description": "d",
        "references": ["https://example.org/"],
        "detect": {"any": [{"kind": "rate", "metric": "net.tcp.listen_overflows_total"}]},
        "remedies": [{"action": {"kind": "sysctl_write", "key": "net.core.somaxconn",
                                 "value": "current*2"},
                      "rationale": "r", "expected_effect": "e", "max_per_incident": cap}]})


def _incident(repo: Repository, scope: str) -> Incident:
    now = datetime.now(UTC)
    return repo.open_incident(Incident(host_id=repo.host_id, playbook="listen-backlog-too-small",
                                       scope=scope, first_seen=now, last_seen=now))


def _verified(engine: ChangeEngine, clock: Clock, incident: Incident | None, netns: str,
              value: str, playbook: Playbook | None = None) -> int:
    record = engine.propose(incident, somaxconn(netns, value), playbook)
    assert record.state == S.APPROVED, record.decision
    [applied] = engine.step()
    assert applied.state == S.VERIFYING
    clock.advance(5)  # no verify target: kept once the read-back held for the settle time
    [verified] = engine.step()
    assert verified.state == S.VERIFIED
    assert verified.id is not None
    return verified.id


def test_memory_leak_caps_only_its_limit_step() -> None:
    playbook = load_library().get("memory-leak")
    limit = CgroupLimit(scope="cgroup:/x", path="/x", knob="memory.max", value="100000000")
    assert max_per_incident_for(playbook, limit) == 1
    assert max_per_incident_for(playbook, limit.model_copy(update={"knob": "pids.max"})) is None
    assert max_per_incident_for(playbook, Escalate(scope="cgroup:/x", message="m")) is None
    assert max_per_incident_for(None, limit) is None


def test_second_change_of_a_capped_remedy_is_denied_for_the_same_incident(
        netns: str, repo: Repository, clock: Clock, window: Window, tmp_path: Path) -> None:
    netns_sysctl(netns, "net.core.somaxconn", "128")
    engine = make_engine(repo, clock, window, tmp_path)
    incident = _incident(repo, f"netns:{netns}")
    first = _verified(engine, clock, incident, netns, "256", _playbook(1))
    clock.advance(301)  # past the policy's per-target cooldown: only the cap can deny now
    second = engine.propose(incident, somaxconn(netns, "512"), _playbook(1))
    assert second.state == S.DENIED
    assert second.decision.rules == ("R-max-per-incident",)
    assert f"action {first}" in second.decision.reasons[0]
    assert netns_sysctl(netns, "net.core.somaxconn") == "256"
    # another incident, an uncapped remedy, or an explicit larger cap are not refused
    other = engine.propose(_incident(repo, "host"), somaxconn(netns, "512"), _playbook(1))
    assert "R-max-per-incident" not in other.decision.rules
    engine.rollback_all()
    uncapped = engine.propose(incident, somaxconn(netns, "512"), _playbook(None))
    assert "R-max-per-incident" not in uncapped.decision.rules


def test_explicit_cap_applies_without_a_playbook(
        netns: str, repo: Repository, clock: Clock, window: Window, tmp_path: Path) -> None:
    netns_sysctl(netns, "net.core.somaxconn", "128")
    engine = make_engine(repo, clock, window, tmp_path)
    incident = _incident(repo, f"netns:{netns}")
    _verified(engine, clock, incident, netns, "200")
    clock.advance(301)
    again = engine.propose(incident, somaxconn(netns, "400"), None, max_per_incident=1)
    assert again.state == S.DENIED and again.decision.rules == ("R-max-per-incident",)


def test_admin_change_after_verified_is_caught_every_n_cycles(
        netns: str, repo: Repository, clock: Clock, window: Window, tmp_path: Path) -> None:
    netns_sysctl(netns, "net.core.somaxconn", "128")
    notes = Notes()
    engine = make_engine(repo, clock, window, tmp_path, notes, drift_every_cycles=5)
    feed(window, clock, 1, overflow_rate=0, psi=1.0)
    action_id = _verified(engine, clock, None, netns, "512")  # two cycles so far
    netns_sysctl(netns, "net.core.somaxconn", "4000")  # the admin, after verification
    assert engine.step() == [] and engine.step() == []  # cycles 3, 4: not looked at
    [superseded] = engine.step()  # cycle 5
    assert superseded.id == action_id and superseded.state == S.SUPERSEDED
    assert netns_sysctl(netns, "net.core.somaxconn") == "4000"  # the admin's value stays
    assert superseded.action.target in repo.paused_targets()
    assert "escalation" in notes.names()


def test_drift_check_leaves_our_own_values_and_the_original_alone(
        netns: str, repo: Repository, clock: Clock, window: Window, tmp_path: Path) -> None:
    netns_sysctl(netns, "net.core.somaxconn", "128")
    engine = make_engine(repo, clock, window, tmp_path, drift_every_cycles=1)
    older = _verified(engine, clock, None, netns, "256")
    clock.advance(301)
    newer = _verified(engine, clock, None, netns, "512")  # healer's own later change
    assert engine.check_drift() == []  # the older record's 256 is not an admin's value
    netns_sysctl(netns, "net.core.somaxconn", "256")  # back to the newer one's original
    assert engine.check_drift() == []
    assert {repo.get_action(i).state for i in (older, newer)} == {S.VERIFIED}  # type: ignore[union-attr]
    assert repo.paused_targets() == set()
