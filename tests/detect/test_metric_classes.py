"""Metric, process and GPU classes open one incident each, with the right scope."""

from __future__ import annotations

from collections.abc import Callable

from healer.detect import Detector, IncidentTracker, MemorySink
from healer.models import GpuProcess, GpuState, Incident, ProcessInfo, Sample
from playbooks.loader import load_library
from tests.detect.fakes import FakeWindow, fixture_records

MB = 1024 * 1024
Make = Callable[[float], Sample]


def run(make: Make, seconds: int = 60, net_scope: str = "host") -> list[Incident]:
    detector = Detector(load_library(), net_scope=net_scope)
    sink = MemorySink()
    now = [0.0]
    tracker = IncidentTracker("h1", clock=lambda: now[0], sink=sink)
    window = FakeWindow()
    for t in range(seconds):
        now[0] = float(t)
        sample = make(float(t))
        window.append(sample)
        tracker.apply(detector.observe(window, sample))
    return sink.incidents


def ids(incidents: list[Incident]) -> list[tuple[str, str]]:
    return [(i.playbook, i.scope) for i in incidents]


def test_listen_overflow_rate_opens_listen_backlog_too_small_in_the_netns() -> None:
    def make(t: float) -> Sample:
        return Sample(ts=t, metrics={"net.tcp.listen_overflows_total": 50.0 * t,
                                     "net.tcp.listen_drops_total": 50.0 * t})
    assert ids(run(make, 10, net_scope="netns:chaos-1")) == [
        ("listen-backlog-too-small", "netns:chaos-1")]


def test_fd_near_soft_limit_opens_fd_limit_too_low_for_that_pid() -> None:
    procs = (ProcessInfo(pid=4242, name="fdhog", num_fds=60, nofile_soft=64, nofile_hard=4096),
             ProcessInfo(pid=1, name="init", num_fds=100, nofile_soft=65536, nofile_hard=65536))
    incidents = run(lambda t: Sample(ts=t, metrics={}, processes=procs), 5)
    assert ids(incidents) == [("fd-limit-too-low", "pid:4242")]
    assert incidents[0].evidence.processes[0].pid == 4242


def test_pid_count_near_pid_max_opens_pid_exhaustion() -> None:
    def make(t: float) -> Sample:
        return Sample(ts=t, metrics={"pids.count": 31000.0, "pids.max": 32768.0})
    assert ids(run(make, 15)) == [("pid-exhaustion", "host")]


def test_pid_exhaustion_waits_for_its_hold_time() -> None:
    def make(t: float) -> Sample:
        return Sample(ts=t, metrics={"pids.count": 31000.0, "pids.max": 32768.0})
    assert run(make, 10) == []  # for_seconds: 10 not yet reached at t=9


def test_file_nr_near_file_max_opens_file_table_exhausted() -> None:
    def make(t: float) -> Sample:
        return Sample(ts=t, metrics={"fs.file_nr.allocated": 95.0, "fs.file_nr.max": 100.0})
    assert ids(run(make, 15)) == [("file-table-exhausted", "host")]


def test_io_pressure_with_dirty_pages_opens_writeback_stall() -> None:
    def make(t: float) -> Sample:
        return Sample(ts=t, metrics={"psi.io.full_avg10": 45.0, "vmstat.nr_dirty": 400000.0})
    assert ids(run(make, 15)) == [("writeback-stall", "host")]


def test_cpu_pressure_with_a_hog_opens_cpu_contention_on_the_hogs_cgroup() -> None:
    procs = (ProcessInfo(pid=77, name="hog", cpu_percent=195.0, cgroup="/chaos/a"),
             ProcessInfo(pid=78, name="probe", cpu_percent=3.0, cgroup="/chaos/b"))

    def make(t: float) -> Sample:
        return Sample(ts=t, metrics={"psi.cpu.some_avg10": 70.0},
                      processes=procs if t % 10 == 0 else None)
    assert ids(run(make, 10)) == [("cpu-contention", "cgroup:/chaos/a")]


