"""A confined detector sees only its sandbox's processes; per-cgroup CPU; sustained trends."""

from __future__ import annotations

from collections.abc import Callable

from healer.detect import Detector, IncidentTracker, MemorySink
from healer.detect.signals import MetricIndex, eval_trend
from healer.models import Incident, ProcessInfo, Sample
from playbooks.loader import load_library
from playbooks.schema import Trend
from tests.detect.fakes import FakeWindow

MB = 1024 * 1024
CG = "/healer-chaos-1"
MEM = "cgroup./healer-chaos-1/app.memory.current_bytes"


def run(make: Callable[[float], Sample], seconds: float, step: float = 1.0,
        cgroup_root: str | None = None) -> list[tuple[float, Incident]]:
    """Feed samples every ``step`` s; returns (time opened, incident) for each new one."""
    detector = Detector(load_library(), cgroup_root=cgroup_root)
    sink = MemorySink()
    now = [0.0]
    tracker = IncidentTracker("h1", clock=lambda: now[0], sink=sink)
    window, opened, seen = FakeWindow(), [], 0
    for i in range(int(seconds / step)):
        now[0] = t = i * step
        sample = make(t)
        window.append(sample)
        tracker.apply(detector.observe(window, sample))
        opened += [(t, inc) for inc in sink.incidents[seen:]]
        seen = len(sink.incidents)
    return opened


def _contention(procs: tuple[ProcessInfo, ...]) -> Callable[[float], Sample]:
    return lambda t: Sample(ts=t, metrics={"psi.cpu.some_avg10": 70.0}, processes=procs)


HOST_HOG = ProcessInfo(pid=10, name="other", cpu_percent=190.0, cgroup="/process_api/x")
WORKERS = tuple(ProcessInfo(pid=100 + i, name="hog", cpu_percent=45.0, cgroup=f"{CG}/batch")
                for i in range(4))
PROBE = ProcessInfo(pid=200, name="probe", cpu_percent=5.0, cgroup=f"{CG}/latency")
PREFIX = ProcessInfo(pid=300, name="x", cpu_percent=400.0, cgroup="/healer-chaos-10/batch")


def scopes(opened: list[tuple[float, Incident]], playbook: str) -> list[str]:
    return [i.scope for _, i in opened if i.playbook == playbook]


def test_confined_cpu_contention_scopes_the_sandbox_hog_not_the_hosts() -> None:
    procs = (HOST_HOG, PREFIX, *WORKERS, PROBE)
    opened = run(_contention(procs), 10, cgroup_root=CG)
    assert scopes(opened, "cpu-contention") == [f"cgroup:{CG}/batch"]
    evidence_pids = {p.pid for _, i in opened for p in i.evidence.processes}
    assert evidence_pids <= {p.pid for p in (*WORKERS, PROBE)}  # nothing from outside


def test_unconfined_cpu_contention_takes_the_top_cgroup_of_the_host() -> None:
    opened = run(_contention((HOST_HOG, *WORKERS, PROBE)), 10)
    assert scopes(opened, "cpu-contention") == ["cgroup:/process_api/x"]


def test_a_cgroup_of_many_workers_is_one_hog() -> None:
    # No worker reaches 80 % alone; together they hold 1.8 CPUs.
    opened = run(_contention((*WORKERS, PROBE)), 10, cgroup_root=CG)
    assert scopes(opened, "cpu-contention") == [f"cgroup:{CG}/batch"]
    quiet = run(_contention((WORKERS[0], PROBE)), 10, cgroup_root=CG)
    assert scopes(quiet, "cpu-contention") == []


def test_processes_without_a_cgroup_are_outside_a_confined_detector() -> None:
    lost = ProcessInfo(pid=5, name="gone", cpu_percent=300.0, cgroup=None)
    assert scopes(run(_contention((lost,)), 10, cgroup_root=CG), "cpu-contention") == []


# --- memory-leak: growth must persist past a start-up ramp ------------------------------------

