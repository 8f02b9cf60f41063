"""Pages render, escape untrusted text, and carry no external resources."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from healer.models import ActionState, Verification, VerifySpec
from healer.store.repository import Repository
from tests.web.helpers import Clock, add_user, login, make_incident, make_proposal

EVIL = '<script>alert("x")</script><img src=x onerror=alert(1)>'


@pytest.fixture
def signed_in(client: TestClient, repo: Repository) -> TestClient:
    add_user(repo, "alice", "approver")
    login(client, "alice")
    return client


def test_incident_page_escapes_untrusted_kernel_text(signed_in: TestClient, repo: Repository,
                                                     clock: Clock) -> None:
    incident = make_incident(repo, clock(), kmsg=(f"Out of memory: Killed process 7 ({EVIL})",))
    page = signed_in.get(f"/incidents/{incident.id}").text
    assert EVIL not in page
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in page


def test_incident_timeline_shows_detection_proposal_and_state_changes(
        signed_in: TestClient, repo: Repository, clock: Clock) -> None:
    incident = make_incident(repo, clock())
    record = make_proposal(repo, clock(), incident_id=incident.id)
    repo.transition(record.id, ActionState.APPROVED,  # type: ignore[arg-type]
                    expect={ActionState.AWAITING_APPROVAL}, actor="alice")
    page = signed_in.get(f"/incidents/{incident.id}").text
    assert "Detected listen-backlog-too-small" in page
    assert "net.tcp.listen_overflows_total" in page and "42" in page
    assert "awaiting_approval → approved by alice" in page


def test_verification_chart_carries_apply_and_verify_markers(
        signed_in: TestClient, repo: Repository, clock: Clock) -> None:
    incident = make_incident(repo, clock())
    record = make_proposal(repo, clock(), incident_id=incident.id)
    spec = VerifySpec(metric="net.tcp.listen_overflows_total", direction="to_zero")
    for to, frm in ((ActionState.APPROVED, ActionState.AWAITING_APPROVAL),
                    (ActionState.APPLYING, ActionState.APPROVED),
                    (ActionState.VERIFYING, ActionState.APPLYING),
                    (ActionState.VERIFIED, ActionState.VERIFYING)):
        repo.transition(record.id, to, expect={frm},  # type: ignore[arg-type]
                        verification=Verification(spec=spec, in_playbook=True))
    page = signed_in.get(f"/incidents/{incident.id}").text
    data = re.search(r'<script type="application/json" class="chart-data">(.*?)</script>', page)
    assert data is not None
    assert '"label": "apply"' in data.group(1) and '"label": "verify"' in data.group(1)


def test_overview_has_host_and_gpu_charts(signed_in: TestClient) -> None:
    page = signed_in.get("/").text
    for metric in ("psi.memory.some_avg10", "mem.available_bytes", "load.1m",
                   "net.tcp.listen_overflows_total", "gpu.0.temperature_celsius",
                   "gpu.0.power_draw_watts", "gpu.0.utilization_percent"):
        assert metric in page
    assert "gpu.0.power_limit_watts" not in page  # a limit is not a power reading


@pytest.mark.parametrize("path", ["/", "/approvals", "/incidents", "/actions", "/audit",
                                  "/playbooks", "/policy", "/login"])
def test_pages_load_nothing_from_other_origins(client: TestClient, repo: Repository,
                                               path: str) -> None:
    if path != "/login":
        add_user(repo, "alice", "viewer")
        login(client, "alice")
    resp = client.get(path)
    assert resp.status_code == 200
    assert not re.search(r'(src|href)="(https?:)?//', resp.text)
    assert "default-src 'self'" in resp.headers["content-security-policy"]
    assert 'name="viewport"' in resp.text


def test_actions_journal_shows_who_approved(signed_in: TestClient, repo: Repository,
                                            clock: Clock) -> None:
    record = make_proposal(repo, clock())
    add_user(repo, "ann", "approver")
    repo.add_approval(record.id, "ann", True, "ship it")  # type: ignore[arg-type]
    page = signed_in.get("/actions").text
    assert "ann ✓" in page and "ship it" in page


def test_a_change_waiting_for_its_fleets_canary_shows_as_waiting_canary(
        signed_in: TestClient, repo: Repository, clock: Clock) -> None:
    incident = make_incident(repo, clock())
    record = make_proposal(repo, clock(), incident_id=incident.id)
    for to, frm in ((ActionState.APPROVED, ActionState.AWAITING_APPROVAL),
                    (ActionState.WAITING_CANARY, ActionState.APPROVED)):
        repo.transition(record.id, to, expect={frm})  # type: ignore[arg-type]
    page = signed_in.get("/actions").text
    assert '<span class="badge st-waiting_canary">waiting_canary</span>' in page
    listed = signed_in.get("/api/v1/actions", params={"state": "waiting_canary"}).json()
    assert [a["id"] for a in listed] == [record.id]
    timeline = signed_in.get(f"/incidents/{incident.id}").text
    assert "approved → waiting_canary" in timeline
