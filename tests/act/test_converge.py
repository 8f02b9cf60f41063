"""Convergent steps on a real netns sysctl: a raise that falls short is kept and stepped
again at once, each step its own guarded, verified record; after the steps allowed, or at
the policy's ceiling, a person is asked, and approving that allows one more step."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from healer.act.engine import ChangeEngine
from healer.models import ActionRecord, ActionState, Incident
from healer.store.repository import Repository
from healer.store.votes import record_vote
from playbooks.loader import load_library
from playbooks.schema import Converge, Demand, Playbook

from .conftest import Clock, Window, netns_sysctl
from .engine_kit import OVERFLOWS, PSI, Notes, make_engine, somaxconn

S = ActionState
SHORTFALL = (Demand(number="target.after_max", kind="shortfall"),)


def _listen(max_steps: int = 4) -> Playbook:
    """The shipped listen-backlog playbook, its somaxconn remedy allowed ``max_steps``."""
    pb = load_library().get("listen-backlog-too-small")
    assert pb is not None and pb.remedies[0].converge is not None
    remedy = pb.remedies[0].model_copy(
        update={"converge": Converge(max_steps=max_steps, demand=SHORTFALL)})
    return pb.model_copy(update={"remedies": (remedy,)})


def _incident(repo: Repository, netns: str) -> Incident:
    now = datetime.now(UTC)
    return repo.open_incident(Incident(host_id=repo.host_id, playbook="listen-backlog-too-small",
                                       scope=f"netns:{netns}", first_seen=now, last_seen=now))


class Queue:
    """The listen queue's overflow counter, one point a second, at a rate a test sets."""

    def __init__(self, window: Window, clock: Clock, rate: float) -> None:
        self.window, self.clock, self.rate, self.total = window, clock, rate, 0.0

    def tick(self, seconds: int = 1) -> None:
        for _ in range(seconds):
            self.clock.advance(1)
            self.total += self.rate
            self.window.add(OVERFLOWS, self.clock.now, self.total)
            self.window.add(PSI, self.clock.now, 1.0)

    def until_change(self, engine: ChangeEngine, limit: int = 60) -> list[ActionRecord]:
        """Tick and step until the engine moves something; at most ``limit`` seconds."""
        for _ in range(limit):
            self.tick()
            changed = engine.step()
            if changed:
                return changed
        raise AssertionError(f"nothing moved in {limit} s")


def _start(engine: ChangeEngine, queue: Queue, incident: Incident, netns: str, value: str,
           playbook: Playbook) -> ActionRecord:
    queue.tick(25)  # the baseline: overflowing at the queue's rate
    record = engine.propose(incident, somaxconn(netns, value), playbook)
    assert record.state == S.APPROVED, record.decision
    [applied] = engine.step()
    assert applied.state == S.VERIFYING
    return applied


def test_a_short_step_is_kept_and_the_next_larger_step_goes_out_at_once(
        netns: str, repo: Repository, clock: Clock, window: Window, tmp_path: Path) -> None:
    netns_sysctl(netns, "net.core.somaxconn", "128")
    engine = make_engine(repo, clock, window, tmp_path)
    queue = Queue(window, clock, rate=20)
    incident = _incident(repo, netns)
    first = _start(engine, queue, incident, netns, "512", _listen())
    assert first.verification and first.verification.step
    assert (first.verification.step.number, first.verification.step.ceiling) == (1, 65535)
    assert first.verification.spec and first.verification.spec.capacity  # never "worse"
    queue.rate = 5  # fewer overflows, but still some: not enough
    kept, second = queue.until_change(engine)
    assert kept.id == first.id and kept.state == S.VERIFIED  # kept, not rolled back
    assert kept.verdict == "insufficient" and kept.verification and kept.verification.result
    assert kept.verification.result.numbers["target.after_max"] == 5.0
    assert netns_sysctl(netns, "net.core.somaxconn") == "512"
    # Step 2 at once, one cycle later, though step 1 was applied seconds ago: the guard's
    # cooldown does not hold one convergence's steps apart.
    assert second.state == S.APPROVED, second.decision
    assert second.action.model_dump()["value"] == "1024"  # 512 x 2: geometric
    step = second.verification.step if second.verification else None
    assert step is not None and (step.number, step.first, step.previous) == (2, first.id, first.id)
    assert "x2^1" in second.rationale and f"action {first.id}" in second.rationale
    [applied] = engine.step()
    assert (applied.original, applied.applied) == ("512", "1024")  # its own original
    queue.rate = 0
    [fixed] = queue.until_change(engine)
    assert fixed.id == second.id and fixed.state == S.VERIFIED and fixed.verdict == "fixed"
    assert netns_sysctl(netns, "net.core.somaxconn") == "1024"
    # each step can be rolled back on its own: the newest first, to the step before it
    assert engine.rollback(fixed.id or 0).state == S.ROLLED_BACK
    assert netns_sysctl(netns, "net.core.somaxconn") == "512"
    assert engine.rollback(first.id or 0).state == S.ROLLED_BACK
    assert netns_sysctl(netns, "net.core.somaxconn") == "128"


