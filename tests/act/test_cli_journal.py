"""``healer incidents|actions|approve|reject|rollback|persist`` against a real journal."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from guardrails.actions import SysctlWrite
from guardrails.decision import Decision
from healer.cli.main import main
from healer.models import ActionRecord, ActionState, Incident
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


def test_approve_moves_the_proposal_to_approved_and_audits_the_admin(
        repo: Repository, capsys: pytest.CaptureFixture[str]) -> None:
    action_id = _awaiting(repo)
    assert main(["approve", str(action_id), "--comment", "looks right"]) == 0
    assert repo.get_action(action_id).state == S.APPROVED  # type: ignore[union-attr]
    assert [v.user for v in repo.list_approvals(action_id)] == ["local-admin"]
    actors = {a.actor for a in repo.list_audit(subject=f"action:{action_id}")}
    assert "local-admin" in actors
    assert "re-checks the guard" in capsys.readouterr().out


def test_quorum_vote_is_recorded_without_approving(repo: Repository) -> None:
    action_id = _awaiting(repo, needed=2)
    assert main(["approve", str(action_id)]) == 0
    assert repo.get_action(action_id).state == S.AWAITING_APPROVAL  # type: ignore[union-attr]
    assert len(repo.list_approvals(action_id)) == 1


def test_reject_and_a_second_decision_fails(repo: Repository,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    action_id = _awaiting(repo)
    assert main(["reject", str(action_id), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["state"] == "rejected"
    assert main(["approve", str(action_id)]) == 1
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
    assert main(["incidents", "--json", "--status", "open"]) == 0
    [inc] = json.loads(capsys.readouterr().out)
    assert inc["playbook"] == "listen-backlog-too-small" and inc["diagnosis"] is None
    assert "evidence" not in inc


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
    from healer.act import approvals

    assert approvals.cast_vote.__module__ == "healer.act.approvals"
    import web.approvals

    assert web.approvals.cast_vote is approvals.cast_vote  # one implementation
    action_id = _awaiting(repo)
    monkeypatch.setenv("HEALER_APPROVAL_TTL_SECONDS", "0.001")
    assert main(["approve", str(action_id)]) == 1  # the request lapsed, as on the web
    assert "expired" in capsys.readouterr().err
    assert repo.list_approvals(action_id) == []
