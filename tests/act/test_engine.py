"""The change engine on a real netns sysctl: guard, apply, verify, keep or roll back."""

from __future__ import annotations

from pathlib import Path

import pytest

from guardrails.actions import SysctlWrite
from healer.act.engine import ChangeEngine
from healer.models import ActionRecord, ActionState, Proposal
from healer.store.repository import Repository

from .conftest import Clock, Window, netns_sysctl
from .engine_kit import SPEC, Notes, feed, make_engine, somaxconn

S = ActionState


def test_allowed_somaxconn_raise_is_applied_verified_and_kept(
        netns: str, repo: Repository, clock: Clock, window: Window, tmp_path: Path) -> None:
    netns_sysctl(netns, "net.core.somaxconn", "128")
    notes = Notes()
    engine = make_engine(repo, clock, window, tmp_path, notes)
    total = feed(window, clock, 10, overflow_rate=20, psi=1.0)
    record = engine.propose(None, somaxconn(netns, "512"), SPEC)
    assert record.state == S.APPROVED, record.decision
    [applied] = engine.step()
    assert applied.state == S.VERIFYING
    assert (applied.original, applied.applied) == ("128", "512")
    assert netns_sysctl(netns, "net.core.somaxconn") == "512"
    feed(window, clock, 8, overflow_rate=0, psi=1.0, start_total=total)
    [verified] = engine.step()
    assert verified.state == S.VERIFIED
    assert verified.verification and verified.verification.result
    assert verified.verification.result.verdict == "fixed"
    assert netns_sysctl(netns, "net.core.somaxconn") == "512"
    assert notes.names() == ["action_applied", "action_verified"]


def test_regressing_change_is_rolled_back_to_its_exact_original(
        netns: str, repo: Repository, clock: Clock, window: Window, tmp_path: Path) -> None:
    netns_sysctl(netns, "net.core.somaxconn", "129")
    notes = Notes()
    engine = make_engine(repo, clock, window, tmp_path, notes)
    total = feed(window, clock, 10, overflow_rate=20, psi=1.0)
    record = engine.propose(None, somaxconn(netns, "513"), SPEC)
    engine.step()
    feed(window, clock, 4, overflow_rate=20, psi=30.0, start_total=total)
    [rolled] = engine.step()
    assert rolled.state == S.ROLLED_BACK
    assert netns_sysctl(netns, "net.core.somaxconn") == "129" == rolled.original
    assert rolled.verification is not None
    assert "guard psi.cpu.some_avg10 regressed" in str(rolled.verification.rollback_reason)
    assert rolled.verification.result and rolled.verification.result.verdict == "regressed"
    assert rolled.verification.result.numbers["guard.psi.cpu.some_avg10.after_median"] == 30
    assert repo.get_action(record.id or 0).state == S.ROLLED_BACK  # type: ignore[union-attr]
    assert "action_rolled_back" in notes.names()


def test_timeout_without_improvement_rolls_back(
        netns: str, repo: Repository, clock: Clock, window: Window, tmp_path: Path) -> None:
    netns_sysctl(netns, "net.core.somaxconn", "128")
    engine = make_engine(repo, clock, window, tmp_path)
    total = feed(window, clock, 10, overflow_rate=5, psi=1.0)
    engine.propose(None, somaxconn(netns, "256"), SPEC)
    engine.step()
    total = feed(window, clock, 10, overflow_rate=5, psi=1.0, start_total=total)
    assert engine.step() == []  # not yet at the deadline: keep waiting
    feed(window, clock, 10, overflow_rate=5, psi=1.0, start_total=total)
    [rolled] = engine.step()
    assert rolled.state == S.ROLLED_BACK and rolled.verification
    assert "timed out" in str(rolled.verification.rollback_reason)
    assert netns_sysctl(netns, "net.core.somaxconn") == "128"


def test_protected_key_is_denied_with_its_rule_named(
        repo: Repository, clock: Clock, window: Window, tmp_path: Path) -> None:
    engine = make_engine(repo, clock, window, tmp_path)
    proposal = Proposal(action=SysctlWrite(key="kernel.panic", value="1"), provenance="llm",
                        in_playbook=False)
    record = engine.propose(None, proposal, None)
    assert record.state == S.DENIED
    assert "P-protected" in record.decision.rules
    assert engine.step() == []


def _drift(netns: str, repo: Repository, clock: Clock, window: Window, tmp_path: Path,
           notes: Notes) -> tuple[ChangeEngine, ActionRecord]:
    """A change applied, then the admin sets another value: superseded, target paused."""
    netns_sysctl(netns, "net.core.somaxconn", "128")
    engine = make_engine(repo, clock, window, tmp_path, notes)
    total = feed(window, clock, 10, overflow_rate=20, psi=1.0)
    engine.propose(None, somaxconn(netns, "512"), SPEC)
    engine.step()
    netns_sysctl(netns, "net.core.somaxconn", "2000")  # the admin
    feed(window, clock, 2, overflow_rate=0, psi=1.0, start_total=total)
    [superseded] = engine.step()
    return engine, superseded


