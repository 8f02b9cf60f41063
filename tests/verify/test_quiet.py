"""quiet_kmsg and per-process verify metrics, from the shipped playbooks and recorded lines."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from guardrails.actions import CgroupLimit, ProcessRlimit
from healer.models import Evidence, Incident, KmsgRecord, ProcessInfo, Summary
from healer.verify import VerifySpec, evaluate
from healer.verify.labels import labels_for, spec_for
from healer.verify.process import ProcessSeries
from healer.verify.spec import spec_from_playbook
from playbooks.loader import load_library
from playbooks.schema import Verify

FIXTURES = Path(__file__).parent / "fixtures"
T0 = 1_750_000_000.0  # the change was applied at T0


def _lines(name: str, first_seq: int = 1) -> list[KmsgRecord]:
    text = (FIXTURES / name).read_text().splitlines()
    return [KmsgRecord(seq=first_seq + i, priority=3, ts_us=i, message=m) for i, m in
            enumerate(text)]


class Kmsg:
    """The window's ``kmsg(seconds)``: records by arrival time, relative to ``now``."""

    def __init__(self) -> None:
        self.now = T0
        self.records: list[tuple[float, KmsgRecord]] = []

    def arrive(self, at: float, records: list[KmsgRecord]) -> None:
        self.records += [(at, r) for r in records]

    def __call__(self, seconds: float) -> list[KmsgRecord]:
        return [r for ts, r in self.records if ts >= self.now - seconds]


def _incident(playbook: str, scope: str, **captures: str) -> Incident:
    now = datetime.now(UTC)
    return Incident(host_id="h", playbook=playbook, scope=scope, first_seen=now, last_seen=now,
                    evidence=Evidence(captures=captures))


def _spec(playbook_id: str, incident: Incident, action: object) -> VerifySpec:
    playbook = load_library().get(playbook_id)
    spec = spec_for(playbook, incident, action)  # type: ignore[arg-type]
    assert spec is not None
    return spec


def _no_series(name: str, since: float, until: float) -> list[tuple[float, float]]:
    return []


@pytest.fixture
def pids_spec() -> VerifySpec:
    """A quiet-only spec over the pids playbook's kmsg signal. (The shipped playbook verifies
    on the pids.events counter instead: the kernel logs that line once per cgroup.)"""
    incident = _incident("pids-limit-too-low", "cgroup:/healer-chaos-1/fork",
                         cgroup="/healer-chaos-1/fork")
    action = CgroupLimit(scope="cgroup:/healer-chaos-1/fork", path="/healer-chaos-1/fork",
                         knob="pids.max", value="64")
    playbook = load_library().get("pids-limit-too-low")
    assert playbook is not None
    spec = spec_from_playbook(Verify(quiet_kmsg=True), labels_for(incident, action),
                              playbook.detect.signals)
    assert spec is not None
    return spec


def test_quiet_only_playbook_resolves_without_a_metric(pids_spec: VerifySpec) -> None:
    assert pids_spec.metric is None and pids_spec.metrics == ()
    [pattern] = pids_spec.quiet_kmsg
    assert pattern.scope == {"cgroup": "/healer-chaos-1/fork"}
    assert VerifySpec.model_validate(pids_spec.model_dump(mode="json")) == pids_spec


def test_new_fork_rejection_in_scope_is_insufficient_and_out_of_scope_is_not(
        pids_spec: VerifySpec) -> None:
    kmsg = Kmsg()
    other, ours = _lines("kmsg-pids.txt")
    kmsg.arrive(T0 - 5, [ours])  # before the change: the incident itself, never counted
    kmsg.arrive(T0 + 4, [other])  # another cgroup
    kmsg.now = T0 + 10
    result = evaluate(pids_spec, {}, _no_series, T0, kmsg.now, kmsg=kmsg)
    assert result.verdict is None and result.numbers["kmsg.new_matches"] == 0
    kmsg.arrive(T0 + 11, [ours.model_copy(update={"seq": 99})])  # a child of our cgroup
    kmsg.now = T0 + 12
    result = evaluate(pids_spec, {}, _no_series, T0, kmsg.now, kmsg=kmsg)
    assert result.verdict == "insufficient"  # the symptom goes on; it is no worse
    assert result.numbers["kmsg.new_matches"] == 1 and "seq 99" in result.reasons[0]


def test_a_full_quiet_window_passes_and_no_source_never_passes(pids_spec: VerifySpec) -> None:
    kmsg = Kmsg()
    kmsg.now = T0 + pids_spec.settle_seconds + pids_spec.window_seconds
    result = evaluate(pids_spec, {}, _no_series, T0, kmsg.now, kmsg=kmsg)
    assert result.verdict == "fixed", result.reasons
    assert "no matching kernel-log line" in result.reasons[0]
    blind = evaluate(pids_spec, {}, _no_series, T0, kmsg.now, kmsg=None)
    assert blind.verdict is None  # cannot tell: wait, and roll back at the deadline


