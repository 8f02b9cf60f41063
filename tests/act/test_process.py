"""prlimit and nice on a child process this test spawns."""

from __future__ import annotations

import resource
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from guardrails.actions import ProcessNice, ProcessRlimit
from guardrails.decision import Decision
from healer.act.process import NiceActuator, RlimitActuator, start_time
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


# -- (pid, start time): a reused pid is another process ----------------------------------

def test_start_time_is_read_after_the_last_parenthesis(tmp_path: Path) -> None:
    # comm is attacker-chosen and may hold ") " itself (proc(5), /proc/<pid>/stat).
    fields = ["S", "1"] + ["0"] * 17 + ["987654"] + ["0"] * 20
    (tmp_path / "42").mkdir()
    (tmp_path / "42" / "stat").write_text("42 (evil) S 1 2 3) " + " ".join(fields) + "\n")
    assert start_time(42, tmp_path) == 987654
    assert start_time(43, tmp_path) is None


@pytest.mark.parametrize("actuator", [RlimitActuator(), NiceActuator()], ids=["rlimit", "nice"])
def test_a_change_pinned_to_one_process_never_reaches_the_next_owner_of_its_pid(
        child: int, actuator: RlimitActuator | NiceActuator) -> None:
    action: ProcessRlimit | ProcessNice = (
        ProcessRlimit(pid=child, resource="nofile", soft=1024, scope=f"pid:{child}")
        if isinstance(actuator, RlimitActuator) else ProcessNice(pid=child, nice=5))
    pinned = actuator.pin(action)
    assert pinned.start_time == start_time(child)
    before = actuator.read(pinned)
    # The same pid with another start time is exactly what pid reuse looks like.
    other = pinned.model_copy(update={"start_time": (pinned.start_time or 0) + 1})
    assert actuator.read(other) is None
    with pytest.raises(ActuatorError, match="process is gone"):
        actuator.apply(other, ALLOW)
    with pytest.raises(ActuatorError, match="process is gone"):
        actuator.restore(record(other, "0"))
    with pytest.raises(ActuatorError, match="process is gone"):
        actuator.pin(other)
    assert actuator.read(pinned) == before  # the live process was never touched


def test_the_engine_pins_process_changes_when_they_are_proposed(
        child: int, tmp_path: Path) -> None:
    from guardrails import load_policy
    from healer.act.base import ActuatorRegistry
    from healer.act.engine import ChangeEngine
    from healer.models import Proposal
    from healer.store.engine import migrate, open_engine
    from healer.store.repository import Repository

    db = open_engine(f"sqlite:///{tmp_path / 'j.db'}")
    migrate(db)
    engine = ChangeEngine(Repository(db, "h"), ActuatorRegistry([RlimitActuator()]),
                          load_policy(), root=True)
    action = ProcessRlimit(pid=child, resource="nofile", soft=1024, scope=f"pid:{child}")
    record = engine.propose(None, Proposal(action=action, provenance="playbook",
                                           in_playbook=True), None)
    assert isinstance(record.action, ProcessRlimit)
    assert record.action.start_time == start_time(child)
    stale = ProcessRlimit(pid=child, resource="core", soft=0, scope=f"pid:{child}", start_time=1)
    refused = engine.propose(None, Proposal(action=stale, provenance="llm"), None)
    assert refused.state.value == "denied" and "E-actuator" in refused.decision.rules
