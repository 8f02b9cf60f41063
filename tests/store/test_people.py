"""Approvals (one vote per person), audit, paused targets, users and tokens."""

from __future__ import annotations

import pytest

from healer.models import ActionState
from healer.store.errors import AlreadyExists, NotFound, StaleState
from healer.store.repository import Repository

from .conftest import FakeClock, make_record


def test_each_person_has_one_vote_per_action(repo: Repository, clock: FakeClock) -> None:
    rec = repo.add_action(make_record(state=ActionState.AWAITING_APPROVAL))
    assert rec.id is not None
    for name in ("alice", "bob"):
        repo.add_user(name, "h", "approver")
    repo.add_approval(rec.id, "alice", True, "fine")
    clock.advance(10)
    repo.add_approval(rec.id, "bob", True)
    clock.advance(10)
    votes = repo.add_approval(rec.id, "alice", False, "changed my mind")
    assert [(v.user, v.approve) for v in votes] == [("bob", True), ("alice", False)]
    assert votes[1].comment == "changed my mind" and votes[1].at == clock.now
    assert sum(v.approve for v in repo.list_approvals(rec.id)) == 1  # quorum counts people


def test_votes_are_audited_and_need_an_existing_action(repo: Repository) -> None:
    rec = repo.add_action(make_record(state=ActionState.AWAITING_APPROVAL))
    assert rec.id is not None
    repo.add_user("alice", "h", "approver")
    repo.add_approval(rec.id, "alice", True, "ok", via="cli")
    top = repo.list_audit(limit=1)[0]
    assert (top.actor, top.event, top.subject) == ("alice", "approval.vote", f"action:{rec.id}")
    assert top.detail["via"] == "cli"
    with pytest.raises(NotFound):
        repo.add_approval(999, "alice", True)
    with pytest.raises(NotFound):
        repo.add_approval(rec.id, "nobody", True)


def test_a_vote_is_refused_once_the_action_left_awaiting(repo: Repository) -> None:
    rec = repo.add_action(make_record(state=ActionState.AWAITING_APPROVAL))
    assert rec.id is not None
    repo.add_user("alice", "h", "approver")
    repo.transition(rec.id, ActionState.EXPIRED, expect={ActionState.AWAITING_APPROVAL})
    with pytest.raises(StaleState):
        repo.add_approval(rec.id, "alice", True)
    assert repo.list_approvals(rec.id) == []


def test_audit_lists_newest_first_and_filters_by_subject(repo: Repository) -> None:
    repo.add_audit("admin", "login", "user:alice", {"ip": "127.0.0.1"})
    repo.add_audit("admin", "login", "user:bob")
    assert [a.subject for a in repo.list_audit()] == ["user:bob", "user:alice"]
    only = repo.list_audit(subject="user:alice")
    assert len(only) == 1 and only[0].detail == {"ip": "127.0.0.1"}


def test_paused_targets_until_resumed(repo: Repository) -> None:
    target = "sysctl_write:host:net.core.somaxconn"
    repo.pause_target(target, "admin drift")
    repo.pause_target(target, "admin drift again")  # idempotent
    assert repo.paused_targets() == {target}
    (row,) = repo.list_paused_targets()
    assert (row.target, row.reason) == (target, "admin drift again")
    repo.resume_target(target, "alice")
    assert repo.paused_targets() == set() and repo.list_paused_targets() == []
    last = repo.list_audit(subject=target)[0]
    assert (last.event, last.actor) == ("target.resumed", "alice")


def test_resuming_a_target_that_is_not_paused_is_not_found_and_not_audited(
        repo: Repository) -> None:
    with pytest.raises(NotFound):
        repo.resume_target("sysctl_write:host:net.core.somaxconn", "alice")
    assert repo.list_audit() == []


def test_users_and_tokens_store_hashes_and_reject_duplicates(repo: Repository) -> None:
    user = repo.add_user("alice", "$argon2id$x", "approver", slack_user_id="U123")
    assert repo.get_user("alice") == user
    assert repo.get_user_by_slack("U123") == user
    assert repo.get_user("nobody") is None and repo.get_user_by_slack("U9") is None
    with pytest.raises(AlreadyExists):
        repo.add_user("alice", "h", "viewer")
    repo.add_user("bob", "h2", "viewer")
    assert [u.name for u in repo.list_users()] == ["alice", "bob"]
    tok = repo.add_token("ci", "sha256:abc", "admin")
    assert repo.find_token("sha256:abc") == tok
    assert repo.find_token("sha256:zzz") is None
    with pytest.raises(AlreadyExists):
        repo.add_token("ci2", "sha256:abc", "admin")
