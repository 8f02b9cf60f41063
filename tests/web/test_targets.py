"""Paused targets: ``GET /api/v1/targets/paused``, ``POST /api/v1/targets/resume`` and the
dashboard's Resume button: roles, CSRF, audit, a target that is not paused."""

from __future__ import annotations

from fastapi.testclient import TestClient

from healer.store.repository import Repository
from tests.web.helpers import add_user, bearer, login

TARGET = "cgroup_limit:cgroup:/app.slice/web.service:memory.max"


def test_an_approver_resumes_a_paused_target_and_it_is_audited(client: TestClient,
                                                               repo: Repository) -> None:
    repo.pause_target(TARGET, "live value '1G' is neither applied nor original: stood down")
    viewer, approver = bearer(repo, "vic", "viewer"), bearer(repo, "ann", "approver")
    listed = client.get("/api/v1/targets/paused", headers=viewer).json()
    assert [t["target"] for t in listed] == [TARGET] and "stood down" in listed[0]["reason"]
    assert client.post("/api/v1/targets/resume", headers=viewer,
                       json={"target": TARGET}).status_code == 403
    assert repo.paused_targets() == {TARGET}
    resp = client.post("/api/v1/targets/resume", headers=approver, json={"target": TARGET})
    assert resp.status_code == 204, resp.text
    assert repo.paused_targets() == set()
    assert client.get("/api/v1/targets/paused", headers=viewer).json() == []
    last = repo.list_audit(subject=TARGET)[0]
    assert (last.actor, last.event) == ("ann", "target.resumed")
    again = client.post("/api/v1/targets/resume", headers=approver, json={"target": TARGET})
    assert again.status_code == 404


def test_a_resume_request_is_validated_and_anonymous_gets_nothing(client: TestClient,
                                                                  repo: Repository) -> None:
    repo.pause_target(TARGET, "drift")
    approver = bearer(repo, "ann", "approver")
    for body in ({"target": ""}, {"target": TARGET, "fleet": True}, {"target": "x" * 5000}):
        assert client.post("/api/v1/targets/resume", headers=approver,
                           json=body).status_code == 422
    assert client.get("/api/v1/targets/paused").status_code == 401
    assert client.post("/api/v1/targets/resume", json={"target": TARGET}).status_code == 401
    assert repo.paused_targets() == {TARGET}


def test_the_paused_page_resumes_with_a_csrf_checked_form(client: TestClient,
                                                         repo: Repository) -> None:
    repo.pause_target(TARGET, "drift")
    add_user(repo, "ann", "approver")
    csrf = login(client, "ann")
    page = client.get("/targets").text
    assert TARGET in page and "resume-target-1" in page
    no_token = client.post("/targets/resume", data={"target": TARGET}, follow_redirects=False)
    assert no_token.status_code == 403 and repo.paused_targets() == {TARGET}
    resp = client.post("/targets/resume", data={"target": TARGET, "csrf_token": csrf},
                       follow_redirects=False)
    assert resp.status_code == 303 and resp.headers["location"].startswith("/targets?msg=")
    assert repo.paused_targets() == set()
    assert "None." in client.get("/targets").text


def test_a_viewer_sees_paused_targets_without_a_resume_button(client: TestClient,
                                                              repo: Repository) -> None:
    repo.pause_target(TARGET, "drift")
    add_user(repo, "vic", "viewer")
    login(client, "vic")
    page = client.get("/targets").text
    assert TARGET in page and "resume-target-1" not in page
