"""pids-limit-too-low re-detects from the pids.events counter, not only the one kernel line.

kernel/cgroup/pids.c logs "fork rejected by pids controller in <path>" only when the
cgroup's events counter goes 0 -> 1, so after the first line only pids.events "max" tells
that forks are still refused. The series here go through the real cgroup collector over a
copy of the recorded v1 tree (tests/fixtures/cgroup-v1), rewriting pids.events each cycle.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from healer.detect import Detector, IncidentTracker, MemorySink
from healer.detect.incidents import IncidentChange
from healer.models import Sample
from healer.monitor.cgroups import CgroupCollector, CgroupTree
from playbooks.loader import load_library
from tests.detect.fakes import FakeWindow, fixture_records

V1 = Path(__file__).parent.parent / "fixtures" / "cgroup-v1"
FORKER = "/healer-chaos-1/forker"
SCOPE = f"cgroup:{FORKER}"
PB = "pids-limit-too-low"
Refused = Callable[[int], int]  # second -> the forker's pids.events "max"


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    shutil.copytree(V1, tmp_path / "t")
    return tmp_path / "t"


def _run(tree: Path, refused: Refused, seconds: int, kmsg_at: int | None = None
         ) -> tuple[list[tuple[int, str, str]], MemorySink]:
    """Feed collector samples at 1 Hz; returns (second, change kind, scope) for our playbook."""
    events = tree / "sys/fs/cgroup/pids" / FORKER.lstrip("/") / "pids.events"
    collector = CgroupCollector(CgroupTree(tree / "proc", tree / "sys"), clock=lambda: 0.0)
    detector = Detector(load_library())
    sink, now = MemorySink(), [0.0]
    tracker = IncidentTracker("h1", clock=lambda: now[0], sink=sink)
    window = FakeWindow()
    line = fixture_records("pids-limit-too-low.kmsg")[0]
    forker_line = line.model_copy(update={
        "message": f"cgroup: fork rejected by pids controller in {FORKER}"})
    changes: list[tuple[int, str, str]] = []
    for t in range(seconds):
        now[0] = float(t)
        events.write_text(f"max {refused(t)}\n")
        kmsg = (forker_line,) if t == kmsg_at else ()
        sample = Sample(ts=float(t), metrics=collector.collect().metrics, kmsg=kmsg)
        window.append(sample)
        found: list[IncidentChange] = tracker.apply(detector.observe(window, sample))
        changes += [(t, c.kind, c.incident.scope) for c in found if c.incident.playbook == PB]
    return changes, sink


def _burst(start: int, stop: int, per_second: int = 12, base: int = 0) -> Refused:
    """Forks refused at ``per_second`` between ``start`` and ``stop``, flat otherwise."""
    return lambda t: base + per_second * (min(max(t, start), stop) - start)


def test_the_collector_names_the_counter_the_playbook_watches(tree: Path) -> None:
    metrics = CgroupCollector(CgroupTree(tree / "proc", tree / "sys")).collect().metrics
    assert metrics[f"cgroup.{FORKER}.pids.events_max_total"] == 7.0  # the recorded "max 7"


def test_refused_forks_without_any_kernel_line_open_an_incident_in_that_cgroup(
        tree: Path) -> None:
    changes, sink = _run(tree, _burst(3, 30), 12)
    assert changes[0] == (4, "opened", SCOPE)  # the second point of the burst gives a rate
    assert {s for _, _, s in changes} == {SCOPE}  # the other cgroups' flat counters: nothing
    [incident] = sink.incidents
    series = incident.evidence.metrics[f"cgroup.{FORKER}.pids.events_max_total"]
    assert series[-2:] == [(3.0, 0.0), (4.0, 12.0)]


def test_a_flat_nonzero_counter_opens_nothing(tree: Path) -> None:
    changes, _ = _run(tree, lambda t: 40, 20)  # refused long ago; none now
    assert changes == []


def test_line_and_counter_are_one_incident_and_a_second_burst_reopens_it(tree: Path) -> None:
    # First burst: the kernel logs its one line. It is fixed at t=40; forks are refused
    # again from t=150, and the kernel says nothing this time.
    def refused(t: int) -> int:
        return _burst(5, 40)(t) + _burst(150, 170)(t)

    changes, sink = _run(tree, refused, 175, kmsg_at=5)
    kinds = [(k, s) for _, k, s in changes if k != "updated"]
    assert kinds == [("opened", SCOPE), ("resolved", SCOPE), ("reopened", SCOPE)]
    opened, resolved, reopened = (t for t, k, _ in changes if k != "updated")
    assert opened == 5 and 100 < resolved < 150 and 150 <= reopened <= 152
    assert len(sink.incidents) == 1  # the same incident, reopened
