"""Shared helpers of the web tests: a fake clock, the live window, a real uvicorn server,
proposals in the journal, logged-in clients."""

from __future__ import annotations

import json
import re
import socket
import threading
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient

from guardrails import load_policy
from guardrails.actions import parse_action
from guardrails.decision import Decision
from healer.act.base import ActuatorRegistry
from healer.act.engine import ChangeEngine
from healer.act.seal import JournalSeal
from healer.detect.silences import silence_check
from healer.models import ActionRecord, ActionState, Evidence, Incident, Sample
from healer.store.credentials import hash_password, hash_token, new_token
from healer.store.repository import Repository
from playbooks.loader import load_library
from web.protocol import OneWriteHttpToolsProtocol

FIXTURES = Path(__file__).parent / "fixtures"
# The silence check create_app is handed: the shipped library, as the daemon runs it.
SILENCE_CHECK = silence_check(load_library().playbooks)
PASSWORD = "correct horse battery"


class Clock:
    """A settable UTC clock (starts at the real now, so cookies are valid)."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class FakeWindow:
    """The daemon's MetricWindow as the web sees it: latest() and series()."""

    def __init__(self, samples: list[Sample]) -> None:
        self.samples = samples

    def latest(self) -> Sample | None:
        return self.samples[-1] if self.samples else None

    def series(self, name: str, seconds: float) -> list[tuple[float, float]]:
        last = self.samples[-1].ts
        return [(s.ts, s.metrics[name]) for s in self.samples
                if name in s.metrics and s.ts >= last - seconds]


def load_samples() -> list[Sample]:
    """Recorded samples (30 s apart, one GPU) from tests/web/fixtures/samples.json."""
    return [Sample.model_validate(s) for s in json.loads((FIXTURES / "samples.json").read_text())]


def add_user(repo: Repository, name: str, role: str, slack: str | None = None) -> None:
    repo.add_user(name, hash_password(PASSWORD), role, slack)


def bearer(repo: Repository, user: str, role: str = "approver", *,
           token_role: str | None = None) -> dict[str, str]:
    """An Authorization header of a new token owned by ``user`` (created when missing)."""
    owner = repo.get_user(user) or repo.add_user(user, hash_password(PASSWORD), role)
    token = new_token()
    repo.add_token(f"{user}-token", hash_token(token), token_role or owner.role,
                   user_id=owner.id)
    return {"Authorization": f"Bearer {token}"}


def service_bearer(repo: Repository, name: str, role: str) -> dict[str, str]:
    """An Authorization header of a new service token (no owner)."""
    token = new_token()
    repo.add_token(name, hash_token(token), role)
    return {"Authorization": f"Bearer {token}"}


_SEALS: weakref.WeakKeyDictionary[Repository, JournalSeal] = weakref.WeakKeyDictionary()


def agent_seal(repo: Repository, key_dir: Path) -> JournalSeal:
    """Hold the journal key for ``repo`` as the root agent does (one per test)."""
    seal = _SEALS[repo] = JournalSeal.open(repo, key_dir)
    return seal


def decide_votes(repo: Repository) -> list[ActionRecord]:
    """What the root agent's engine does each cycle with recorded votes."""
    engine = ChangeEngine(repo, ActuatorRegistry([]), load_policy(), root=True,
                          seal=_SEALS.get(repo))
    return engine.decide_votes()


def make_incident(repo: Repository, now: datetime, **evidence: Any) -> Incident:
    ev = Evidence(signals={"net.tcp.listen_overflows_total": 42.0},
                  tunables={"net.core.somaxconn": "128"}, **evidence)
    return repo.open_incident(Incident(host_id=repo.host_id, playbook="listen-backlog-too-small",
                                       scope="host", first_seen=now, last_seen=now, evidence=ev))


def make_proposal(repo: Repository, now: datetime, *, approval: str = "approve",
                  incident_id: int | None = None, value: str = "4096") -> ActionRecord:
    needed = 1 if approval == "approve" else int(approval.split(":")[1])
    record = ActionRecord(
        host_id=repo.host_id, incident_id=incident_id,
        action=parse_action({"kind": "sysctl_write", "scope": "host",
                             "key": "net.core.somaxconn", "value": value}),
        decision=Decision(verdict="needs_approval", reasons=("above the auto band",),
                          rules=("P-sysctl-net",), approval=approval),
        state=ActionState.AWAITING_APPROVAL, created_at=now, updated_at=now,
        approvals_needed=needed, rationale="listen queue overflowing")
    return repo.add_action(record)


def csrf_of(html: str) -> str:
    m = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert m, "page has no CSRF field"
    return m.group(1)


def login(client: TestClient, name: str, password: str = PASSWORD) -> str:
    """Sign in through the form; returns the session's CSRF token."""
    token = csrf_of(client.get("/login").text)
    resp = client.post("/login", data={"username": name, "password": password,
                                       "csrf_token": token}, follow_redirects=False)
    assert resp.status_code == 303, resp.text
    return csrf_of(client.get("/approvals").text)


@contextmanager
def serve(app: FastAPI) -> Iterator[str]:
    """Run ``app`` under a real uvicorn on a free localhost port, on the HTTP protocol
    ``healer serve`` runs (web.protocol); yields the base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, http=OneWriteHttpToolsProtocol,
                                            log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
