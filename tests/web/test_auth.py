"""Auth rules: who may see and change what, and how sessions and CSRF are bound."""

from __future__ import annotations

import stat

from fastapi.testclient import TestClient

from healer.cli.users import hash_token, new_token
from healer.models import ActionState
from healer.settings import Settings
from healer.store.repository import Repository
from healer.telemetry import Telemetry
from tests.web.helpers import PASSWORD, Clock, add_user, csrf_of, login, make_proposal
from web import create_app
from web.routers.session import safe_next
from web.security import KEY_FILE


def test_anonymous_api_request_is_401_with_bearer_challenge(client: TestClient) -> None:
    resp = client.get("/api/v1/incidents")
    assert resp.status_code == 401
    assert resp.headers["www-authenticate"] == "Bearer"


def test_anonymous_page_redirects_to_login(client: TestClient) -> None:
    resp = client.get("/approvals", follow_redirects=False)
    assert resp.status_code == 303
    assert resp.headers["location"] == "/login?next=/approvals"


def test_healthz_and_login_page_are_anonymous(client: TestClient) -> None:
    assert client.get("/healthz").status_code == 200
    assert client.get("/login").status_code == 200


def test_healthz_reports_degraded_when_samples_go_stale(client: TestClient, clock: Clock,
                                                        window) -> None:  # type: ignore[no-untyped-def]
    from datetime import UTC, datetime

    clock.now = datetime.fromtimestamp(window.latest().ts + 2, UTC)
    assert client.get("/healthz").json()["status"] == "ok"
    clock.advance(60)
    assert client.get("/healthz").json()["status"] == "degraded"


def test_metrics_are_public_by_default(client: TestClient) -> None:
    resp = client.get("/metrics")
    assert resp.status_code == 200
    assert "healer_cycle_seconds" in resp.text


def test_metrics_need_login_when_not_public(settings: Settings, repo: Repository,
                                            clock: Clock) -> None:
    private = settings.model_copy(update={"metrics_public": False})
    app = create_app(private, repo=repo, telemetry=Telemetry(), clock=clock)
    assert TestClient(app).get("/metrics").status_code == 401


def test_openapi_needs_login_and_lists_the_approve_route(client: TestClient,
                                                         repo: Repository) -> None:
    assert client.get("/openapi.json").status_code == 401
    add_user(repo, "vera", "viewer")
    login(client, "vera")
    paths = client.get("/openapi.json").json()["paths"]
    assert "/api/v1/proposals/{action_id}/approve" in paths


def test_login_sets_httponly_samesite_strict_session_cookie(client: TestClient,
                                                            repo: Repository) -> None:
    add_user(repo, "alice", "approver")
    token = csrf_of(client.get("/login").text)
    resp = client.post("/login", data={"username": "alice", "password": PASSWORD,
                                       "csrf_token": token}, follow_redirects=False)
    cookie = resp.headers["set-cookie"].lower()
    assert resp.status_code == 303
    assert "healer_session=" in cookie and "httponly" in cookie and "samesite=strict" in cookie


def test_wrong_password_is_401_without_a_session(client: TestClient, repo: Repository) -> None:
    add_user(repo, "alice", "approver")
    token = csrf_of(client.get("/login").text)
    resp = client.post("/login", data={"username": "alice", "password": "nope-nope",
                                       "csrf_token": token})
    assert resp.status_code == 401
    assert "healer_session" not in client.cookies


def test_login_form_without_csrf_token_is_403(client: TestClient, repo: Repository) -> None:
    add_user(repo, "alice", "approver")
    client.get("/login")
    resp = client.post("/login", data={"username": "alice", "password": PASSWORD})
    assert resp.status_code == 403


def test_sixth_login_attempt_in_a_minute_is_refused_even_with_the_right_password(
        client: TestClient, repo: Repository) -> None:
    add_user(repo, "alice", "approver")
    token = csrf_of(client.get("/login").text)
    for _ in range(5):
        bad = client.post("/login", data={"username": "alice", "password": "wrong-pass",
                                          "csrf_token": token})
        assert bad.status_code == 401
    resp = client.post("/login", data={"username": "alice", "password": PASSWORD,
                                       "csrf_token": token}, follow_redirects=False)
    assert resp.status_code == 429


def test_tampered_session_cookie_counts_as_anonymous(client: TestClient,
                                                     repo: Repository) -> None:
    add_user(repo, "alice", "viewer")
    login(client, "alice")
    value = client.cookies["healer_session"]
    body, sig = value.split(".")
    client.cookies.clear()
    client.cookies.set("healer_session", body + "x." + sig)
    assert client.get("/api/v1/incidents").status_code == 401


