"""Users, tokens and sessions over their whole life: expiry, revocation, removal."""

from __future__ import annotations

from datetime import timedelta

import pytest

from healer.models import ActionState
from healer.store.credentials import hash_token, lesser_role, role_at_least
from healer.store.errors import NotFound
from healer.store.repository import Repository

from .conftest import FakeClock, make_record


def test_service_roles_sit_outside_the_people_scale() -> None:
    assert role_at_least("admin", "approver") and not role_at_least("viewer", "approver")
    for service in ("ingest", "host"):
        assert not any(role_at_least(service, r) for r in ("viewer", "approver", "admin"))
    assert lesser_role("admin", "viewer") == "viewer" == lesser_role("viewer", "admin")


def test_tokens_expire_and_revoke(repo: Repository, clock: FakeClock) -> None:
    alice = repo.add_user("alice", "h", "admin")
    row = repo.add_token("bot", "sha:1", "viewer", user_id=alice.id,
                         expires_at=clock.now + timedelta(hours=1))
    found = repo.find_token("sha:1")
    assert found is not None and found.owner == "alice" and found.usable(clock.now)
    assert not found.usable(clock.now + timedelta(hours=1))
    revoked = repo.revoke_token(row.id)
    assert revoked.revoked_at == clock.now and not revoked.usable(clock.now)
    assert repo.revoke_token(row.id).revoked_at == revoked.revoked_at  # idempotent
    assert [e.event for e in repo.list_audit(subject="token:bot")][:1] == ["token.revoked"]
    with pytest.raises(NotFound):
        repo.revoke_token(999)


def test_removing_a_user_removes_tokens_and_sessions_and_voids_votes(
        repo: Repository, clock: FakeClock) -> None:
    rec = repo.add_action(make_record(state=ActionState.AWAITING_APPROVAL))
    assert rec.id is not None
    alice = repo.add_user("alice", "h", "approver")
    repo.add_token("bot", "sha:1", "approver", user_id=alice.id)
    repo.add_session(hash_token("sid"), alice.id, clock.now + timedelta(hours=1))
    repo.add_approval(rec.id, "alice", True)
    repo.remove_user("alice")
    assert repo.find_token("sha:1") is None
    assert repo.get_session(hash_token("sid")) is None
    [vote] = repo.list_approvals(rec.id)
    assert (vote.user, vote.user_id) == ("alice", None)
    again = repo.add_user("alice", "h2", "approver")  # a new person with the old name
    assert repo.list_approvals(rec.id)[0].user_id is None != again.id


def test_sessions_end_on_password_change_and_expire(repo: Repository,
                                                    clock: FakeClock) -> None:
    alice = repo.add_user("alice", "h", "viewer")
    for sid in ("one", "two"):
        repo.add_session(hash_token(sid), alice.id, clock.now + timedelta(hours=12))
    repo.add_session(hash_token("short"), alice.id, clock.now + timedelta(seconds=5))
    clock.advance(10)
    assert repo.get_session(hash_token("short")) is None
    assert repo.prune(clock.now, 14, 60) >= 1  # the expired one
    assert repo.set_password("alice", "h2") == 2
    assert repo.get_session(hash_token("one")) is None
    assert repo.get_user("alice").password_hash == "h2"  # type: ignore[union-attr]
