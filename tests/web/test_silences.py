"""``/api/v1/silences`` and the dashboard's silence button: roles, expiry, audit, refusals."""

from __future__ import annotations

from datetime import timedelta

from fastapi.testclient import TestClient
from markupsafe import escape

from healer.detect.templates import template
from healer.models import Evidence, Incident
from healer.store.repository import Repository
from tests.web.helpers import Clock, add_user, bearer, login

LINE = "mydrv 0000:3b:00.0: firmware heartbeat missed 3 times"


def _bearer(repo: Repository, name: str, role: str) -> dict[str, str]:
    return bearer(repo, name, role)  # a person's token, owned by a user of that role


def _unclassified(repo: Repository, clock: Clock, line: str = LINE,
                  playbook: str = "unclassified") -> Incident:
    now = clock()
    return repo.open_incident(Incident(
        host_id=repo.host_id, playbook=playbook, scope="host",
        subject=template(line) if playbook == "unclassified" else "", first_seen=now,
        last_seen=now, evidence=Evidence(kmsg=(line,))))


def test_an_approver_silences_an_incident_and_a_viewer_lists_it(client: TestClient,
                                                                repo: Repository,
                                                                clock: Clock) -> None:
    incident = _unclassified(repo, clock)
    resp = client.post("/api/v1/silences", headers=_bearer(repo, "ann", "approver"),
                       json={"incident_id": incident.id, "comment": "known chatter",
                             "duration_seconds": 3600})
    assert resp.status_code == 201, resp.text
    body = resp.json()
    assert (body["template"], body["created_by"], body["active"]) == (
        template(LINE), "ann", True)
    listed = client.get("/api/v1/silences", headers=_bearer(repo, "vic", "viewer")).json()
    assert [s["id"] for s in listed] == [body["id"]]
    audit = repo.list_audit(subject=f"silence:{body['id']}")
    assert [(a.actor, a.event) for a in audit] == [("ann", "silence.added")]


def test_a_viewer_cannot_add_or_remove_and_anonymous_cannot_list(client: TestClient,
                                                                 repo: Repository,
                                                                 clock: Clock) -> None:
    viewer = _bearer(repo, "vic", "viewer")
    resp = client.post("/api/v1/silences", headers=viewer,
                       json={"template": template(LINE), "comment": "x"})
    assert resp.status_code == 403
    row = repo.add_silence(template(LINE), "x", "ann", clock() + timedelta(hours=1))
    assert client.delete(f"/api/v1/silences/{row.id}", headers=viewer).status_code == 403
    assert client.get("/api/v1/silences").status_code == 401
    assert len(repo.list_silences()) == 1


def test_a_claimed_template_or_a_playbook_incident_is_a_422(client: TestClient,
                                                           repo: Repository,
                                                           clock: Clock) -> None:
    approver = _bearer(repo, "ann", "approver")
    claimed = client.post("/api/v1/silences", headers=approver, json={
        "template": "nf_conntrack: nf_conntrack: table full, dropping packet", "comment": "x"})
    assert claimed.status_code == 422 and "conntrack-table-full" in claimed.json()["detail"]
    known = _unclassified(repo, clock, playbook="soft-lockup")
    resp = client.post("/api/v1/silences", headers=approver,
                       json={"incident_id": known.id, "comment": "x"})
    assert resp.status_code == 422 and "only unclassified" in resp.json()["detail"]
    both = client.post("/api/v1/silences", headers=approver,
                       json={"template": "a <N>", "incident_id": known.id, "comment": "x"})
    assert both.status_code == 422
    assert client.post("/api/v1/silences", headers=approver,
                       json={"incident_id": 10**9, "comment": "x"}).status_code == 404
    assert repo.list_silences() == []


def test_expired_silences_are_listed_as_such_and_removal_is_audited(client: TestClient,
                                                                   repo: Repository,
                                                                   clock: Clock) -> None:
    approver = _bearer(repo, "ann", "approver")
    made = client.post("/api/v1/silences", headers=approver, json={
        "fingerprint": _unclassified(repo, clock).fingerprint, "comment": "x",
        "duration_seconds": 120}).json()
    clock.advance(121)
    assert client.get("/api/v1/silences", headers=approver).json()[0]["active"] is False
    assert client.get("/api/v1/silences?active=true", headers=approver).json() == []
    assert repo.active_silences(clock()) == {}
    assert client.delete(f"/api/v1/silences/{made['id']}", headers=approver).status_code == 204
    assert client.delete(f"/api/v1/silences/{made['id']}", headers=approver).status_code == 404
    events = [a.event for a in repo.list_audit(subject=f"silence:{made['id']}")]
    assert events == ["silence.removed", "silence.added"]


def test_the_incident_page_button_silences_with_a_csrf_checked_form(client: TestClient,
                                                                    repo: Repository,
                                                                    clock: Clock) -> None:
    add_user(repo, "ann", "approver")
    incident = _unclassified(repo, clock)
    csrf = login(client, "ann")
    page = client.get(f"/incidents/{incident.id}").text
    assert "unclassified" in page and "Silence this message" in page
    assert str(escape(template(LINE))) in page  # the template, escaped
    no_token = client.post(f"/incidents/{incident.id}/silence",
                           data={"comment": "noise", "duration": "7d"}, follow_redirects=False)
    assert no_token.status_code == 403 and repo.list_silences() == []
    resp = client.post(f"/incidents/{incident.id}/silence", follow_redirects=False,
                       data={"comment": "noise", "duration": "7d", "csrf_token": csrf})
    assert resp.status_code == 303 and resp.headers["location"].startswith("/silences?msg=")
    [row] = repo.list_silences()
    assert row.created_by == "ann" and row.expires_at - clock() == timedelta(days=7)
    listing = client.get("/silences").text
    assert f"remove-silence-{row.id}" in listing and "noise" in listing


def test_a_viewer_sees_no_silence_button(client: TestClient, repo: Repository,
                                         clock: Clock) -> None:
    add_user(repo, "vic", "viewer")
    incident = _unclassified(repo, clock)
    login(client, "vic")
    assert "Silence this message" not in client.get(f"/incidents/{incident.id}").text
