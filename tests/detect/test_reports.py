"""Multi-line kernel reports are one event; a line or report opens exactly one incident."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from healer.detect import Detector, IncidentTracker, MemorySink, UnknownPath
from healer.models import KmsgRecord, Sample
from playbooks.loader import load_library
from playbooks.noise import load_noise
from tests.detect.fakes import FakeWindow

HEADER = "python3 invoked oom-killer: gfp_mask=0x100cca(GFP_HIGHUSER_MOVABLE), order=0, " \
         "oom_score_adj=0"
MEMINFO = ["Mem-Info:", "active_anon:1954339 inactive_anon:12 isolated_anon:0",
           "Tasks state (memory values in pages):",
           "[   1234]     0  1234  2097152  1954000 15900672        0             0 python3"]
GLOBAL_SUMMARY = "oom-kill:constraint=CONSTRAINT_NONE,nodemask=(null),cpuset=/,mems_allowed=0," \
                 "global_oom,task_memcg=/user.slice/user-1000.slice,task=python3,pid=1234,uid=1000"
GLOBAL_KILL = "Out of memory: Killed process 1234 (python3) total-vm:8388608kB, " \
              "anon-rss:7816000kB, file-rss:0kB, shmem-rss:0kB, UID:1000 pgtables:15528kB " \
              "oom_score_adj:0"
REAPER = "oom_reaper: reaped process 1234 (python3), now anon-rss:0kB, file-rss:0kB, " \
         "shmem-rss:0kB"
MEMCG_SUMMARY = "oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=/,mems_allowed=0," \
                "oom_memcg=/kubepods/burstable/pod42,task_memcg=/kubepods/burstable/pod42/c1," \
                "task=java,pid=777,uid=0"
MEMCG_KILL = "Memory cgroup out of memory: Killed process 777 (java) total-vm:4000000kB, " \
             "anon-rss:1000000kB, file-rss:0kB, shmem-rss:0kB, UID:0 pgtables:3000kB " \
             "oom_score_adj:-997"
# 3.x/4.x: the decision line, then the kill line
OLD_GLOBAL = ["Out of memory: Kill process 2222 (mysqld) score 901 or sacrifice child",
              "Killed process 2222 (mysqld) total-vm:4404480kB, anon-rss:3556564kB, "
              "file-rss:0kB, shmem-rss:0kB"]
OLD_MEMCG = ["Task in /docker/abc killed as a result of limit of /docker/abc",
             "memory: usage 524288kB, limit 524288kB, failcnt 1302",
             "Memory cgroup out of memory: Kill process 3333 (node) score 1003 or sacrifice "
             "child",
             "Killed process 3333 (node) total-vm:1200000kB, anon-rss:520000kB, file-rss:0kB"]


class Feed:
    """Feeds lines to a detector with the unknown path, cycle by cycle, into a tracker."""

    def __init__(self) -> None:
        self.detector = Detector(load_library(), unknown=UnknownPath(load_noise()))
        self.sink = MemorySink()
        self.now = 1000.0
        self.tracker = IncidentTracker("h1", clock=lambda: self.now, sink=self.sink)
        self.window = FakeWindow()
        self.seq = 0
        self.us = 5_000_000_000

    def cycle(self, lines: Sequence[str | tuple[int, str]] = (), at: float | None = None,
              gap_us: int = 1000) -> None:
        self.now = at if at is not None else self.now + 1.0
        records = []
        for line in lines:
            level, text = line if isinstance(line, tuple) else (4, line)
            self.seq += 1
            self.us += gap_us
            records.append(KmsgRecord(seq=self.seq, priority=level, ts_us=self.us, message=text))
        sample = Sample(ts=self.now, metrics={}, kmsg=tuple(records))
        self.window.append(sample)
        self.tracker.apply(self.detector.observe(self.window, sample))

    def quiet(self, seconds: float = 3.0) -> None:
        self.cycle((), at=self.now + seconds)

    @property
    def opened(self) -> list[tuple[str, str, int]]:
        return [(i.playbook, i.scope, i.count) for i in self.sink.incidents]


def test_an_oom_report_assembled_across_cycles_is_one_incident() -> None:
    feed = Feed()
    feed.cycle([HEADER, *MEMINFO[:2]])
    assert feed.opened == []  # the report is still being printed
    feed.cycle([*MEMINFO[2:], GLOBAL_SUMMARY, (3, GLOBAL_KILL)])
    assert feed.opened == [("memory-pressure-oom", "host", 1)]
    feed.cycle([(6, REAPER)])
    feed.quiet()
    assert feed.opened == [("memory-pressure-oom", "host", 1)]  # the reaper line adds nothing
    assert feed.sink.incidents[0].evidence.captures["process"] == "python3"


def test_a_memcg_report_is_scoped_by_the_cgroup_its_summary_names() -> None:
    feed = Feed()
    feed.cycle([HEADER.replace("python3", "java"), *MEMINFO, MEMCG_SUMMARY, (3, MEMCG_KILL)])
    assert feed.opened == [("cgroup-memory-limit-too-low", "cgroup:/kubepods/burstable/pod42", 1)]


def test_the_header_alone_opens_after_two_seconds_of_silence() -> None:
    feed = Feed()
    feed.cycle([HEADER])
    feed.cycle([], at=feed.now + 1.5)
    assert feed.opened == []
    feed.cycle([], at=feed.now + 1.0)  # 2.5 s since the header
    assert feed.opened == [("memory-pressure-oom", "host", 1)]


@pytest.mark.parametrize("kill", [GLOBAL_KILL, OLD_GLOBAL[0]])
def test_a_kill_line_alone_is_enough(kill: str) -> None:
    feed = Feed()
    feed.cycle([(3, kill)])
    feed.quiet()
    assert feed.opened == [("memory-pressure-oom", "host", 1)]


def test_old_kernels_decision_and_kill_lines_are_one_report() -> None:
    feed = Feed()
    feed.cycle([HEADER, *MEMINFO, *((3, line) for line in OLD_GLOBAL)])
    feed.quiet()
    assert feed.opened == [("memory-pressure-oom", "host", 1)]


def test_an_old_memcg_report_is_the_cgroups_not_a_global_oom() -> None:
    feed = Feed()
    feed.cycle([HEADER, *((3, line) for line in OLD_MEMCG)])
    feed.quiet()
    assert feed.opened == [("cgroup-memory-limit-too-low", "cgroup:/docker/abc", 1)]


@pytest.mark.parametrize("line", [*MEMINFO, REAPER, GLOBAL_SUMMARY, MEMCG_SUMMARY,
                                  OLD_GLOBAL[1],  # the bare kill of old kernels: whose?
                                  "memory: usage 102400kB, limit 102400kB, failcnt 57",
                                  "      Not tainted 5.15.0-91-generic #101-Ubuntu",
                                  "#PF: supervisor read access in kernel mode",
                                  "Kernel Offset: 0x1c000000 from 0xffffffff81000000",
                                  "rcu: \trcu_sched kthread starved for 2101 jiffies!",
                                  " ? panic+0x10b/0x2e0"])
def test_a_continuation_line_alone_opens_nothing(line: str) -> None:
    feed = Feed()
    for level in (1, 3, 4):
        feed.cycle([(level, line)])
    feed.quiet()
    assert feed.opened == []


def test_more_than_two_seconds_between_lines_splits_a_report() -> None:
    together, apart = Feed(), Feed()
    together.cycle([HEADER, (3, GLOBAL_KILL)], gap_us=1_500_000)
    apart.cycle([HEADER, (3, GLOBAL_KILL)], gap_us=2_500_000)
    for feed in (together, apart):
        feed.quiet()
    assert together.opened == [("memory-pressure-oom", "host", 1)]
    assert apart.opened == [("memory-pressure-oom", "host", 2)]  # two reports, one incident


def test_an_err_line_inside_an_open_report_is_its_continuation_not_unclassified() -> None:
    feed = Feed()
    feed.cycle([(0, "watchdog: BUG: soft lockup - CPU#2 stuck for 22s! [kworker/2:1:99]"),
                (3, "mydrv 0000:00:05.0: ring 3 stalled, head 0x10 tail 0x2f"),
                "Modules linked in: mydrv"])
    feed.quiet()
    assert feed.opened == [("soft-lockup", "host", 1)]
    feed.cycle([(3, "mydrv 0000:00:05.0: ring 3 stalled, head 0x10 tail 0x2f")])
    assert [i.playbook for i in feed.sink.incidents] == ["soft-lockup", "unclassified"]


@pytest.mark.parametrize(("line", "playbook"), [
    ("watchdog: BUG: soft lockup - CPU#3 stuck for 23s! [stress:999]", "soft-lockup"),
    ("NMI watchdog: BUG: soft lockup - CPU#0 stuck for 22s! [java:4242]", "soft-lockup"),
    ("BUG: soft lockup detected on CPU#1!", "soft-lockup"),
    ("BUG: scheduling while atomic: swapper/0/0/0x00000100", "kernel-oops"),
    ("Memory cgroup out of memory: Killed process 5 (x) total-vm:1kB",
     "cgroup-memory-limit-too-low"),
    ("NVRM: Xid (PCI:0000:3b:00): 13, pid=1, name=x, Graphics Exception", "gpu-xid-app-fault"),
    ("NVRM: Xid (PCI:0000:3b:00): 154, GPU recovery action changed from 0x0 (None) to 0x1 "
     "(GPU Reset Required)", "gpu-xid-other"),
    ("NVRM: Xid (PCI:0000:3b:00): 149, pid=1, name=x, NETIR link event", "gpu-xid-nvlink"),
    ("traps: node[1234] general protection fault ip:55d5 sp:7ffc error:0 in node[55d5+1000]",
     "segfault-storm"),
    ("general protection fault, probably for non-canonical address 0xdead000000000100: 0000 "
     "[#1] SMP PTI", "kernel-oops"),
])
def test_overlapping_playbooks_are_settled_by_priority_one_incident(line: str,
                                                                    playbook: str) -> None:
    feed = Feed()
    feed.cycle([(0, line)])
    feed.quiet()
    assert [i.playbook for i in feed.sink.incidents] == [playbook]


def test_an_oops_report_with_its_panic_is_one_incident() -> None:
    feed = Feed()
    feed.cycle([(1, "BUG: kernel NULL pointer dereference, address: 0000000000000008"),
                (1, "#PF: supervisor read access in kernel mode"),
                "Oops: 0000 [#1] SMP PTI", "Call Trace:", " ? panic+0x10b/0x2e0",
                "---[ end trace 0000000000000000 ]---"])
    feed.cycle([(0, "Kernel panic - not syncing: Fatal exception"),
                (0, "Kernel Offset: 0x1c000000 from 0xffffffff81000000"),
                (0, "---[ end Kernel panic - not syncing: Fatal exception ]---")])
    feed.quiet()
    assert feed.opened == [("kernel-oops", "host", 1)]


def test_one_report_per_device_and_partitions_belong_to_their_disk() -> None:
    feed = Feed()
    feed.cycle([(3, "blk_update_request: I/O error, dev sdb, sector 2048 op 0x0:(READ) "
                    "flags 0x0 phys_seg 1 prio class 0"),
                (3, "Buffer I/O error on dev sdb1, logical block 0, async page read"),
                (3, "I/O error, dev sdc, sector 4096 op 0x1:(WRITE) flags 0x800 phys_seg 1 "
                    "prio class 2")])
    assert sorted((i.playbook, i.subject, i.count) for i in feed.sink.incidents) == [
        ("block-io-error", "sdb", 2), ("block-io-error", "sdc", 1)]
