"""The engine verifies on quiet kernel logs and on per-process metrics (real knobs)."""

from __future__ import annotations

import resource
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from guardrails import load_policy
from guardrails.actions import ProcessRlimit
from healer.act.base import ActuatorRegistry
from healer.act.engine import ChangeEngine
from healer.act.persist import DropIn
from healer.act.process import RlimitActuator
from healer.models import ActionState, Evidence, Incident, KmsgRecord, ProcessInfo, Proposal
from healer.store.repository import Repository
from healer.verify import KmsgPattern, VerifySpec
from playbooks.loader import load_library

from .conftest import Clock, Window, netns_sysctl
from .engine_kit import make_engine, somaxconn

S = ActionState
FORK = "cgroup: fork rejected by pids controller in /healer-chaos-1/fork"


class LogWindow(Window):
    """A window that also keeps kernel-log records and process scans, as MetricWindow does."""

    def __init__(self, clock: Clock) -> None:
        super().__init__()
        self.clock = clock
        self.records: list[tuple[float, KmsgRecord]] = []
        self.scan: tuple[ProcessInfo, ...] | None = None

    def log(self, message: str) -> None:
        seq = len(self.records) + 1
        self.records.append((self.clock.now.timestamp(),
                             KmsgRecord(seq=seq, priority=6, ts_us=seq, message=message)))

    def kmsg(self, seconds: float) -> list[KmsgRecord]:
        cutoff = self.clock.now.timestamp() - seconds
        return [r for ts, r in self.records if ts >= cutoff]

    def processes(self) -> tuple[ProcessInfo, ...] | None:
        return self.scan


def _fork_spec() -> VerifySpec:
    pattern = KmsgPattern(contains="fork rejected by pids controller in",
                          regex=r"fork rejected by pids controller in (?P<cgroup>/\S+)",
                          scope={"cgroup": "/healer-chaos-1/fork"})
    return VerifySpec(quiet_kmsg=(pattern,), window_seconds=5, settle_seconds=1)


def test_a_storm_of_symptom_lines_after_the_change_rolls_it_back_at_once(
        netns: str, repo: Repository, clock: Clock, tmp_path: Path) -> None:
    netns_sysctl(netns, "net.core.somaxconn", "128")
    window = LogWindow(clock)
    engine = make_engine(repo, clock, window, tmp_path)
    window.log(FORK)  # the line that opened the incident: 1 in the 5 s before the change
    engine.propose(None, somaxconn(netns, "512"), _fork_spec())
    [applied] = engine.step()
    assert applied.state == S.VERIFYING
    clock.advance(3)
    assert engine.step() == []  # quiet so far; the old line is not counted
    for _ in range(6):  # 6 lines in 2 s, where the rate before gives about 0.4: worse
        window.log(FORK)
    [rolled] = engine.step()
    assert rolled.state == S.ROLLED_BACK
    assert netns_sysctl(netns, "net.core.somaxconn") == "128" == rolled.original
    assert rolled.verification is not None and rolled.verification.result is not None
    assert rolled.verification.result.verdict == "regressed"
    assert rolled.verification.result.numbers["kmsg.new_matches"] == 6
    assert rolled.verification.kmsg_baseline == pytest.approx(1 / 5)
    assert "symptom worse than before" in str(rolled.verification.rollback_reason)


def test_a_symptom_that_goes_on_is_insufficient_and_a_change_that_cannot_step_times_out(
        netns: str, repo: Repository, clock: Clock, tmp_path: Path) -> None:
    netns_sysctl(netns, "net.core.somaxconn", "128")
    window = LogWindow(clock)
    engine = make_engine(repo, clock, window, tmp_path)
    spec = _fork_spec()
    engine.propose(None, somaxconn(netns, "512"), spec)  # no convergence: a one-off change
    [applied] = engine.step()
    assert applied.state == S.VERIFYING
    clock.advance(3)
    window.log(FORK)  # the symptom goes on, no worse: insufficient, but nothing to step
    assert engine.step() == []
    assert netns_sysctl(netns, "net.core.somaxconn") == "512"  # kept until its deadline
    clock.advance(spec.deadline)
    [rolled] = engine.step()
    assert rolled.state == S.ROLLED_BACK and rolled.verification is not None
    assert rolled.verification.result and rolled.verification.result.verdict == "insufficient"
    assert "timed out" in str(rolled.verification.rollback_reason)
    assert netns_sysctl(netns, "net.core.somaxconn") == "128"


@pytest.fixture
def worker() -> Iterator[int]:
    """A child process whose soft nofile limit is 64 (prlimit(2) on our own child)."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        hard = resource.prlimit(proc.pid, resource.RLIMIT_NOFILE)[1]
        if hard != resource.RLIM_INFINITY and hard < 1024:
            pytest.skip(f"hard nofile limit {hard} is below what the playbook raises to")
        resource.prlimit(proc.pid, resource.RLIMIT_NOFILE, (64, hard))
        yield proc.pid
    finally:
        proc.kill()
        proc.wait()


def _scan(pid: int, fds: int, soft: int) -> tuple[ProcessInfo, ...]:
    return (ProcessInfo(pid=pid, name="worker", num_fds=fds, nofile_soft=soft),)


def test_fd_limit_raise_verifies_on_the_process_fd_usage_ratio(
        worker: int, repo: Repository, clock: Clock, tmp_path: Path) -> None:
    window = LogWindow(clock)
    engine = ChangeEngine(repo, ActuatorRegistry([RlimitActuator()]), load_policy(),
                          window=window, clock=clock, root=True,
                          dropin=DropIn(tmp_path / "90-healer.conf"))
    now = datetime.now(UTC)
    incident = repo.open_incident(Incident(
        host_id=repo.host_id, playbook="fd-limit-too-low", scope=f"pid:{worker}",
        first_seen=now, last_seen=now, evidence=Evidence(captures={"pid": str(worker)})))
    action = ProcessRlimit(scope=f"pid:{worker}", pid=worker, resource="nofile", soft=1024)
    window.scan = _scan(worker, 63, 64)
    proposal = Proposal(action=action, provenance="playbook", in_playbook=True)
    record = engine.propose(incident, proposal, load_library().get("fd-limit-too-low"))
    assert record.state == S.APPROVED, record.decision
    [applied] = engine.step()
    assert (applied.original, applied.applied) == ("64", "1024")
    assert resource.prlimit(worker, resource.RLIMIT_NOFILE)[0] == 1024
    verified = None
    for second in range(1, 40):
        clock.advance(1)
        if second % 5 == 0:
            window.scan = _scan(worker, 100, 1024)  # a new scan every 5 s
        changed = engine.step()
        if changed:
            [verified] = changed
            break
    assert verified is not None and verified.state == S.VERIFIED, verified
    assert verified.verification and verified.verification.result
    numbers = verified.verification.result.numbers
    assert numbers["target.after_median"] == pytest.approx(100 / 1024)
    # One scan before the write shows the symptom once: too thin to say what "before" was.
    assert "target.baseline_median" not in numbers