def test_the_kernels_evidence_sizes_a_step_larger_than_the_geometric_one(
        netns: str, repo: Repository, clock: Clock, window: Window, tmp_path: Path) -> None:
    netns_sysctl(netns, "net.core.somaxconn", "128")
    engine = make_engine(repo, clock, window, tmp_path)
    queue = Queue(window, clock, rate=2500)
    _start(engine, queue, _incident(repo, netns), netns, "512", _listen())
    queue.rate = 2000  # 2000 connections a second find the queue full: that is the shortfall
    _kept, second = queue.until_change(engine)
    # (512 + 2000) x 1.25 = 3140 > 512 x 2; within the step bound max(512 x 4, 4096)
    assert second.action.model_dump()["value"] == "3140"
    assert "evidence asks for 3140" in second.rationale


def test_after_the_steps_allowed_a_person_is_asked_and_continue_grants_one_more(
        netns: str, repo: Repository, clock: Clock, window: Window, tmp_path: Path) -> None:
    netns_sysctl(netns, "net.core.somaxconn", "128")
    notes = Notes()
    engine = make_engine(repo, clock, window, tmp_path, notes)
    queue = Queue(window, clock, rate=20)
    incident = _incident(repo, netns)
    first = _start(engine, queue, incident, netns, "256", _listen(max_steps=2))
    queue.rate = 10
    _kept, second = queue.until_change(engine)
    engine.step()  # step 2 applied
    kept2, ask = queue.until_change(engine)
    assert kept2.id == second.id and kept2.verdict == "insufficient"
    assert ask.action.kind == "escalate" and ask.state == S.AWAITING_APPROVAL
    stop = ask.verification.stop if ask.verification else None
    assert stop is not None and (stop.reason, stop.grants_step) == ("steps", True)
    assert stop.steps == (first.id, second.id)
    message = ask.action.model_dump()["message"]
    assert "256 -> 512: insufficient" in message and "allow one more step" in message
    assert "approval_needed" in notes.names()
    queue.tick(5)
    assert engine.step() == []  # nothing more without a person
    repo.add_user("alice", "h", "approver")
    record_vote(repo, ask.id or 0, "alice", True, "continue", now=clock(), ttl_seconds=3600,
                via="cli")
    moved = engine.step()  # the escalation is sent (the person took it on), then the grant
    assert repo.get_action(ask.id or 0).state == S.VERIFIED  # type: ignore[union-attr]
    third = moved[-1]
    assert third.action.kind == "sysctl_write" and third.state == S.APPROVED
    step = third.verification.step if third.verification else None
    assert step is not None and (step.number, step.allowed, step.previous) == (3, 3, second.id)
    assert third.action.model_dump()["value"] == "2048"  # 512 x 2^2