def test_admin_drift_supersedes_leaves_the_admin_value_and_pauses(
        netns: str, repo: Repository, clock: Clock, window: Window, tmp_path: Path) -> None:
    notes = Notes()
    engine, record = _drift(netns, repo, clock, window, tmp_path, notes)
    assert record.state == S.SUPERSEDED
    assert netns_sysctl(netns, "net.core.somaxconn") == "2000"
    assert record.action.target in repo.paused_targets()
    assert "escalation" in notes.names()
    clock.advance(301)  # past the policy's per-target cooldown
    again = engine.propose(None, somaxconn(netns, "4096"), SPEC)
    assert again.state == S.AWAITING_APPROVAL and "D-paused" in again.decision.rules


def test_a_resumed_target_is_changed_automatically_again(
        netns: str, repo: Repository, clock: Clock, window: Window, tmp_path: Path) -> None:
    engine, record = _drift(netns, repo, clock, window, tmp_path, Notes())
    repo.resume_target(record.action.target, "alice")  # the CLI, the API and the page do this
    assert repo.paused_targets() == set()
    clock.advance(301)  # past the policy's per-target cooldown
    again = engine.propose(None, somaxconn(netns, "4096"), SPEC)
    assert again.state == S.APPROVED and "D-paused" not in again.decision.rules
    [applied] = engine.step()
    assert applied.state == S.VERIFYING and netns_sysctl(netns, "net.core.somaxconn") == "4096"


def test_same_target_is_not_proposed_twice_while_open(
        netns: str, repo: Repository, clock: Clock, window: Window, tmp_path: Path) -> None:
    engine = make_engine(repo, clock, window, tmp_path)
    first = engine.propose(None, somaxconn(netns, "512"), SPEC)
    second = engine.propose(None, somaxconn(netns, "1024"), SPEC)
    assert first.id == second.id and len(repo.list_actions()) == 1


@pytest.mark.parametrize("mode", ["advise"])
def test_advise_mode_waits_for_a_human_and_applies_after_approval(
        netns: str, repo: Repository, clock: Clock, window: Window, tmp_path: Path,
        mode: str) -> None:
    netns_sysctl(netns, "net.core.somaxconn", "128")
    notes = Notes()
    engine = make_engine(repo, clock, window, tmp_path, notes, mode=mode)
    feed(window, clock, 10, overflow_rate=20, psi=1.0)
    record = engine.propose(None, somaxconn(netns, "512"), SPEC)
    assert record.state == S.AWAITING_APPROVAL and notes.names() == ["approval_needed"]
    assert engine.step() == [] and netns_sysctl(netns, "net.core.somaxconn") == "128"
    assert record.id is not None
    repo.add_user("alice", "h", "approver")
    repo.add_approval(record.id, "alice", True)
    approved, applied = engine.step()  # the engine decides on the vote, then applies
    assert approved.state == S.APPROVED
    assert applied.state == S.VERIFYING and "A-approved" in applied.decision.rules
    assert netns_sysctl(netns, "net.core.somaxconn") == "512"


def test_approved_without_the_votes_is_denied_at_apply_time(
        netns: str, repo: Repository, clock: Clock, window: Window, tmp_path: Path) -> None:
    """A stored 'approved' is never trusted: the re-check needs the recorded approvals."""
    netns_sysctl(netns, "net.core.somaxconn", "128")
    engine = make_engine(repo, clock, window, tmp_path, mode="advise")
    record = engine.propose(None, somaxconn(netns, "512"), SPEC)
    assert record.id is not None
    repo.transition(record.id, S.APPROVED, expect=[S.AWAITING_APPROVAL], actor="mallory")
    [denied] = engine.step()
    assert denied.state == S.DENIED and "re-check at apply time" in str(
        repo.list_audit(subject=f"action:{record.id}")[0].detail)
    assert netns_sysctl(netns, "net.core.somaxconn") == "128"


def test_unanswered_approval_expires(
        netns: str, repo: Repository, clock: Clock, window: Window, tmp_path: Path) -> None:
    notes = Notes()
    engine = make_engine(repo, clock, window, tmp_path, notes, mode="advise",
                         approval_ttl_seconds=60)
    record = engine.propose(None, somaxconn(netns, "512"), SPEC)
    clock.advance(61)
    [expired] = engine.step()
    assert expired.id == record.id and expired.state == S.EXPIRED
    assert notes.names()[-1] == "approval_expired"


def test_without_root_nothing_is_automatic(
        netns: str, repo: Repository, clock: Clock, window: Window, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    engine = make_engine(repo, clock, window, tmp_path, root=False)
    assert "mode capped at advise" in caplog.text
    record = engine.propose(None, somaxconn(netns, "512"), SPEC)
    assert record.state == S.AWAITING_APPROVAL and "M-no-root" in record.decision.rules


def test_a_notify_action_is_sent_and_closed(
        repo: Repository, clock: Clock, window: Window, tmp_path: Path) -> None:
    from guardrails.actions import Notify

    notes = Notes()
    engine = make_engine(repo, clock, window, tmp_path, notes)
    record = engine.propose(None, Proposal(action=Notify(message="Xid 13 on gpu 0"),
                                           provenance="playbook", in_playbook=True), None)
    assert record.state == S.APPROVED, record.decision
    sent, closed = engine.step()  # sent, and closed in the same cycle
    assert sent.state == S.VERIFYING and sent.applied == "sent"
    assert closed.state == S.VERIFIED
    assert ("action_applied", record.id, "Xid 13 on gpu 0") in notes.events