def _startup(t: float) -> float:
    """A service starting in a fresh cgroup at t=5: 60 MB in 4 s, then a noisy plateau."""
    if t < 5:
        return 0.0
    ramp = min(t - 5, 4.0) * 15 * MB
    return ramp + (0.2 * MB if int(t * 2) % 2 else 0.0)


def test_a_start_up_ramp_in_a_fresh_cgroup_is_not_a_leak() -> None:
    def make(t: float) -> Sample:
        metrics = {MEM: _startup(t)} if t >= 5 else {}  # the cgroup appears at t=5
        return Sample(ts=t, metrics=metrics)
    assert scopes(run(make, 90, step=0.5), "memory-leak") == []


def test_a_slow_start_up_that_levels_off_within_10_s_is_not_a_leak() -> None:
    def make(t: float) -> Sample:
        return Sample(ts=t, metrics={MEM: 10 * MB + min(t, 9.0) * 3 * MB})
    assert scopes(run(make, 90, step=0.5), "memory-leak") == []


def test_a_leak_fires_about_20_s_after_it_starts() -> None:
    start = 30.0  # the cgroup exists, empty, before the leaker starts (the chaos scenario)

    def make(t: float) -> Sample:
        return Sample(ts=t, metrics={MEM: 8 * MB * max(0.0, t - start)})
    opened = [(t, i) for t, i in run(make, 70, step=0.5) if i.playbook == "memory-leak"]
    assert [i.scope for _, i in opened] == [f"cgroup:{CG}/app"]
    assert 15.0 <= opened[0][0] - start <= 22.0


def test_segments_are_what_tell_the_ramp_from_a_leak() -> None:
    """The same ramp with one segment (the old rule) fires; with four it does not."""
    window = FakeWindow()
    for i in range(23):  # the cgroup appears at t=5; 0.5 s samples up to t=11
        t = i * 0.5
        window.append(Sample(ts=t, metrics={MEM: _startup(t)} if t >= 5 else {}))
    index = MetricIndex()
    index.refresh(window.names())
    base = {"kind": "trend", "metric": "cgroup.{cgroup}.memory.current_bytes", "seconds": 20,
            "min_points": 10, "slope_gt": 524288, "rising_fraction": 0.8}
    one = eval_trend(Trend.model_validate(base), window, index, now=11.0)
    four = eval_trend(Trend.model_validate(base | {"segments": 4}), window, index, now=11.0)
    assert [h.ok for h in one] == [True]
    assert [h.ok for h in four] == [False]


def test_a_leak_in_a_child_is_not_echoed_by_its_parent() -> None:
    """Memory is charged to every ancestor: the parent's series grows as much as the child's."""
    def make(t: float) -> Sample:
        leak = 8 * MB * t
        return Sample(ts=t, metrics={MEM: leak,
                                     "cgroup./healer-chaos-1.memory.current_bytes": MB + leak,
                                     "cgroup./healer-chaos-10.memory.current_bytes": leak})
    opened = run(make, 40, step=0.5)
    assert sorted(scopes(opened, "memory-leak")) == [f"cgroup:{CG}/app",
                                                     "cgroup:/healer-chaos-10"]


def test_a_confined_detector_ignores_kernel_lines_about_cgroups_outside_its_root() -> None:
    from healer.models import KmsgRecord

    def rejected(seq: int, path: str) -> KmsgRecord:
        return KmsgRecord(seq=seq, priority=6, ts_us=seq,
                          message=f"cgroup: fork rejected by pids controller in {path}")

    lines = (rejected(1, "/healer-chaos-10/forker"), rejected(2, "/other/job"),
             rejected(3, f"{CG}/forker"))
    opened = run(lambda t: Sample(ts=t, metrics={}, kmsg=lines if t == 0 else ()), 2,
                 cgroup_root=CG)
    assert scopes(opened, "pids-limit-too-low") == [f"cgroup:{CG}/forker"]
    unconfined = run(lambda t: Sample(ts=t, metrics={}, kmsg=lines if t == 0 else ()), 2)
    assert len(scopes(unconfined, "pids-limit-too-low")) == 3
