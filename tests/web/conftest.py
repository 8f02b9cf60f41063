from __future__ import annotations

from collections.abc import Iterator

import pytest
from argon2 import PasswordHasher
from fastapi import FastAPI
from fastapi.testclient import TestClient

from healer.settings import Settings
from healer.store.engine import open_store
from healer.store.repository import Repository
from healer.telemetry import Telemetry
from tests.web.helpers import SILENCE_CHECK, Clock, FakeWindow, agent_seal, load_samples
from web import WindowLive, create_app

SLACK_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"


@pytest.fixture(autouse=True)
def cheap_argon2(monkeypatch: pytest.MonkeyPatch) -> None:
    """Still argon2id, at the smallest cost: each default hash takes ~0.1 s of CPU."""
    cheap = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
    monkeypatch.setattr("healer.store.credentials._hasher", lambda: cheap)


@pytest.fixture
def settings(tmp_path) -> Settings:  # type: ignore[no-untyped-def]
    return Settings(state_dir=tmp_path / "state", host_id="test-host",
                    slack_signing_secret=SLACK_SECRET, approval_ttl_seconds=600)


@pytest.fixture
def repo(settings: Settings) -> Repository:
    """The store as the agent holds it: journal rows the tests add are sealed, as the
    agent's are, so its engine (``helpers.decide_votes``) may act on them."""
    repo = open_store(settings)
    agent_seal(repo, settings.key_dir)
    return repo


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def window() -> FakeWindow:
    return FakeWindow(load_samples())


@pytest.fixture
def app(settings: Settings, repo: Repository, clock: Clock, window: FakeWindow) -> FastAPI:
    live = WindowLive(window, llm=lambda: {"state": "closed", "consecutive_failures": 0})
    return create_app(settings, repo=repo, telemetry=Telemetry(),
                      silence_check=SILENCE_CHECK, live=live, clock=clock)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app, base_url="http://127.0.0.1:8765") as c:
        yield c
