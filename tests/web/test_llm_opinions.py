"""The LLM's answers on the incident page and in the API: its own root cause where no
playbook matched, and a second opinion beside a playbook's diagnosis."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from healer.models import Diagnosis, Evidence, Incident, Opinion
from healer.store.repository import Repository
from tests.web.helpers import Clock, add_user, bearer, login, make_incident

TEMPLATE = "frobnic <PCI>: DMA engine <N> halted: descriptor ring corrupt"
SLUG = "dma-ring-corruption"


@pytest.fixture
def viewer(repo: Repository) -> dict[str, str]:
    return bearer(repo, "dash", "viewer")


def _unclassified(repo: Repository, clock: Clock) -> Incident:
    incident = repo.open_incident(Incident(
        host_id=repo.host_id, playbook="unclassified", scope="host", subject=TEMPLATE,
        first_seen=clock(), last_seen=clock(),
        evidence=Evidence(kmsg=("frobnic 0000:5e:00.0: DMA engine 3 halted: descriptor ring "
                                "corrupt",), captures={"template": TEMPLATE})))
    assert incident.id is not None
    repo.set_diagnosis(incident.id, Diagnosis(
        root_cause=SLUG, source="llm", confidence=0.7,
        explanation="the device's DMA descriptors were overwritten"))
    return incident


def _second_opinion(repo: Repository, clock: Clock) -> Incident:
    incident = make_incident(repo, clock())
    assert incident.id is not None
    repo.set_diagnosis(incident.id, Diagnosis(
        root_cause="listen-backlog-too-small", confidence=0.8, explanation="from the playbook",
        second_opinion=Opinion(root_cause="syn-backlog-overflow", confidence=0.99,
                               explanation="a SYN flood", model="scripted")))
    return incident


def test_the_api_shows_the_llms_root_cause_and_its_second_opinion(
        client: TestClient, repo: Repository, clock: Clock, viewer: dict[str, str]) -> None:
    own = _unclassified(repo, clock)
    beside = _second_opinion(repo, clock)
    body = client.get(f"/api/v1/incidents/{own.id}", headers=viewer).json()
    assert body["subject"] == TEMPLATE
    assert body["diagnosis"] == {"root_cause": SLUG, "source": "llm", "confidence": 0.7,
                                 "explanation": "the device's DMA descriptors were overwritten",
                                 "second_opinion": None}
    body = client.get(f"/api/v1/incidents/{beside.id}", headers=viewer).json()
    assert body["diagnosis"]["root_cause"] == "listen-backlog-too-small"
    assert body["diagnosis"]["source"] == "playbook"
    assert body["diagnosis"]["second_opinion"] == {
        "root_cause": "syn-backlog-overflow", "confidence": 0.99, "explanation": "a SYN flood",
        "agrees": False, "model": "scripted", "failure": None}


def test_the_pages_show_both_answers(client: TestClient, repo: Repository,
                                     clock: Clock) -> None:
    add_user(repo, "alice", "viewer")
    login(client, "alice")
    own = _unclassified(repo, clock)
    beside = _second_opinion(repo, clock)
    page = client.get(f"/incidents/{own.id}").text
    assert "unclassified" in page and f"<code>{SLUG}</code> (LLM, 70%)" in page
    page = client.get(f"/incidents/{beside.id}").text
    assert "<code>listen-backlog-too-small</code> (playbook, 80%)" in page
    assert "<code>syn-backlog-overflow</code> (LLM, 99%, disagrees" in page
    assert "Second opinion (LLM scripted): syn-backlog-overflow" in page
    listing = client.get("/incidents").text
    assert f"LLM: <code>{SLUG}</code>" in listing