def test_hot_throttled_gpu_opens_gpu_thermal_throttling() -> None:
    gpu = GpuState(index=1, metrics={"temperature_celsius": 93.0, "power_limit_watts": 300.0},
                   throttle_reasons=("hw_thermal_slowdown",))
    incidents = run(lambda t: Sample(ts=t, metrics={"gpu.1.temperature_celsius": 93.0},
                                     gpus=(gpu,)), 5)
    assert ids(incidents) == [("gpu-thermal-throttling", "gpu:1")]
    assert incidents[0].evidence.gpus[0].index == 1


def test_growing_gpu_process_memory_opens_gpu_memory_leak() -> None:
    def make(t: float) -> Sample:
        procs = (GpuProcess(pid=900, used_memory_bytes=int(1000 * MB + 20 * MB * t)),
                 GpuProcess(pid=901, used_memory_bytes=500 * MB))
        return Sample(ts=t, metrics={}, gpus=(GpuState(index=0, processes=procs),))
    incidents = run(make, 20)
    assert ids(incidents) == [("gpu-memory-leak", "gpu:0")]
    assert incidents[0].evidence.captures["pid"] == "900"


def test_one_process_holding_the_sms_opens_gpu_unfair_sharing() -> None:
    procs = (GpuProcess(pid=500, sm_util_percent=98.0), GpuProcess(pid=501, sm_util_percent=1.0))
    incidents = run(lambda t: Sample(ts=t, metrics={}, gpus=(GpuState(index=0, processes=procs),)),
                    3)
    assert ids(incidents) == [("gpu-unfair-sharing", "gpu:0")]
    assert incidents[0].evidence.captures["pid"] == "500"


def test_double_bit_ecc_errors_open_gpu_ecc_dbe() -> None:
    def make(t: float) -> Sample:
        return Sample(ts=t, metrics={"gpu.0.ecc_volatile_uncorrected_total": 0.0 if t < 5 else 2.0})
    assert ids(run(make, 10)) == [("gpu-ecc-dbe", "gpu:0")]


def test_monotonic_cgroup_growth_is_a_memory_leak() -> None:
    def make(t: float) -> Sample:
        usage = 50 * MB + 2 * MB * t
        return Sample(ts=t, metrics={"cgroup./chaos/leak.memory.current_bytes": usage})
    assert ids(run(make, 30)) == [("memory-leak", "cgroup:/chaos/leak")]


def _oom_run(usage: Callable[[float], float]) -> list[tuple[str, str]]:
    records = fixture_records("cgroup-memory-limit-too-low.kmsg")

    def make(t: float) -> Sample:
        kmsg = tuple(records) if t == 29 else ()
        return Sample(ts=t, metrics={"cgroup./chaos/oom.memory.current_bytes": usage(t)},
                      kmsg=kmsg)
    return ids(run(make, 31))


def test_repeated_oom_at_a_plateau_is_a_too_low_limit_not_a_leak() -> None:
    sawtooth = _oom_run(lambda t: 100 * MB - (t % 3) * 30 * MB)
    assert sawtooth == [("cgroup-memory-limit-too-low", "cgroup:/chaos/oom")]


def test_repeated_oom_with_steady_growth_is_a_leak_not_a_too_low_limit() -> None:
    growth = _oom_run(lambda t: 20 * MB + 3 * MB * t)
    assert growth == [("memory-leak", "cgroup:/chaos/oom")]


def test_quiet_host_opens_nothing() -> None:
    def make(t: float) -> Sample:
        return Sample(ts=t, metrics={"psi.cpu.some_avg10": 1.0, "psi.io.full_avg10": 0.0,
                                     "net.tcp.listen_overflows_total": 7.0,
                                     "pids.count": 300.0, "pids.max": 32768.0},
                      gpus=(GpuState(index=0, metrics={"temperature_celsius": 40.0}),))
    assert run(make, 30) == []
