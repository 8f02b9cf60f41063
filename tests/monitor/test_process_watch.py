"""The process scan keeps watched pids (open incidents, in-flight actions) whatever their rank."""

from __future__ import annotations

import resource
import subprocess
import sys
from collections.abc import Iterator

import pytest

from healer.monitor.process import ProcessCollector, watch_processes
from healer.monitor.system import LoadCollector


def _raise_nofile() -> None:
    # A big soft limit makes the child's fd usage ~0 %: it never ranks by fd usage either.
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


@pytest.fixture
def idle_child() -> Iterator[int]:
    """A sleeping child: no CPU, little memory, a handful of fds."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"],
                            preexec_fn=_raise_nofile)
    try:
        yield proc.pid
    finally:
        proc.kill()
        proc.wait()


def _scan(c: ProcessCollector) -> dict[int, object]:
    part = c.collect()
    assert part.processes is not None
    return {p.pid: p for p in part.processes}


def test_a_watched_idle_pid_is_in_every_scan_and_an_unwatched_one_is_not(
        idle_child: int) -> None:
    now = [0.0]
    plain = ProcessCollector(top_n=1, interval=10, clock=lambda: now[0])
    assert idle_child not in _scan(plain)  # ranks nowhere near the top 1 of anything
    asked: list[int] = []

    def source() -> list[int]:
        asked.append(1)
        return [idle_child, 2**22 + 5]  # the second pid does not exist: skipped

    watched = ProcessCollector(top_n=1, interval=10, clock=lambda: now[0], watched_pids=source)
    for t in (0.0, 10.0):
        now[0] = t
        found = _scan(watched)
        assert idle_child in found and 2**22 + 5 not in found
        info = found[idle_child]
        assert info.cgroup and info.num_fds is not None  # enriched like the top ones
    assert len(asked) == 2  # asked once a scan, never in between
    now[0] = 15.0
    assert watched.collect().processes is None


def test_a_failing_watch_source_costs_the_watch_list_not_the_scan(idle_child: int) -> None:
    def broken() -> list[int]:
        raise RuntimeError("store unavailable")

    c = ProcessCollector(top_n=1, interval=10, watched_pids=broken)
    found = _scan(c)
    assert found and idle_child not in found


def test_watch_processes_wires_only_process_collectors(idle_child: int) -> None:
    c = ProcessCollector(top_n=1, interval=10)
    watch_processes([LoadCollector(), c], lambda: {idle_child})
    assert idle_child in _scan(c)
