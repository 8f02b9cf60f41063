"""The JSON API keeps ARCHITECTURE.md's shapes: exact keys, UTC ISO 8601, newest first."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from healer.models import ActionState
from healer.store.repository import Repository
from tests.web.helpers import Clock, FakeWindow, add_user, bearer, make_incident, make_proposal

INCIDENT_KEYS = {"id", "host_id", "playbook", "scope", "subject", "status", "severity", "count",
                 "first_seen", "last_seen", "diagnosis"}
ACTION_KEYS = {"id", "host_id", "incident_id", "action", "decision", "state", "original",
               "applied", "created_at", "updated_at", "verification", "transitions"}


@pytest.fixture
def viewer(repo: Repository) -> dict[str, str]:
    return bearer(repo, "dash", "viewer")


def test_incident_has_exactly_the_documented_keys(client: TestClient, repo: Repository,
                                                  clock: Clock, viewer: dict[str, str]) -> None:
    incident = make_incident(repo, clock())
    body = client.get(f"/api/v1/incidents/{incident.id}", headers=viewer).json()
    assert set(body) == INCIDENT_KEYS
    assert body["status"] == "open" and body["first_seen"].endswith("Z")


def test_action_record_has_exactly_the_documented_keys(client: TestClient, repo: Repository,
                                                       clock: Clock,
                                                       viewer: dict[str, str]) -> None:
    record = make_proposal(repo, clock())
    body = client.get(f"/api/v1/actions/{record.id}", headers=viewer).json()
    assert set(body) == ACTION_KEYS
    assert body["action"] == {"kind": "sysctl_write", "scope": "host",
                              "key": "net.core.somaxconn", "value": "4096"}
    assert body["decision"] == {"verdict": "needs_approval", "reasons": ["above the auto band"],
                                "rules": ["P-sysctl-net"]}
    assert [t["state"] for t in body["transitions"]] == ["awaiting_approval"]
    assert body["transitions"][0]["at"].endswith("Z")


def test_every_action_record_lists_its_transitions_oldest_first(
        client: TestClient, repo: Repository, clock: Clock, viewer: dict[str, str]) -> None:
    record = make_proposal(repo, clock())
    assert record.id is not None
    clock.advance(5)
    repo.transition(record.id, ActionState.APPROVED, expect={ActionState.AWAITING_APPROVAL})
    clock.advance(5)
    repo.transition(record.id, ActionState.APPLYING, expect={ActionState.APPROVED})
    for body in (client.get(f"/api/v1/actions/{record.id}", headers=viewer).json(),
                 client.get("/api/v1/actions", headers=viewer).json()[0]):
        moves = body["transitions"]
        assert [t["state"] for t in moves] == ["awaiting_approval", "approved", "applying"]
        assert moves[0]["at"] < moves[1]["at"] < moves[2]["at"]


def test_lists_are_newest_first(client: TestClient, repo: Repository, clock: Clock,
                                viewer: dict[str, str]) -> None:
    first = make_proposal(repo, clock(), value="1024")
    second = make_proposal(repo, clock(), value="2048")
    ids = [a["id"] for a in client.get("/api/v1/actions", headers=viewer).json()]
    assert ids == [second.id, first.id]


def test_actions_filter_by_state(client: TestClient, repo: Repository, clock: Clock,
                                 viewer: dict[str, str]) -> None:
    record = make_proposal(repo, clock())
    repo.transition(record.id, ActionState.REJECTED,  # type: ignore[arg-type]
                    expect={ActionState.AWAITING_APPROVAL})
    make_proposal(repo, clock())
    states = {a["state"] for a in
              client.get("/api/v1/actions?state=rejected", headers=viewer).json()}
    assert states == {"rejected"}


def test_missing_incident_is_404(client: TestClient, viewer: dict[str, str]) -> None:
    assert client.get("/api/v1/incidents/12345", headers=viewer).status_code == 404


def test_snapshot_reports_the_live_sample(client: TestClient, window: FakeWindow,
                                          viewer: dict[str, str]) -> None:
    body = client.get("/api/v1/snapshot", headers=viewer).json()
    assert body["live"] is True
    assert body["metrics"]["load.1m"] == window.latest().metrics["load.1m"]  # type: ignore[union-attr]
    assert body["gpus"][0]["index"] == 0 and body["llm"]["state"] == "closed"
    assert body["kmsg"][0]["message"].startswith("TCP: request_sock_TCP")


def test_series_reads_the_window_and_downsamples(client: TestClient,
                                                 viewer: dict[str, str]) -> None:
    url = "/api/v1/series?name=load.1m&name=gpu.0.temperature_celsius&seconds=3600&points=10"
    body = client.get(url, headers=viewer).json()
    # fixture: 120 samples 30 s apart, so the last hour holds 121 s/30 -> 121 points at most
    assert set(body["series"]) == {"load.1m", "gpu.0.temperature_celsius"}
    assert len(body["series"]["load.1m"]) == 10


def test_series_rejects_malformed_names(client: TestClient, viewer: dict[str, str]) -> None:
    resp = client.get("/api/v1/series?name=../../etc", headers=viewer)
    assert resp.status_code == 422


def test_audit_lists_votes_newest_first(client: TestClient, repo: Repository, clock: Clock,
                                        viewer: dict[str, str]) -> None:
    record = make_proposal(repo, clock())
    add_user(repo, "ann", "approver")
    repo.add_approval(record.id, "ann", True, "fine")  # type: ignore[arg-type]
    rows = client.get(f"/api/v1/audit?subject=action:{record.id}", headers=viewer).json()
    assert rows[0]["event"] == "approval.vote" and rows[0]["actor"] == "ann"
    assert rows[-1]["event"] == "action.added"


def test_a_request_asks_opentelemetry_nothing(client: TestClient, viewer: dict[str, str],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """The web side reports through Prometheus; FastAPI's OpenTelemetry bridge is off, so
    a request never looks for a global provider (each look read the environment)."""
    from opentelemetry import _logs, metrics, trace

    looked: list[str] = []
    for module, name in ((trace, "get_tracer_provider"), (metrics, "get_meter_provider"),
                         (_logs, "get_logger_provider")):
        real = getattr(module, name)
        monkeypatch.setattr(module, name, lambda real=real, name=name: (
            looked.append(name), real())[1])
    assert client.get("/api/v1/incidents", headers=viewer).status_code == 200
    assert looked == []
