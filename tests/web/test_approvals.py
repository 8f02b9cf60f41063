"""Approvals: quorum of distinct people, one rejection ends it, the TTL closes the vote."""

from __future__ import annotations

from fastapi.testclient import TestClient

from healer.cli.users import hash_token, new_token
from healer.models import ActionState
from healer.store.repository import Repository
from tests.web.helpers import Clock, add_user, login, make_incident, make_proposal


def _bearer(repo: Repository, name: str, role: str = "approver") -> dict[str, str]:
    token = new_token()
    repo.add_token(name, hash_token(token), role)
    return {"Authorization": f"Bearer {token}"}


def _approve(client: TestClient, action_id: int, headers: dict[str, str]):  # type: ignore[no-untyped-def]
    return client.post(f"/api/v1/proposals/{action_id}/approve", headers=headers,
                       json={"comment": "looks right"})


def test_one_approval_approves_a_plain_request(client: TestClient, repo: Repository,
                                               clock: Clock) -> None:
    record = make_proposal(repo, clock())
    resp = _approve(client, record.id, _bearer(repo, "ann"))  # type: ignore[arg-type]
    assert resp.status_code == 200
    assert resp.json()["approval"]["approved_by"] == ["ann"]
    assert repo.get_action(record.id).state == ActionState.APPROVED  # type: ignore[union-attr, arg-type]


def test_quorum_of_two_needs_two_distinct_approvers(client: TestClient, repo: Repository,
                                                    clock: Clock) -> None:
    record = make_proposal(repo, clock(), approval="quorum:2")
    ann = _bearer(repo, "ann")
    assert _approve(client, record.id, ann).json()["state"] == "awaiting_approval"  # type: ignore[arg-type]
    assert _approve(client, record.id, ann).json()["state"] == "awaiting_approval"  # type: ignore[arg-type]
    second = _approve(client, record.id, _bearer(repo, "bob")).json()  # type: ignore[arg-type]
    assert second["state"] == "approved"
    assert second["approval"]["approved_by"] == ["ann", "bob"]


def test_one_rejection_rejects_the_request(client: TestClient, repo: Repository,
                                           clock: Clock) -> None:
    record = make_proposal(repo, clock(), approval="quorum:2")
    _approve(client, record.id, _bearer(repo, "ann"))  # type: ignore[arg-type]
    resp = client.post(f"/api/v1/proposals/{record.id}/reject", headers=_bearer(repo, "bob"),
                       json={"comment": "not during the sale"})
    assert resp.json()["state"] == "rejected"
    audit = repo.list_audit(subject=f"action:{record.id}")
    assert any(a.actor == "bob" and a.detail.get("to") == "rejected" for a in audit)


def test_vote_after_the_ttl_is_refused_and_changes_nothing(client: TestClient,
                                                           repo: Repository,
                                                           clock: Clock) -> None:
    record = make_proposal(repo, clock())
    clock.advance(601)  # settings.approval_ttl_seconds = 600
    resp = _approve(client, record.id, _bearer(repo, "ann"))  # type: ignore[arg-type]
    assert resp.status_code == 409
    assert "expired" in resp.json()["detail"]
    assert repo.list_approvals(record.id) == []  # type: ignore[arg-type]


def test_vote_on_a_decided_request_is_409(client: TestClient, repo: Repository,
                                          clock: Clock) -> None:
    record = make_proposal(repo, clock())
    headers = _bearer(repo, "ann")
    _approve(client, record.id, headers)  # type: ignore[arg-type]
    assert _approve(client, record.id, headers).status_code == 409  # type: ignore[arg-type]


def test_vote_on_an_unknown_action_is_404(client: TestClient, repo: Repository) -> None:
    assert _approve(client, 999, _bearer(repo, "ann")).status_code == 404


def test_proposals_list_shows_quorum_and_expiry(client: TestClient, repo: Repository,
                                                clock: Clock) -> None:
    make_proposal(repo, clock(), approval="quorum:3")
    rows = client.get("/api/v1/proposals?status=awaiting_approval",
                      headers=_bearer(repo, "v", "viewer")).json()
    assert rows[0]["approval"]["needed"] == 3
    assert rows[0]["approval"]["expires_at"].endswith("Z")


def test_inbox_shows_diff_reasons_countdown_and_votes_by_form(client: TestClient,
                                                              repo: Repository,
                                                              clock: Clock) -> None:
    add_user(repo, "alice", "approver")
    incident = make_incident(repo, clock())
    record = make_proposal(repo, clock(), incident_id=incident.id)
    csrf = login(client, "alice")
    page = client.get("/approvals").text
    assert "- sysctl_write net.core.somaxconn = 128" in page  # current value from evidence
    assert "+ sysctl_write net.core.somaxconn = 4096" in page
    assert "above the auto band" in page and 'class="countdown"' in page
    resp = client.post(f"/approvals/{record.id}/approve",
                       data={"csrf_token": csrf, "comment": "go"}, follow_redirects=False)
    assert resp.status_code == 303
    assert repo.get_action(record.id).state == ActionState.APPROVED  # type: ignore[union-attr, arg-type]
    assert repo.list_approvals(record.id)[0].comment == "go"  # type: ignore[arg-type]