def test_memcg_oom_counts_only_in_the_cgroup_its_context_line_names() -> None:
    incident = _incident("cgroup-memory-limit-too-low", "cgroup:/healer-chaos-1/oom",
                         cgroup="/healer-chaos-1/oom")
    action = CgroupLimit(scope="cgroup:/healer-chaos-1/oom", path="/healer-chaos-1/oom",
                         knob="memory.max", value="157286400")
    spec = _spec("cgroup-memory-limit-too-low", incident, action)
    # one pattern per kill-line format (4.19+ "Killed process", older "Kill process ...")
    assert spec.metric == "cgroup./healer-chaos-1/oom.memory.oom_kill_total"
    assert len(spec.quiet_kmsg) == 2
    lines = _lines("kmsg-memcg-oom.txt")
    kmsg = Kmsg()
    kmsg.arrive(T0 + 5, lines[:4])  # an OOM kill in /batch/other
    kmsg.now = T0 + 6
    assert evaluate(spec, {}, _no_series, T0, kmsg.now, kmsg=kmsg).verdict is None
    kmsg.arrive(T0 + 7, lines[4:])  # and one in ours
    kmsg.now = T0 + 8
    result = evaluate(spec, {}, _no_series, T0, kmsg.now, kmsg=kmsg)
    assert result.verdict == "insufficient" and result.numbers["kmsg.new_matches"] == 1


def test_fd_limit_verifies_on_the_pid_of_the_action() -> None:
    incident = _incident("fd-limit-too-low", "pid:4242", pid="4242")
    action = ProcessRlimit(scope="pid:4242", pid=4242, resource="nofile", soft=1024)
    spec = _spec("fd-limit-too-low", incident, action)
    assert spec.metric == "process.4242.fd_usage_ratio"
    assert (spec.direction, spec.threshold, spec.min_samples) == ("below", 0.8, 2)


def _scan(fds: int, soft: int) -> tuple[ProcessInfo, ...]:
    return (ProcessInfo(pid=1, name="init", num_fds=10, nofile_soft=1024),
            ProcessInfo(pid=4242, name="worker", num_fds=fds, nofile_soft=soft))


def test_process_series_takes_one_point_per_scan_and_judges_below() -> None:
    incident = _incident("fd-limit-too-low", "pid:4242", pid="4242")
    spec = _spec("fd-limit-too-low", incident,
                 ProcessRlimit(scope="pid:4242", pid=4242, resource="nofile", soft=1024))
    assert spec.metric is not None
    procs = ProcessSeries()
    before = _scan(63, 64)
    procs.observe(spec.metric, before, T0)
    procs.observe(spec.metric, before, T0 + 1)  # the same scan again: no new point
    assert procs.series(spec.metric, 0, T0 + 5) == [(T0, 63 / 64)]
    for t in (T0 + 10, T0 + 20):
        procs.observe(spec.metric, _scan(100, 1024), t)
    baseline = {spec.metric: Summary(median=63 / 64, mad=0.0, n=1.0, min=0.98, max=0.98)}
    now = T0 + spec.settle_seconds + spec.window_seconds
    result = evaluate(spec, baseline, procs.series, T0, now)
    assert result.verdict == "fixed", result.reasons
    assert result.numbers["target.after_median"] == pytest.approx(100 / 1024)
    procs.observe(spec.metric, _scan(900, 1024), now + 10)  # filling up the new limit again
    procs.observe(spec.metric, _scan(950, 1024), now + 15)
    assert evaluate(spec, baseline, procs.series, T0, now + 15).verdict != "fixed"


def test_quiet_matching_is_linear_time_on_hostile_lines() -> None:
    """A pattern that would backtrack forever in Python's re (the scope ReDoS of the
    hardening review) over a hostile record: RE2 answers at once."""
    import time

    from healer.verify.quiet import KmsgPattern, matching

    pattern = KmsgPattern(contains="fork rejected",
                          regex=r"fork rejected by pids controller in "
                                r"(?P<cgroup>(?:[A-Za-z0-9_.@:-]+/?)*)$")
    hostile = "cgroup: fork rejected by pids controller in /user.slice/" + "a.b-c" * 2000 + "+"
    records = [KmsgRecord(seq=i, priority=6, ts_us=i, message=hostile) for i in range(20)]
    started = time.perf_counter()
    assert matching(pattern, records) == []
    assert time.perf_counter() - started < 0.5
