"""Auth rules: who may see and change what, and how sessions and CSRF are bound."""

from __future__ import annotations

import stat
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient

from healer.models import ActionState
from healer.settings import Settings
from healer.store.credentials import hash_password, hash_token, new_token
from healer.store.repository import Repository
from healer.telemetry import Telemetry
from tests.web.helpers import (
    PASSWORD,
    SILENCE_CHECK,
    Clock,
    FakeWindow,
    add_user,
    bearer,
    csrf_of,
    login,
    make_proposal,
    service_bearer,
)
from web import create_app
from web.app import cookies_secure
from web.security import KEY_FILE


def test_anonymous_api_request_is_401_with_bearer_challenge(client: TestClient) -> None:
    resp = client.get("/api/v1/incidents")
    assert resp.status_code == 401
    assert resp.headers["www-authenticate"] == "Bearer"


def test_anonymous_page_redirects_to_login(client: TestClient) -> None:
    resp = client.get("/approvals", follow_redirects=False)
    assert resp.status_code == 303
    assert resp.headers["location"] == "/login?next=/approvals"


def _just_after_last_sample(clock: Clock, window: FakeWindow, seconds: float) -> None:
    last = window.latest()
    assert last is not None
    clock.now = datetime.fromtimestamp(last.ts + seconds, UTC)


def test_healthz_and_login_page_are_anonymous(client: TestClient, clock: Clock,
                                              window: FakeWindow) -> None:
    _just_after_last_sample(clock, window, 0.5)
    assert client.get("/healthz").status_code == 200
    assert client.get("/login").status_code == 200


def test_healthz_reports_the_loop_lag_and_is_503_past_five_intervals(
        client: TestClient, clock: Clock, window: FakeWindow) -> None:
    """A stalled loop (a stage stuck for seconds) must not look healthy (interval 1 s)."""
    _just_after_last_sample(clock, window, 1.5)
    ok = client.get("/healthz")
    assert (ok.status_code, ok.json()["status"]) == (200, "ok")
    assert ok.json()["loop_lag_seconds"] == pytest.approx(0.5)
    clock.advance(2.0)
    assert client.get("/healthz").json()["status"] == "degraded"
    clock.advance(3.0)  # 6.5 s since the last sample: 5.5 s late, more than 5 intervals
    stale = client.get("/healthz")
    assert stale.status_code == 503
    assert stale.json()["status"] == "error" and stale.json()["loop_lag_seconds"] > 5


def test_healthz_counts_the_lag_from_start_when_no_sample_ever_came(
        settings: Settings, repo: Repository, clock: Clock) -> None:
    app = create_app(settings, repo=repo, telemetry=Telemetry(),
                     silence_check=SILENCE_CHECK, live=FakeWindowLive(),
                     clock=clock)
    with TestClient(app) as client:
        assert client.get("/healthz").status_code == 200
        clock.advance(10)
        assert client.get("/healthz").status_code == 503


class FakeWindowLive:
    """A daemon whose first cycle never finished."""

    separate_agent = False

    def latest(self) -> None:
        return None

    def series(self, name: str, seconds: float) -> list[tuple[float, float]]:
        return []

    def llm_status(self) -> None:
        return None

    def agent(self) -> None:
        return None


def test_metrics_are_public_by_default(client: TestClient) -> None:
    resp = client.get("/metrics")
    assert resp.status_code == 200
    assert "healer_cycle_seconds" in resp.text


def test_metrics_need_login_when_not_public(settings: Settings, repo: Repository,
                                            clock: Clock) -> None:
    private = settings.model_copy(update={"metrics_public": False})
    app = create_app(private, repo=repo, telemetry=Telemetry(),
                     silence_check=SILENCE_CHECK, clock=clock)
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


