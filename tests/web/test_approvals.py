"""Approvals: the web records votes; the root agent's engine decides by distinct users."""

from __future__ import annotations

from fastapi.testclient import TestClient

from healer.models import ActionState
from healer.store.repository import Repository
from tests.web.helpers import (
    Clock,
    add_user,
    bearer,
    decide_votes,
    login,
    make_incident,
    make_proposal,
)

S = ActionState


def _approve(client: TestClient, action_id: int, headers: dict[str, str]):  # type: ignore[no-untyped-def]
    return client.post(f"/api/v1/proposals/{action_id}/approve", headers=headers,
                       json={"comment": "looks right"})


def _state(repo: Repository, action_id: int) -> ActionState:
    record = repo.get_action(action_id)
    assert record is not None
    return record.state


def test_an_api_vote_is_recorded_and_the_engine_approves_on_its_cycle(
        client: TestClient, repo: Repository, clock: Clock) -> None:
    record = make_proposal(repo, clock())
    assert record.id is not None
    resp = _approve(client, record.id, bearer(repo, "ann"))
    assert resp.status_code == 200
    body = resp.json()
    assert body["state"] == "awaiting_approval"  # the web never moves the journal
    assert body["approval"]["approved_by"] == ["ann"]
    assert _state(repo, record.id) == S.AWAITING_APPROVAL
    [moved] = decide_votes(repo)
    assert moved.state == S.APPROVED
    audit = repo.list_audit(subject=f"action:{record.id}")
    assert any(a.actor == "healer" and a.detail.get("to") == "approved" for a in audit)


def test_quorum_of_two_needs_two_distinct_users(client: TestClient, repo: Repository,
                                                clock: Clock) -> None:
    record = make_proposal(repo, clock(), approval="quorum:2")
    assert record.id is not None
    ann = bearer(repo, "ann")
    _approve(client, record.id, ann)
    _approve(client, record.id, ann)
    assert decide_votes(repo) == []
    second = _approve(client, record.id, bearer(repo, "bob")).json()
    assert second["approval"]["approved_by"] == ["ann", "bob"]
    assert [r.state for r in decide_votes(repo)] == [S.APPROVED]


def test_one_person_with_a_session_and_a_token_is_one_vote(
        client: TestClient, repo: Repository, clock: Clock) -> None:
    """Alice's web vote plus her bot token (any name) do not make a quorum of two."""
    add_user(repo, "alice", "approver")
    record = make_proposal(repo, clock(), approval="quorum:2")
    assert record.id is not None
    csrf = login(client, "alice")
    assert client.post(f"/approvals/{record.id}/approve", data={"csrf_token": csrf},
                       follow_redirects=False).status_code == 303
    client.cookies.clear()
    bot = bearer(repo, "alice")  # a token named "alice-token", owned by alice
    resp = _approve(client, record.id, bot)
    assert resp.status_code == 200
    assert resp.json()["approval"]["approved_by"] == ["alice"]
    assert len(repo.list_approvals(record.id)) == 1
    assert decide_votes(repo) == [] and _state(repo, record.id) == S.AWAITING_APPROVAL


def test_one_rejection_rejects_the_request(client: TestClient, repo: Repository,
                                           clock: Clock) -> None:
    record = make_proposal(repo, clock(), approval="quorum:2")
    assert record.id is not None
    _approve(client, record.id, bearer(repo, "ann"))
    resp = client.post(f"/api/v1/proposals/{record.id}/reject", headers=bearer(repo, "bob"),
                       json={"comment": "not during the sale"})
    assert resp.json()["approval"]["rejected_by"] == ["bob"]
    [moved] = decide_votes(repo)
    assert moved.state == S.REJECTED
    audit = repo.list_audit(subject=f"action:{record.id}")
    assert any(a.actor == "bob" and a.event == "approval.vote" for a in audit)
    assert any("rejected by bob" in str(a.detail.get("comment")) for a in audit)


def test_removed_or_demoted_voter_no_longer_counts(client: TestClient, repo: Repository,
                                                   clock: Clock) -> None:
    record = make_proposal(repo, clock(), approval="quorum:2")
    assert record.id is not None
    _approve(client, record.id, bearer(repo, "ann"))
    _approve(client, record.id, bearer(repo, "bob"))
    repo.remove_user("ann")
    assert decide_votes(repo) == []
    _approve(client, record.id, bearer(repo, "cid"))
    repo.set_role("cid", "viewer")
    assert decide_votes(repo) == []
    body = client.get("/api/v1/proposals", headers=bearer(repo, "dee", "viewer")).json()
    assert body[0]["approval"]["approved_by"] == ["bob"]
    assert {v["user"]: v["counts"] for v in body[0]["approval"]["votes"]} == {
        "ann": False, "bob": True, "cid": False}


def test_vote_after_the_ttl_is_refused_and_changes_nothing(client: TestClient,
                                                           repo: Repository,
                                                           clock: Clock) -> None:
    record = make_proposal(repo, clock())
    assert record.id is not None
    clock.advance(601)  # settings.approval_ttl_seconds = 600
    resp = _approve(client, record.id, bearer(repo, "ann"))
    assert resp.status_code == 409
    assert "expired" in resp.json()["detail"]
    assert repo.list_approvals(record.id) == []


def test_vote_on_a_decided_request_is_409(client: TestClient, repo: Repository,
                                          clock: Clock) -> None:
    record = make_proposal(repo, clock())
    assert record.id is not None
    headers = bearer(repo, "ann")
    _approve(client, record.id, headers)
    decide_votes(repo)
    assert _approve(client, record.id, headers).status_code == 409


def test_vote_on_an_unknown_action_is_404(client: TestClient, repo: Repository) -> None:
    assert _approve(client, 999, bearer(repo, "ann")).status_code == 404


def test_proposals_list_shows_quorum_and_expiry(client: TestClient, repo: Repository,
                                                clock: Clock) -> None:
    make_proposal(repo, clock(), approval="quorum:3")
    rows = client.get("/api/v1/proposals?status=awaiting_approval",
                      headers=bearer(repo, "v", "viewer")).json()
    assert rows[0]["approval"]["needed"] == 3
    assert rows[0]["approval"]["expires_at"].endswith("Z")


def test_inbox_shows_diff_reasons_countdown_and_votes_by_form(client: TestClient,
                                                              repo: Repository,
                                                              clock: Clock) -> None:
    add_user(repo, "alice", "approver")
    incident = make_incident(repo, clock())
    record = make_proposal(repo, clock(), incident_id=incident.id)
    assert record.id is not None
    csrf = login(client, "alice")
    page = client.get("/approvals").text
    assert "- sysctl_write net.core.somaxconn = 128" in page  # current value from evidence
    assert "+ sysctl_write net.core.somaxconn = 4096" in page
    assert "above the auto band" in page and 'class="countdown"' in page
    resp = client.post(f"/approvals/{record.id}/approve",
                       data={"csrf_token": csrf, "comment": "go"})
    assert "decides on its next cycle" in resp.text
    assert repo.list_approvals(record.id)[0].comment == "go"
    assert [r.state for r in decide_votes(repo)] == [S.APPROVED]
