"""Every kernel-log class, fed as recorded /dev/kmsg lines, opens exactly one incident."""

from __future__ import annotations

import pytest

from healer.detect import Detector, IncidentTracker, MemorySink, UnknownPath
from healer.models import GpuState, Sample
from playbooks.loader import load_library
from playbooks.noise import load_noise
from tests.detect.fakes import FakeWindow, fixture_records

NETNS = "netns:chaos-1"
GPU0 = GpuState(index=0, pci_bus_id="00000000:3B:00.0")

CASES = [  # fixture, playbook id, scope, subject, count
    ("syn-backlog-overflow.kmsg", "syn-backlog-overflow", NETNS, "", 1),
    ("conntrack-table-full.kmsg", "conntrack-table-full", NETNS, "", 2),
    ("file-table-exhausted.kmsg", "file-table-exhausted", "host", "", 1),
    ("pids-limit-too-low.kmsg", "pids-limit-too-low", "cgroup:/chaos/pids", "", 2),
    ("hung-task.kmsg", "hung-task", "host", "", 1),
    ("soft-lockup.kmsg", "soft-lockup", "host", "", 1),
    ("memory-pressure-oom.kmsg", "memory-pressure-oom", "host", "", 1),
    ("cgroup-memory-limit-too-low.kmsg", "cgroup-memory-limit-too-low", "cgroup:/chaos/oom",
     "", 2),
    ("gpu-xid-app-fault.kmsg", "gpu-xid-app-fault", "gpu:0", "", 2),
    ("gpu-xid-ecc-contained.kmsg", "gpu-xid-ecc-contained", "gpu:0", "", 2),
    ("gpu-xid-fell-off-bus.kmsg", "gpu-xid-fell-off-bus", "gpu:0", "", 1),
    ("gpu-xid-ecc-uncontained.kmsg", "gpu-xid-ecc-uncontained", "gpu:0", "", 1),
    ("gpu-xid-row-remap.kmsg", "gpu-xid-row-remap", "gpu:0", "", 1),
    ("gpu-xid-driver-firmware.kmsg", "gpu-xid-driver-firmware", "gpu:0", "", 2),
    ("gpu-xid-nvlink.kmsg", "gpu-xid-nvlink", "gpu:0", "", 1),
    ("gpu-xid-hw-other.kmsg", "gpu-xid-hw-other", "gpu:0", "", 1),
    ("gpu-xid-other.kmsg", "gpu-xid-other", "gpu:0", "", 1),
    ("gpu-nvswitch-sxid.kmsg", "gpu-nvswitch-sxid", "host", "0000:88:00.0", 3),
    ("kernel-oops.kmsg", "kernel-oops", "host", "", 1),
    ("rcu-stall.kmsg", "rcu-stall", "host", "", 1),
    ("hard-lockup.kmsg", "hard-lockup", "host", "", 1),
    ("page-allocation-failure.kmsg", "page-allocation-failure", "host", "", 1),
    ("segfault-storm.kmsg", "segfault-storm", "host", "python3", 2),
    ("block-io-error.kmsg", "block-io-error", "host", "sdb", 2),
    ("filesystem-error.kmsg", "filesystem-error", "host", "sda1", 1),
    ("nvme-controller-error.kmsg", "nvme-controller-error", "host", "nvme0", 2),
    ("hw-corrected-errors.kmsg", "hw-corrected-errors", "host", "", 2),
    ("hw-uncorrected-error.kmsg", "hw-uncorrected-error", "host", "", 1),
    ("nic-link-down.kmsg", "nic-link-down", "host", "eth0", 1),
    ("nic-tx-timeout.kmsg", "nic-tx-timeout", "host", "enp3s0", 1),
]


def run_fixture(name: str, gpus: tuple[GpuState, ...] = (GPU0,)) -> MemorySink:
    library = load_library()
    detector = Detector(library, net_scope=NETNS, unknown=UnknownPath(load_noise()))
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


@pytest.mark.parametrize(("fixture", "playbook", "scope", "subject", "count"), CASES,
                         ids=[c[1] for c in CASES])
def test_kmsg_class_opens_exactly_one_incident(fixture: str, playbook: str, scope: str,
                                               subject: str, count: int) -> None:
    """Every line of the fixture is claimed or a report's continuation: nothing else opens
    (not even an unclassified incident for the report's err-level lines)."""
    sink = run_fixture(fixture)
    assert [(i.playbook, i.scope, i.subject, i.count) for i in sink.incidents] == [
        (playbook, scope, subject, count)]
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


def test_one_memcg_oom_report_opens_one_incident_scoped_by_its_memcg() -> None:
    records = fixture_records("cgroup-memory-limit-too-low.kmsg")[:10]  # the first report
    detector = Detector(load_library(), unknown=UnknownPath(load_noise()))
    window = FakeWindow()
    sample = Sample(ts=1.0, metrics={}, kmsg=tuple(records))
    window.append(sample)
    events = detector.observe(window, sample)
    assert [(e.kind, e.playbook_id, e.scope, e.count) for e in events] == [
        ("fire", "cgroup-memory-limit-too-low", "cgroup:/chaos/oom", 1)]


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
