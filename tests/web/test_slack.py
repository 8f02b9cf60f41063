"""``POST /slack/interactions``: only signed, fresh requests from mapped approvers count."""

from __future__ import annotations

from fastapi.testclient import TestClient

from healer.models import ActionState
from healer.store.repository import Repository
from tests.web.conftest import SLACK_SECRET
from tests.web.helpers import Clock, add_user, decide_votes, make_proposal
from tests.web.slack_helpers import interaction, signed_headers


def _post(client: TestClient, body: bytes, headers: dict[str, str]):  # type: ignore[no-untyped-def]
    return client.post("/slack/interactions", content=body, headers=headers)


def test_signed_approve_from_a_mapped_approver_approves(client: TestClient, repo: Repository,
                                                       clock: Clock) -> None:
    add_user(repo, "alice", "approver", slack="U123")
    record = make_proposal(repo, clock())
    body = interaction(record.id, "U123")  # type: ignore[arg-type]
    resp = _post(client, body, signed_headers(SLACK_SECRET, body, clock().timestamp()))
    assert resp.status_code == 200
    assert "decides on its next cycle" in resp.json()["text"]
    assert repo.list_approvals(record.id)[0].user == "alice"  # type: ignore[arg-type]
    assert [r.state for r in decide_votes(repo)] == [ActionState.APPROVED]


def test_signed_reject_rejects(client: TestClient, repo: Repository, clock: Clock) -> None:
    add_user(repo, "alice", "approver", slack="U123")
    record = make_proposal(repo, clock())
    body = interaction(record.id, "U123", "reject")  # type: ignore[arg-type]
    _post(client, body, signed_headers(SLACK_SECRET, body, clock().timestamp()))
    assert [r.state for r in decide_votes(repo)] == [ActionState.REJECTED]


def test_bad_signature_is_401_and_changes_nothing(client: TestClient, repo: Repository,
                                                  clock: Clock) -> None:
    add_user(repo, "alice", "approver", slack="U123")
    record = make_proposal(repo, clock())
    body = interaction(record.id, "U123")  # type: ignore[arg-type]
    headers = signed_headers("not-the-secret", body, clock().timestamp())
    assert _post(client, body, headers).status_code == 401
    unsigned = {"Content-Type": "application/x-www-form-urlencoded"}
    assert _post(client, body, unsigned).status_code == 401
    assert repo.list_approvals(record.id) == []  # type: ignore[arg-type]


def test_body_changed_after_signing_is_401(client: TestClient, repo: Repository,
                                           clock: Clock) -> None:
    add_user(repo, "alice", "approver", slack="U123")
    record = make_proposal(repo, clock())
    headers = signed_headers(SLACK_SECRET, interaction(record.id, "U123", "reject"),  # type: ignore[arg-type]
                             clock().timestamp())
    assert _post(client, interaction(record.id, "U123"), headers).status_code == 401  # type: ignore[arg-type]


def test_timestamp_older_than_five_minutes_is_401(client: TestClient, repo: Repository,
                                                  clock: Clock) -> None:
    add_user(repo, "alice", "approver", slack="U123")
    record = make_proposal(repo, clock())
    body = interaction(record.id, "U123")  # type: ignore[arg-type]
    resp = _post(client, body, signed_headers(SLACK_SECRET, body, clock().timestamp() - 301))
    assert resp.status_code == 401
    assert repo.get_action(record.id).state == ActionState.AWAITING_APPROVAL  # type: ignore[union-attr, arg-type]


def test_unmapped_or_viewer_slack_user_is_403(client: TestClient, repo: Repository,
                                              clock: Clock) -> None:
    add_user(repo, "vera", "viewer", slack="UVIEW")
    record = make_proposal(repo, clock())
    for user in ("UNOBODY", "UVIEW"):
        body = interaction(record.id, user)  # type: ignore[arg-type]
        assert _post(client, body, signed_headers(SLACK_SECRET, body,
                                                  clock().timestamp())).status_code == 403
    assert repo.list_approvals(record.id) == []  # type: ignore[arg-type]