def test_bearer_token_authenticates_the_api(client: TestClient, repo: Repository) -> None:
    token = new_token()
    repo.add_token("ci", hash_token(token), "viewer")
    ok = client.get("/api/v1/actions", headers={"Authorization": f"Bearer {token}"})
    bad = client.get("/api/v1/actions", headers={"Authorization": f"Bearer {token}x"})
    malformed = client.get("/api/v1/actions", headers={"Authorization": "Basic abc"})
    assert (ok.status_code, bad.status_code, malformed.status_code) == (200, 401, 401)


def test_viewer_token_cannot_approve_and_nothing_changes(client: TestClient, repo: Repository,
                                                         clock: Clock) -> None:
    record = make_proposal(repo, clock())
    token = new_token()
    repo.add_token("viewer-bot", hash_token(token), "viewer")
    resp = client.post(f"/api/v1/proposals/{record.id}/approve",
                       headers={"Authorization": f"Bearer {token}"}, json={"comment": "x"})
    assert resp.status_code == 403
    assert repo.get_action(record.id).state == ActionState.AWAITING_APPROVAL  # type: ignore[union-attr]
    assert repo.list_approvals(record.id) == []  # type: ignore[arg-type]


def test_session_mutation_without_csrf_is_403_and_changes_nothing(
        client: TestClient, repo: Repository, clock: Clock) -> None:
    add_user(repo, "alice", "approver")
    record = make_proposal(repo, clock())
    login(client, "alice")
    api = client.post(f"/api/v1/proposals/{record.id}/approve", json={})
    form = client.post(f"/approvals/{record.id}/approve", data={"comment": "hi"})
    assert (api.status_code, form.status_code) == (403, 403)
    assert repo.list_approvals(record.id) == []  # type: ignore[arg-type]


def test_session_mutation_with_csrf_header_is_accepted(client: TestClient, repo: Repository,
                                                       clock: Clock) -> None:
    add_user(repo, "alice", "approver")
    record = make_proposal(repo, clock())
    csrf = login(client, "alice")
    resp = client.post(f"/api/v1/proposals/{record.id}/approve", json={"comment": "ok"},
                       headers={"X-CSRF-Token": csrf})
    assert resp.status_code == 200
    assert resp.json()["state"] == "approved"


def test_csrf_token_of_another_session_is_rejected(app, repo: Repository,  # type: ignore[no-untyped-def]
                                                   clock: Clock) -> None:
    add_user(repo, "alice", "approver")
    add_user(repo, "bob", "approver")
    record = make_proposal(repo, clock())
    with TestClient(app) as alice, TestClient(app) as bob:
        login(alice, "alice")
        bobs_token = login(bob, "bob")
        resp = alice.post(f"/api/v1/proposals/{record.id}/approve", json={},
                          headers={"X-CSRF-Token": bobs_token})
    assert resp.status_code == 403


def test_viewer_session_cannot_vote_from_the_inbox(client: TestClient, repo: Repository,
                                                   clock: Clock) -> None:
    add_user(repo, "vera", "viewer")
    record = make_proposal(repo, clock())
    csrf = login(client, "vera")
    resp = client.post(f"/approvals/{record.id}/approve", data={"csrf_token": csrf})
    assert resp.status_code == 403
    assert "can view but not vote" in client.get("/approvals").text


def test_logout_ends_the_session(client: TestClient, repo: Repository) -> None:
    add_user(repo, "alice", "viewer")
    csrf = login(client, "alice")
    assert client.post("/logout", data={}).status_code == 403  # CSRF guards logout too
    client.post("/logout", data={"csrf_token": csrf})
    assert client.get("/api/v1/incidents").status_code == 401


def test_signing_key_is_created_0600_and_reused(settings: Settings, repo: Repository) -> None:
    create_app(settings, repo=repo, telemetry=Telemetry())
    path = settings.state_dir / KEY_FILE
    first = path.read_text()
    create_app(settings, repo=repo, telemetry=Telemetry())
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text() == first


def test_login_redirect_target_must_be_a_local_path() -> None:
    assert safe_next("/approvals") == "/approvals"
    assert safe_next("//evil.example/") == "/"
    assert safe_next("https://evil.example/") == "/"
    assert safe_next("/\\evil.example") == "/"
