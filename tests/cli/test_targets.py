"""``healer target list|resume``: a paused target resumed from the shell, audited."""

from __future__ import annotations

import json

import pytest

from healer.act.engine import LOCAL_ADMIN
from healer.cli.main import main
from healer.store.repository import Repository

TARGET = "sysctl_write:netns:chaos-1:net.core.somaxconn"


def test_resume_lists_then_resumes_a_paused_target(repo: Repository,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    repo.pause_target(TARGET, "admin drift")
    assert main(["target", "list", "--json"]) == 0
    [row] = json.loads(capsys.readouterr().out)
    assert (row["target"], row["reason"]) == (TARGET, "admin drift")
    assert main(["target", "resume", TARGET]) == 0
    assert TARGET in capsys.readouterr().out
    assert repo.paused_targets() == set()
    last = repo.list_audit(subject=TARGET)[0]
    assert (last.actor, last.event) == (LOCAL_ADMIN, "target.resumed")


def test_resuming_a_target_that_is_not_paused_is_one_line_and_exit_1(
        repo: Repository, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["target", "resume", TARGET]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is not paused" in err
    assert main(["target"]) == 2  # no subcommand: usage
