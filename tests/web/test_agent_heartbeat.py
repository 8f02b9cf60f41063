"""The unprivileged side judges the agent by its heartbeat: 503 and a banner once it stops.

A real ``LivePublisher`` writes the agent's live file and a real ``LiveReader`` reads it,
as ``healer run`` and ``healer serve`` do; only the clock is moved.
"""

from __future__ import annotations

import time
from pathlib import Path

from fastapi.testclient import TestClient

from healer.live import LIVE_FILE, LivePublisher, LiveReader
from healer.models import Sample
from healer.settings import Settings
from healer.store.repository import Repository
from healer.telemetry import Telemetry
from tests.web.helpers import SILENCE_CHECK, Clock, add_user, login
from web import create_app


def _client(settings: Settings, repo: Repository, clock: Clock, reader: LiveReader
            ) -> TestClient:
    return TestClient(create_app(settings, repo=repo, telemetry=Telemetry(), live=reader,
                                 clock=clock, silence_check=SILENCE_CHECK))


def test_a_stopped_heartbeat_is_a_503_and_a_banner(settings: Settings, repo: Repository,
                                                   clock: Clock, tmp_path: Path) -> None:
    publisher = LivePublisher(tmp_path, interval_seconds=1.0, mode="auto")
    reader = LiveReader(tmp_path / LIVE_FILE, window_seconds=3600, interval_seconds=1.0)
    now = time.time()
    clock.now = clock.now.fromtimestamp(now, clock.now.tzinfo)
    publisher.publish(Sample(ts=now, metrics={"load.1m": 0.5}), "healer_cycle_seconds_count 7\n",
                      0.0)
    assert reader.poll()
    client = _client(settings, repo, clock, reader)
    health = client.get("/healthz").json()
    assert health["agent"] == "alive" and health["status"] == "ok"
    assert "healer_cycle_seconds_count 7" in client.get("/metrics").text  # the agent's own
    add_user(repo, "ann", "viewer")
    login(client, "ann")
    assert "agent is not running" not in client.get("/").text
    clock.advance(3.5)  # three intervals without a new heartbeat
    resp = client.get("/healthz")
    assert resp.status_code == 503 and resp.json()["agent"] == "dead"
    assert "agent is not running" in client.get("/").text
