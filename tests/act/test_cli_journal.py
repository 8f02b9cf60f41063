"""``healer incidents|actions|approve|reject|rollback|persist`` against a real journal."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from guardrails.actions import SysctlWrite
from guardrails.decision import Decision
from healer.cli.main import main
from healer.models import ActionRecord, ActionState, Diagnosis, Incident, Opinion
from healer.settings import Settings
from healer.store.engine import open_store
from healer.store.repository import Repository

S = ActionState
NEEDS = Decision(verdict="needs_approval", reasons=("advise mode",), rules=("M-advise",),
                 approval="approve")


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Repository:
    monkeypatch.setenv("HEALER_STATE_DIR", str(tmp_path))
    monkeypatch.setenv("HEALER_HOST_ID", "cli-host")
    return open_store(Settings())


def _awaiting(repo: Repository, needed: int = 1) -> int:
    now = datetime.now(UTC)
    record = repo.add_action(ActionRecord(
        host_id="cli-host", action=SysctlWrite(key="net.core.somaxconn", value="8192"),
        decision=NEEDS, created_at=now, updated_at=now, approvals_needed=needed))
    assert record.id is not None
    repo.transition(record.id, S.AWAITING_APPROVAL, expect=[S.PROPOSED])
    return record.id


def _people(repo: Repository) -> None:
    for name, role in (("alice", "approver"), ("bob", "approver"), ("vera", "viewer")):
        repo.add_user(name, "h", role)


def test_approve_records_the_named_users_vote_and_leaves_the_decision_to_the_daemon(
        repo: Repository, capsys: pytest.CaptureFixture[str]) -> None:
    _people(repo)
    action_id = _awaiting(repo)
    assert main(["approve", str(action_id), "--as", "alice", "--comment", "looks right"]) == 0
    assert repo.get_action(action_id).state == S.AWAITING_APPROVAL  # type: ignore[union-attr]
    [vote] = repo.list_approvals(action_id)
    assert (vote.user, vote.comment) == ("alice", "looks right")
    audit = repo.list_audit(subject=f"action:{action_id}")[0]
    assert (audit.actor, audit.detail["via"]) == ("alice", "cli")
    out = capsys.readouterr().out
    assert "1 of 1 approvals" in out and "next cycle" in out


def test_vote_needs_a_known_approver(repo: Repository,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    _people(repo)
    action_id = _awaiting(repo)
    with pytest.raises(SystemExit) as usage:
        main(["approve", str(action_id)])  # no --as: argparse refuses, exit 2
    assert usage.value.code == 2
    with pytest.raises(SystemExit) as huge:
        main(["approve", str(2**64), "--as", "alice"])  # no row has it; SQLite would raise
    assert huge.value.code == 2
    assert main(["approve", str(action_id), "--as", "mallory"]) == 2
    assert "no healer user 'mallory'" in capsys.readouterr().err
    assert main(["approve", str(action_id), "--as", "vera"]) == 1  # a viewer
    assert "approver role" in capsys.readouterr().err
    assert repo.list_approvals(action_id) == []


def test_reject_json_and_a_vote_on_a_decided_request_fails(
        repo: Repository, capsys: pytest.CaptureFixture[str]) -> None:
    _people(repo)
    action_id = _awaiting(repo)
    assert main(["reject", str(action_id), "--as", "bob", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["state"], out["rejected_by"]) == ("awaiting_approval", ["bob"])
    repo.transition(action_id, S.REJECTED, expect=[S.AWAITING_APPROVAL])  # the daemon's part
    assert main(["approve", str(action_id), "--as", "alice"]) == 1
    assert "not awaiting approval" in capsys.readouterr().err


def test_actions_and_incidents_print_the_documented_json(
        repo: Repository, capsys: pytest.CaptureFixture[str]) -> None:
    action_id = _awaiting(repo)
    now = datetime.now(UTC)
    repo.open_incident(Incident(host_id="cli-host", playbook="listen-backlog-too-small",
                                scope="host", first_seen=now, last_seen=now))
    assert main(["actions", "--json"]) == 0
    [row] = json.loads(capsys.readouterr().out)
    assert row["id"] == action_id and row["state"] == "awaiting_approval"
    assert row["action"] == {"kind": "sysctl_write", "scope": "host",
                             "key": "net.core.somaxconn", "value": "8192"}
    assert {"decision", "original", "applied", "created_at", "updated_at",
            "verification", "host_id", "incident_id"} <= set(row)
    assert [t["state"] for t in row["transitions"]] == ["proposed", "awaiting_approval"]
    assert all(t["at"] for t in row["transitions"])
    assert main(["incidents", "--json", "--status", "open"]) == 0
    [inc] = json.loads(capsys.readouterr().out)
    assert inc["playbook"] == "listen-backlog-too-small" and inc["diagnosis"] is None
    assert "evidence" not in inc


def test_incidents_json_shows_the_llms_second_opinion_beside_the_diagnosis(
        repo: Repository, capsys: pytest.CaptureFixture[str]) -> None:
    now = datetime.now(UTC)
    incident = repo.open_incident(Incident(host_id="cli-host", playbook="hung-task",
                                           scope="host", first_seen=now, last_seen=now))
    assert incident.id is not None
    repo.set_diagnosis(incident.id, Diagnosis(
        root_cause="hung-task", confidence=0.7,
        second_opinion=Opinion(root_cause="nfs-server-unreachable", confidence=0.6,
                               explanation="the task waits on NFS", model="m")))
    assert main(["incidents", "--json"]) == 0
    [inc] = json.loads(capsys.readouterr().out)
    assert inc["diagnosis"]["root_cause"] == "hung-task"
    assert inc["diagnosis"]["second_opinion"] == {
        "root_cause": "nfs-server-unreachable", "confidence": 0.6,
        "explanation": "the task waits on NFS", "agrees": False, "model": "m", "failure": None}


def test_rollback_of_an_unknown_or_unapplied_action_fails_cleanly(
        repo: Repository, capsys: pytest.CaptureFixture[str]) -> None:
    action_id = _awaiting(repo)
    assert main(["rollback", str(action_id)]) == 1
    assert "nothing to roll back" in capsys.readouterr().err
    assert main(["rollback", "--all"]) == 0
    assert main(["persist", "999"]) == 1


def test_cli_vote_uses_the_shared_rules_ttl_and_policy_quorum(
        repo: Repository, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    _people(repo)
    action_id = _awaiting(repo)
    monkeypatch.setenv("HEALER_APPROVAL_TTL_SECONDS", "0.001")
    assert main(["approve", str(action_id), "--as", "alice"]) == 1  # lapsed, as on the web
    assert "expired" in capsys.readouterr().err
    assert repo.list_approvals(action_id) == []
