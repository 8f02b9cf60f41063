"""``healer host add``, ``healer token create --role ingest`` and ``healer fleet
pause|resume|status`` against the configured database (a control plane's PostgreSQL)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from healer.cli.main import main
from healer.store.credentials import hash_token
from healer.store.engine import CONTROL_PLANE, open_engine
from healer.store.repository import Repository
from tests.store.fleet_helpers import REMEDY, beat


@pytest.fixture
def cp(pg_head_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
       ) -> Iterator[Repository]:
    monkeypatch.setenv("HEALER_DATABASE_URL", pg_head_url)
    monkeypatch.setenv("HEALER_STATE_DIR", str(tmp_path / "state"))
    engine = open_engine(pg_head_url, pool_size=2, max_overflow=0)
    yield Repository(engine, CONTROL_PLANE)
    engine.dispose()


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_host_add_prints_a_token_bound_to_that_host_last(
        cp: Repository, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "host", "add", "gpu-7")
    token = out.strip().splitlines()[-1]
    assert code == 0 and token.startswith("hlr_")
    assert cp.host_of_token(hash_token(token)) == ("host", "gpu-7")
    code, _, err = run(capsys, "host", "add", "gpu-7")
    assert code == 1 and "already exists" in err


def test_token_create_makes_ingest_tokens_and_refuses_unbound_host_ones(
        cp: Repository, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "token", "create", "alertmanager", "--role", "ingest")
    assert code == 0
    assert cp.host_of_token(hash_token(out.strip().splitlines()[-1])) == ("ingest", None)
    code, _, err = run(capsys, "token", "create", "x", "--role", "host")
    assert code == 2 and "healer host add" in err


def test_fleet_pause_resume_and_status(cp: Repository,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    for host in ("a", "b"):
        run(capsys, "host", "add", host)
        beat(cp, host, {"rack": "r1" if host == "a" else "r2"})
    assert run(capsys, "fleet", "pause", "--reason", "change freeze")[:2] == (0, "paused\n")
    assert run(capsys, "fleet", "pause", REMEDY.key)[:2] == (0, "paused\n")
    code, out, _ = run(capsys, "fleet", "status", "--json")
    status = json.loads(out)
    assert code == 0 and status["paused"] is True
    assert status["paused_remedies"] == [REMEDY.key] and status["hosts"] == 2
    assert run(capsys, "fleet", "resume")[:2] == (0, "pause lifted\n")
    assert run(capsys, "fleet", "resume", REMEDY.key)[:2] == (0, "pause lifted\n")
    assert run(capsys, "fleet", "pause", "--hosts", "rack=r1")[:2] == (0, "paused a\n")
    code, out, _ = run(capsys, "fleet", "status")
    assert code == 0 and "running" in out and "paused hosts: a" in out
    assert [e.type for e in cp.events_after("a", 0)] == ["pause", "pause", "resume",
                                                         "resume", "pause"]


@pytest.mark.parametrize("selector", ["", "rack=r1,rack=r1", "nonsense"])
def test_a_selector_that_is_empty_matches_every_host_or_is_malformed_is_refused(
        cp: Repository, capsys: pytest.CaptureFixture[str], selector: str) -> None:
    for host in ("a", "b"):
        run(capsys, "host", "add", host)
        beat(cp, host, {"rack": "r1"})
    code, _, err = run(capsys, "fleet", "pause", "--hosts", selector)
    assert code == 2 and err.startswith("healer: config error: --hosts")
    assert not any(h.paused for h in cp.list_hosts())


def test_a_malformed_remedy_is_a_usage_error(cp: Repository,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "fleet", "resume", "not-a-remedy")
    assert code == 2 and "playbook:kind:target" in err
