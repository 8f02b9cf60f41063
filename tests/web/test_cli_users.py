"""``healer user add`` reads the password from stdin; ``healer token create`` prints the
token once, as the last line, and stores only its hash."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from healer.cli.main import main
from healer.cli.users import hash_token, verify_password
from healer.settings import Settings
from healer.store.engine import open_store


@pytest.fixture
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HEALER_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("HEALER_HOST_ID", "cli-host")
    return tmp_path / "state"


def test_user_add_hashes_the_stdin_password_with_argon2(state: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("s3cure-passw0rd\n"))
    assert main(["user", "add", "alice", "--role", "approver", "--slack-user-id", "U1"]) == 0
    user = open_store(Settings(state_dir=state, host_id="cli-host")).get_user("alice")
    assert user is not None and user.role == "approver" and user.slack_user_id == "U1"
    assert user.password_hash.startswith("$argon2id$")
    assert verify_password(user.password_hash, "s3cure-passw0rd")


def test_user_add_refuses_a_short_password(state: Path, monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    assert main(["user", "add", "bob", "--role", "viewer"]) == 2
    assert "password" in capsys.readouterr().err


def test_token_create_prints_the_token_last_and_stores_its_hash(
        state: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["token", "create", "ci", "--role", "viewer"]) == 0
    token = capsys.readouterr().out.strip().splitlines()[-1]
    repo = open_store(Settings(state_dir=state, host_id="cli-host"))
    row = repo.find_token(hash_token(token))
    assert row is not None and row.role == "viewer"
    assert token not in row.token_hash
