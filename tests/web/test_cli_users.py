"""``healer user add|remove|passwd|role`` read passwords from stdin; ``healer token create``
prints the token once, as the last line, stores only its hash, and belongs to a user unless
it is a service token; ``token list|revoke`` manage them."""

from __future__ import annotations

import io
import json
from datetime import timedelta
from pathlib import Path

import pytest

from healer.cli.main import main
from healer.settings import Settings
from healer.store.credentials import hash_token, verify_password
from healer.store.engine import open_store
from healer.store.repository import Repository


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


def _repo(state: Path) -> Repository:
    return open_store(Settings(state_dir=state, host_id="cli-host"))


def _add(monkeypatch: pytest.MonkeyPatch, name: str, role: str) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("s3cure-passw0rd\n"))
    assert main(["user", "add", name, "--role", role]) == 0


def _token(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    assert main(["token", "create", *argv]) == 0
    return capsys.readouterr().out.strip().splitlines()[-1]


def test_token_create_prints_the_token_last_and_stores_its_hash(
        state: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    _add(monkeypatch, "alice", "approver")
    token = _token(capsys, "ci", "--user", "alice", "--role", "viewer")
    row = _repo(state).find_token(hash_token(token))
    assert row is not None and row.role == "viewer" and row.owner == "alice"
    assert token not in row.token_hash


def test_a_persons_token_needs_its_user_and_never_outranks_it(
        state: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["token", "create", "ci", "--role", "admin"]) == 2
    assert "--user" in capsys.readouterr().err
    assert main(["token", "create", "ci", "--user", "ghost"]) == 2
    _add(monkeypatch, "vera", "viewer")
    capsys.readouterr()
    token = _token(capsys, "ci", "--user", "vera", "--role", "admin")
    assert _repo(state).find_token(hash_token(token)).role == "viewer"  # type: ignore[union-attr]
    assert main(["token", "create", "x", "--user", "vera", "--role", "ingest"]) == 2


def test_service_token_has_no_owner(state: Path, capsys: pytest.CaptureFixture[str]) -> None:
    token = _token(capsys, "alerts", "--role", "ingest")
    row = _repo(state).find_token(hash_token(token))
    assert row is not None and row.role == "ingest" and row.user_id is None


def test_token_expires_in_list_and_revoke(state: Path, monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    _add(monkeypatch, "alice", "admin")
    capsys.readouterr()
    token = _token(capsys, "short", "--user", "alice", "--expires-in", "2h")
    repo = _repo(state)
    row = repo.find_token(hash_token(token))
    assert row is not None and row.expires_at is not None
    assert abs(row.expires_at - row.created_at - timedelta(hours=2)) < timedelta(seconds=5)
    assert main(["token", "create", "bad", "--user", "alice", "--expires-in", "soon"]) == 2
    capsys.readouterr()
    assert main(["token", "list", "--json"]) == 0
    [listed] = json.loads(capsys.readouterr().out)
    assert (listed["name"], listed["owner"], listed["state"]) == ("short", "alice", "active")
    assert "token_hash" not in listed and token not in json.dumps(listed)
    assert main(["token", "revoke", str(row.id)]) == 0
    assert repo.find_token(hash_token(token)).revoked_at is not None  # type: ignore[union-attr]
    assert main(["token", "revoke", "999"]) == 1


def test_user_remove_passwd_and_role(state: Path, monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    _add(monkeypatch, "alice", "approver")
    monkeypatch.setattr("sys.stdin", io.StringIO("another-passw0rd\n"))
    assert main(["user", "passwd", "alice"]) == 0
    repo = _repo(state)
    assert verify_password(repo.get_user("alice").password_hash,  # type: ignore[union-attr]
                           "another-passw0rd")
    assert main(["user", "role", "alice", "viewer"]) == 0
    assert repo.get_user("alice").role == "viewer"  # type: ignore[union-attr]
    assert main(["user", "remove", "alice"]) == 0
    assert repo.get_user("alice") is None
    assert main(["user", "remove", "alice"]) == 1
    assert "not found" in capsys.readouterr().err
