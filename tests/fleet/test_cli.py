"""Root CLI commands on a host in a fleet report the journal writes they make."""

from __future__ import annotations

from pathlib import Path

import pytest

from healer.cli.main import main
from healer.models import ActionState
from healer.settings import Settings
from healer.store.engine import open_store
from tests.act.conftest import Clock, Window, netns_sysctl
from tests.act.engine_kit import SPEC, feed, make_engine, somaxconn

S = ActionState


@pytest.mark.parametrize("in_fleet", [True, False])
def test_an_operators_rollback_is_reported_while_the_agent_is_in_a_fleet(
        netns: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, in_fleet: bool) -> None:
    monkeypatch.setenv("HEALER_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("HEALER_AGENT_DIR", str(tmp_path / "agent"))  # make_engine's key too
    monkeypatch.setenv("HEALER_HOST_ID", "cli-host")
    settings = Settings()
    repo = open_store(settings)
    netns_sysctl(netns, "net.core.somaxconn", "128")
    clock, window = Clock(), Window()
    engine = make_engine(repo, clock, window, tmp_path)
    total = feed(window, clock, 10, overflow_rate=20, psi=1.0)
    record = engine.propose(None, somaxconn(netns, "512"), SPEC)
    engine.step()
    feed(window, clock, 8, overflow_rate=0, psi=1.0, start_total=total)
    [verified] = engine.step()
    assert verified.state == S.VERIFIED
    repo.set_fleet_reporting(in_fleet)  # what the agent's start leaves for other processes
    assert main(["rollback", str(record.id)]) == 0
    assert netns_sysctl(netns, "net.core.somaxconn") == "128"
    queued = [r.body["state"] for r in repo.report_batch(100, 10**9)]
    assert queued == (["rolled_back"] if in_fleet else [])