def test_at_the_policys_ceiling_a_person_is_asked_and_approval_grants_nothing(
        netns: str, repo: Repository, clock: Clock, window: Window, tmp_path: Path) -> None:
    netns_sysctl(netns, "net.core.somaxconn", "40000")
    engine = make_engine(repo, clock, window, tmp_path)
    queue = Queue(window, clock, rate=20)
    incident = _incident(repo, netns)
    _start(engine, queue, incident, netns, "60000", _listen())
    queue.rate = 10
    _kept, second = queue.until_change(engine)
    assert second.action.model_dump()["value"] == "65535"  # held to the rule's range
    engine.step()
    _kept2, ask = queue.until_change(engine)
    stop = ask.verification.stop if ask.verification else None
    assert stop is not None and (stop.reason, stop.grants_step) == ("ceiling", False)
    assert "ceiling (65535, rule S-somaxconn)" in ask.action.model_dump()["message"]
    repo.add_user("alice", "h", "approver")
    record_vote(repo, ask.id or 0, "alice", True, "I will look", now=clock(), ttl_seconds=3600,
                via="cli")
    moved = engine.step()
    assert repo.get_action(ask.id or 0).state == S.VERIFIED  # type: ignore[union-attr]
    assert all(r.action.kind == "escalate" for r in moved)  # sent; no further step
    assert netns_sysctl(netns, "net.core.somaxconn") == "65535"


def test_a_restart_between_a_kept_step_and_the_next_resumes_the_convergence(
        netns: str, repo: Repository, clock: Clock, window: Window, tmp_path: Path) -> None:
    netns_sysctl(netns, "net.core.somaxconn", "128")
    engine = make_engine(repo, clock, window, tmp_path)
    queue = Queue(window, clock, rate=20)
    first = _start(engine, queue, _incident(repo, netns), netns, "512", _listen())
    queue.rate = 5
    # the crash: the verdict is journaled, the next step is not
    engine.converger.after_kept = lambda record: None  # type: ignore[method-assign]
    [kept] = queue.until_change(engine)
    assert kept.id == first.id and kept.verdict == "insufficient"
    restarted = make_engine(repo, clock, window, tmp_path)
    [second] = restarted.reconcile_on_start()
    assert second.state == S.APPROVED and second.action.model_dump()["value"] == "1024"
    assert restarted.reconcile_on_start() == []  # once only


@pytest.mark.parametrize("rate", [20.0, 60.0])
def test_no_step_is_ever_rolled_back_for_insufficient(
        netns: str, repo: Repository, clock: Clock, window: Window, tmp_path: Path,
        rate: float) -> None:
    netns_sysctl(netns, "net.core.somaxconn", "128")
    engine = make_engine(repo, clock, window, tmp_path)
    queue = Queue(window, clock, rate=rate)
    _start(engine, queue, _incident(repo, netns), netns, "256", _listen())
    queue.rate = rate / 2  # never enough: steps until the steps allowed are used up
    asked = None
    for _ in range(8):
        changed = queue.until_change(engine)
        asked = next((r for r in changed if r.action.kind == "escalate"), None)
        if asked:
            break
        engine.step()
    assert asked is not None
    steps = [r for r in repo.list_actions(limit=50) if r.action.kind == "sysctl_write"]
    assert len(steps) == 4 and all(r.state == S.VERIFIED for r in steps)
    assert all(r.verdict == "insufficient" for r in steps)
    values = [int(r.applied or 0) for r in reversed(steps)]
    assert values == sorted(values) and len(set(values)) == 4  # each step larger


def test_a_remedys_max_per_incident_caps_the_steps_and_no_grant_passes_it(
        netns: str, repo: Repository, clock: Clock, window: Window, tmp_path: Path) -> None:
    netns_sysctl(netns, "net.core.somaxconn", "128")
    engine = make_engine(repo, clock, window, tmp_path)
    queue = Queue(window, clock, rate=20)
    pb = _listen(max_steps=4)
    capped = pb.model_copy(update={"remedies": (
        pb.remedies[0].model_copy(update={"max_per_incident": 2}),)})
    first = _start(engine, queue, _incident(repo, netns), netns, "256", capped)
    assert first.verification and first.verification.step
    assert (first.verification.step.allowed, first.verification.step.cap) == (2, 2)
    queue.rate = 10
    queue.until_change(engine)
    engine.step()
    _kept, ask = queue.until_change(engine)
    stop = ask.verification.stop if ask.verification else None
    assert stop is not None and (stop.reason, stop.grants_step) == ("steps", False)
    assert "allow one more step" not in ask.action.model_dump()["message"]
