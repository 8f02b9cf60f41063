"""prlimit and nice on a child process this test spawns."""

from __future__ import annotations

import resource
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from guardrails.actions import ProcessNice, ProcessRlimit
from guardrails.decision import Decision
from healer.act.process import NiceActuator, RlimitActuator
from healer.errors import ActuatorError
from healer.models import ActionRecord

from .conftest import ROOT

ALLOW = Decision(verdict="allow")


def record(action: ProcessRlimit | ProcessNice, original: str) -> ActionRecord:
    now = datetime.now(UTC)
    return ActionRecord(host_id="h", action=action, decision=ALLOW, original=original,
                        created_at=now, updated_at=now)


@pytest.fixture
def child() -> Iterator[int]:
    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (64, 4096))

    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"],
                            preexec_fn=limit)
    try:
        yield proc.pid
    finally:
        proc.kill()
        proc.wait()


def test_soft_nofile_raised_up_to_hard_and_restored(child: int) -> None:
    act = RlimitActuator()
    action = ProcessRlimit(pid=child, resource="nofile", soft=1024, scope=f"pid:{child}")
    assert act.read(action) == "64"
    assert act.facts(action) == {"hard_limit": 4096.0}
    assert act.apply(action, ALLOW) == act.apply(action, ALLOW) == "1024"
    assert resource.prlimit(child, resource.RLIMIT_NOFILE) == (1024, 4096)  # hard unchanged
    assert act.restore(record(action, "64")) == "64"
    assert resource.prlimit(child, resource.RLIMIT_NOFILE) == (64, 4096)


def test_soft_above_hard_fails_and_changes_nothing(child: int) -> None:
    act = RlimitActuator()
    action = ProcessRlimit(pid=child, resource="nofile", soft=100000, scope=f"pid:{child}")
    with pytest.raises(ActuatorError):
        act.apply(action, ALLOW)
    assert resource.prlimit(child, resource.RLIMIT_NOFILE) == (64, 4096)


def test_unlimited_round_trips(child: int) -> None:
    act = RlimitActuator()
    action = ProcessRlimit(pid=child, resource="core", soft=0, scope=f"pid:{child}")
    original = act.read(action)
    assert original is not None
    act.apply(action, ALLOW)
    assert act.restore(record(action, original)) == original


@pytest.mark.skipif(not ROOT, reason="needs root: lowering nice back needs CAP_SYS_NICE")
def test_nice_applied_and_restored(child: int) -> None:
    act = NiceActuator()
    action = ProcessNice(pid=child, nice=10, scope=f"pid:{child}")
    assert act.read(action) == "0"
    assert act.apply(action, ALLOW) == "10"
    assert act.restore(record(action, "0")) == "0"


def test_gone_process_reads_as_none_and_pid_scope_must_match(child: int) -> None:
    act = RlimitActuator()
    assert act.read(ProcessRlimit(pid=4194304, resource="nofile", soft=1)) is None
    with pytest.raises(ActuatorError, match="pid scope"):
        act.read(ProcessRlimit(pid=child, resource="nofile", soft=1, scope="pid:1"))