def test_eleventh_login_from_one_address_is_refused_whatever_the_user_name(
        client: TestClient, repo: Repository) -> None:
    """Guesses spread over random user names are throttled per address (10 a minute)."""
    add_user(repo, "alice", "approver")
    token = csrf_of(client.get("/login").text)
    for i in range(10):
        bad = client.post("/login", data={"username": f"random-{i}", "password": "wrong-pass",
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
    ok_headers = bearer(repo, "ci", "viewer")
    token = ok_headers["Authorization"].removeprefix("Bearer ")
    ok = client.get("/api/v1/actions", headers=ok_headers)
    bad = client.get("/api/v1/actions", headers={"Authorization": f"Bearer {token}x"})
    malformed = client.get("/api/v1/actions", headers={"Authorization": "Basic abc"})
    assert (ok.status_code, bad.status_code, malformed.status_code) == (200, 401, 401)


def test_viewer_token_cannot_approve_and_nothing_changes(client: TestClient, repo: Repository,
                                                         clock: Clock) -> None:
    record = make_proposal(repo, clock())
    resp = client.post(f"/api/v1/proposals/{record.id}/approve",
                       headers=bearer(repo, "viewer-bot", "viewer"), json={"comment": "x"})
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
    assert resp.json()["approval"]["approved_by"] == ["alice"]


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


def test_logout_ends_the_session_on_the_server(client: TestClient, repo: Repository) -> None:
    """A cookie copied before sign-out is worth nothing after it."""
    add_user(repo, "alice", "viewer")
    csrf = login(client, "alice")
    stolen = client.cookies["healer_session"]
    assert client.post("/logout", data={}).status_code == 403  # CSRF guards logout too
    client.post("/logout", data={"csrf_token": csrf})
    assert client.get("/api/v1/incidents").status_code == 401
    client.cookies.set("healer_session", stolen)
    assert client.get("/api/v1/incidents").status_code == 401


def test_password_change_ends_every_session_of_the_user(client: TestClient,
                                                        repo: Repository) -> None:
    add_user(repo, "alice", "viewer")
    login(client, "alice")
    assert client.get("/api/v1/incidents").status_code == 200
    assert repo.set_password("alice", hash_password("a new passphrase")) == 1
    assert client.get("/api/v1/incidents").status_code == 401


def test_removed_user_loses_sessions_and_tokens(client: TestClient, repo: Repository) -> None:
    add_user(repo, "alice", "approver")
    headers = bearer(repo, "alice")
    login(client, "alice")
    repo.remove_user("alice")
    assert client.get("/api/v1/incidents").status_code == 401
    client.cookies.clear()
    assert client.get("/api/v1/incidents", headers=headers).status_code == 401


def test_a_persons_token_has_at_most_the_users_current_role(
        client: TestClient, repo: Repository, clock: Clock) -> None:
    record = make_proposal(repo, clock())
    headers = bearer(repo, "ann", "approver")
    repo.set_role("ann", "viewer")
    resp = client.post(f"/api/v1/proposals/{record.id}/approve", headers=headers, json={})
    assert resp.status_code == 403
    assert client.get("/api/v1/incidents", headers=headers).status_code == 200


def test_revoked_expired_and_ownerless_tokens_are_401(client: TestClient, repo: Repository,
                                                      clock: Clock) -> None:
    owner = repo.add_user("ann", hash_password(PASSWORD), "admin")
    revoked, expiring, ownerless = new_token(), new_token(), new_token()
    row = repo.add_token("old", hash_token(revoked), "viewer", user_id=owner.id)
    repo.revoke_token(row.id)
    repo.add_token("short", hash_token(expiring), "viewer", user_id=owner.id,
                   expires_at=clock() + timedelta(hours=1))
    repo.add_token("legacy", hash_token(ownerless), "admin")
    get = lambda t: client.get("/api/v1/incidents",  # noqa: E731
                               headers={"Authorization": f"Bearer {t}"}).status_code
    assert (get(revoked), get(expiring), get(ownerless)) == (401, 200, 401)
    clock.advance(3601)
    assert get(expiring) == 401


@pytest.mark.parametrize("role", ["ingest", "host"])
def test_service_tokens_reach_no_person_endpoint(client: TestClient, repo: Repository,
                                                 clock: Clock, role: str) -> None:
    record = make_proposal(repo, clock())
    headers = service_bearer(repo, f"{role}-svc", role)
    for path in ("/api/v1/incidents", "/api/v1/proposals", "/openapi.json", "/api/v1/audit"):
        assert client.get(path, headers=headers).status_code == 403, path
    resp = client.post(f"/api/v1/proposals/{record.id}/approve", headers=headers, json={})
    assert resp.status_code == 403
    assert repo.list_approvals(record.id) == []  # type: ignore[arg-type]


@pytest.mark.parametrize(("host", "public_url", "secure"), [
    ("127.0.0.1", None, False),  # make run: plain HTTP on loopback only
    ("::1", "http://localhost:8765", False),
    ("127.0.0.1", "https://healer.example", True),  # behind a TLS proxy
    ("127.0.0.1", "http://healer.example", True),  # plain HTTP off the host: never in clear
    ("0.0.0.0", None, True),
    ("10.0.0.5", "http://10.0.0.5:8765", True),
])
def test_cookies_are_secure_unless_plain_http_on_loopback_only(
        settings: Settings, host: str, public_url: str | None, secure: bool) -> None:
    assert cookies_secure(settings.model_copy(update={"host": host,
                                                      "public_url": public_url})) is secure


def test_session_cookie_is_secure_when_served_beyond_loopback(
        settings: Settings, repo: Repository) -> None:
    add_user(repo, "alice", "viewer")
    served = settings.model_copy(update={"public_url": "https://healer.example"})
    app = create_app(served, repo=repo, telemetry=Telemetry(), silence_check=SILENCE_CHECK)
    with TestClient(app, base_url="https://healer.example") as client:
        token = csrf_of(client.get("/login").text)
        resp = client.post("/login", data={"username": "alice", "password": PASSWORD,
                                           "csrf_token": token}, follow_redirects=False)
    assert resp.status_code == 303
    assert "secure" in resp.headers["set-cookie"].lower()


def test_signing_key_is_created_0600_and_reused(settings: Settings, repo: Repository) -> None:
    create_app(settings, repo=repo, telemetry=Telemetry(), silence_check=SILENCE_CHECK)
    path = settings.state_dir / KEY_FILE
    first = path.read_text()
    create_app(settings, repo=repo, telemetry=Telemetry(), silence_check=SILENCE_CHECK)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text() == first

