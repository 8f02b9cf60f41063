"""Only the root engine moves awaiting requests: by the recorded votes of current users."""

from __future__ import annotations

from pathlib import Path

from healer.models import ActionState
from healer.store.repository import Repository
from healer.store.votes import record_vote

from .conftest import Clock, Window, netns_sysctl
from .engine_kit import SPEC, feed, make_engine, somaxconn

S = ActionState


def _vote(repo: Repository, clock: Clock, action_id: int, user: str, approve: bool) -> None:
    record_vote(repo, action_id, user, approve, "", now=clock(), ttl_seconds=3600, via="cli")


def test_votes_are_records_until_the_engine_counts_distinct_current_users(
        netns: str, repo: Repository, clock: Clock, window: Window, tmp_path: Path) -> None:
    netns_sysctl(netns, "net.core.somaxconn", "128")
    engine = make_engine(repo, clock, window, tmp_path, mode="advise")
    feed(window, clock, 10, overflow_rate=20, psi=1.0)
    record = engine.propose(None, somaxconn(netns, "512"), SPEC)
    assert record.id is not None and record.state == S.AWAITING_APPROVAL
    for name in ("ann", "bob"):
        repo.add_user(name, "h", "approver")
    _vote(repo, clock, record.id, "ann", True)
    assert repo.get_action(record.id).state == S.AWAITING_APPROVAL  # type: ignore[union-attr]
    repo.set_role("ann", "viewer")  # demoted before the engine counted: no longer counts
    assert engine.decide_votes() == []
    _vote(repo, clock, record.id, "bob", True)
    [approved] = engine.decide_votes()
    assert approved.state == S.APPROVED and "approved by bob" in str(
        repo.list_audit(subject=f"action:{record.id}")[0].detail)


def test_a_voter_removed_between_decision_and_apply_stops_the_change(
        netns: str, repo: Repository, clock: Clock, window: Window, tmp_path: Path) -> None:
    """The apply-time guard re-check counts only voters who are still approvers."""
    netns_sysctl(netns, "net.core.somaxconn", "128")
    engine = make_engine(repo, clock, window, tmp_path, mode="advise")
    feed(window, clock, 10, overflow_rate=20, psi=1.0)
    record = engine.propose(None, somaxconn(netns, "512"), SPEC)
    assert record.id is not None
    repo.add_user("ann", "h", "approver")
    _vote(repo, clock, record.id, "ann", True)
    [approved] = engine.decide_votes()
    assert approved.state == S.APPROVED
    repo.remove_user("ann")
    [denied] = engine.step()
    assert denied.state == S.DENIED
    assert netns_sysctl(netns, "net.core.somaxconn") == "128"


def test_one_counting_rejection_rejects(
        netns: str, repo: Repository, clock: Clock, window: Window, tmp_path: Path) -> None:
    engine = make_engine(repo, clock, window, tmp_path, mode="advise")
    record = engine.propose(None, somaxconn(netns, "512"), SPEC)
    assert record.id is not None
    for name in ("ann", "bob"):
        repo.add_user(name, "h", "approver")
    _vote(repo, clock, record.id, "ann", True)
    _vote(repo, clock, record.id, "bob", False)
    [rejected] = engine.step()
    assert rejected.state == S.REJECTED
