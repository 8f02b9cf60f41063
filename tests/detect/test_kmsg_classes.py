"""Every kernel-log class, fed as recorded /dev/kmsg lines, opens exactly one incident."""

from __future__ import annotations

import pytest

from healer.detect import Detector, IncidentTracker, MemorySink
from healer.models import GpuState, Sample
from playbooks.loader import load_library
from tests.detect.fakes import FakeWindow, fixture_records

NETNS = "netns:chaos-1"
GPU0 = GpuState(index=0, pci_bus_id="00000000:3B:00.0")

CASES = [  # fixture, playbook id, scope, count
    ("syn-backlog-overflow.kmsg", "syn-backlog-overflow", NETNS, 1),
    ("conntrack-table-full.kmsg", "conntrack-table-full", NETNS, 2),
    ("file-table-exhausted.kmsg", "file-table-exhausted", "host", 1),
    ("pids-limit-too-low.kmsg", "pids-limit-too-low", "cgroup:/chaos/pids", 2),
    ("hung-task.kmsg", "hung-task", "host", 1),
    ("soft-lockup.kmsg", "soft-lockup", "host", 1),
    ("memory-pressure-oom.kmsg", "memory-pressure-oom", "host", 1),
    ("cgroup-memory-limit-too-low.kmsg", "cgroup-memory-limit-too-low", "cgroup:/chaos/oom", 2),
    ("gpu-xid-app-fault.kmsg", "gpu-xid-app-fault", "gpu:0", 2),
    ("gpu-xid-ecc-contained.kmsg", "gpu-xid-ecc-contained", "gpu:0", 2),
    ("gpu-xid-fell-off-bus.kmsg", "gpu-xid-fell-off-bus", "gpu:0", 1),
    ("gpu-xid-ecc-uncontained.kmsg", "gpu-xid-ecc-uncontained", "gpu:0", 1),
    ("gpu-xid-row-remap.kmsg", "gpu-xid-row-remap", "gpu:0", 1),
    ("gpu-xid-driver-firmware.kmsg", "gpu-xid-driver-firmware", "gpu:0", 2),
    ("gpu-xid-nvlink.kmsg", "gpu-xid-nvlink", "gpu:0", 1),
    ("gpu-xid-hw-other.kmsg", "gpu-xid-hw-other", "gpu:0", 1),
]


def run_fixture(name: str, gpus: tuple[GpuState, ...] = (GPU0,)) -> MemorySink:
    library = load_library()
    detector = Detector(library, net_scope=NETNS)
    sink = MemorySink()
    tracker = IncidentTracker("h1", clock=lambda: 1000.0, sink=sink)
    window = FakeWindow()
    records = fixture_records(name)
    # Two cycles: the lines arrive split across samples, as they would at 1 Hz; a third,
    # quiet one 3 s later: a report with no closing line closes after 2 s of silence.
    half = len(records) // 2
    for ts, batch in ((999.0, records[:half]), (1000.0, records[half:]), (1003.0, [])):
        sample = Sample(ts=ts, metrics={}, kmsg=tuple(batch), gpus=gpus)
        window.append(sample)
        tracker.apply(detector.observe(window, sample))
    return sink


@pytest.mark.parametrize(("fixture", "playbook", "scope", "count"), CASES,
                         ids=[c[1] for c in CASES])
def test_kmsg_class_opens_exactly_one_incident(fixture: str, playbook: str, scope: str,
                                               count: int) -> None:
    sink = run_fixture(fixture)
    assert [(i.playbook, i.scope, i.count) for i in sink.incidents] == [(playbook, scope, count)]
    assert sink.incidents[0].evidence.kmsg, "matching lines are attached as evidence"


def test_every_kmsg_playbook_has_a_fixture() -> None:
    kmsg_ids = {pb.id for pb in load_library()
                if any(s.kind == "kmsg" for s in pb.detect.signals)}
    assert kmsg_ids <= {c[1] for c in CASES}


def test_noise_lines_open_nothing() -> None:
    assert run_fixture("noise.kmsg").incidents == []


def test_xid_on_an_unknown_pci_bus_is_scoped_to_the_host() -> None:
    sink = run_fixture("gpu-xid-fell-off-bus.kmsg", gpus=())
    assert [(i.playbook, i.scope) for i in sink.incidents] == [("gpu-xid-fell-off-bus", "host")]


def test_xid_severity_comes_from_the_xid_table() -> None:
    sink = run_fixture("gpu-xid-fell-off-bus.kmsg")
    assert sink.incidents[0].severity == "critical"


def test_memcg_oom_takes_the_cgroup_and_limit_from_the_preceding_lines() -> None:
    incident = run_fixture("cgroup-memory-limit-too-low.kmsg").incidents[0]
    assert incident.evidence.captures["cgroup"] == "/chaos/oom"
    assert incident.evidence.captures["limit_kb"] == "102400"
    assert incident.evidence.captures["process"] == "stress"


def test_one_memcg_oom_kill_alone_is_not_a_too_low_limit() -> None:
    records = fixture_records("cgroup-memory-limit-too-low.kmsg")[:10]
    detector = Detector(load_library())
    window = FakeWindow()
    sample = Sample(ts=1.0, metrics={}, kmsg=tuple(records))
    window.append(sample)
    assert detector.observe(window, sample) == []


class _CountingWindow(FakeWindow):
    def __init__(self) -> None:
        super().__init__()
        self.scanned: list[str] = []

    def series(self, name: str, seconds: float) -> list[tuple[float, float]]:
        self.scanned.append(name)
        return super().series(name, seconds)


def test_an_all_playbook_with_a_silent_kernel_signal_skips_its_trend_scan() -> None:
    library = [pb for pb in load_library() if pb.id == "cgroup-memory-limit-too-low"]
    detector = Detector(library)
    window = _CountingWindow()
    for ts in range(20):  # a flat cgroup, no OOM lines: the trend alone cannot fire it
        sample = Sample(ts=float(ts), metrics={"cgroup./a.memory.current_bytes": 1e6})
        window.append(sample)
        assert detector.observe(window, sample) == []
    assert window.scanned == []
    records = fixture_records("cgroup-memory-limit-too-low.kmsg")
    sample = Sample(ts=20.0, metrics={"cgroup./chaos/oom.memory.current_bytes": 1e8},
                    kmsg=tuple(records))
    window.append(sample)
    assert [e.kind for e in detector.observe(window, sample)] == ["fire"]
    assert window.scanned  # with the kernel lines in, the trend is read
