"""Detection throughput through the full shipped playbook library.

Prints two figures (medians of repeats, one core):
  - kernel-log lines per second per core, for a realistic mix (about 1% matching lines);
    target >= 200,000;
  - the time to process one 10,000-line burst in a single cycle, and whether every line was
    counted (nothing dropped); target <= 200 ms.

Run: .venv/bin/python bench/detect_throughput.py [--repeats N]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from healer.detect import Detector
from healer.models import KmsgRecord, ProcessInfo, Sample
from playbooks.loader import load_library

NOISE = [
    "audit: type=1400 audit({t}.123:{n}): apparmor=\"DENIED\" operation=\"open\" "
    "profile=\"snap.lxd.daemon\" name=\"/proc/{n}/mounts\" pid={n} comm=\"lxd\"",
    "EXT4-fs (nvme0n1p{d}): mounted filesystem with ordered data mode. Quota mode: none.",
    "br0: port {d}(veth{n}) entered forwarding state",
    "IPv6: ADDRCONF(NETDEV_CHANGE): veth{n}: link becomes ready",
    "docker0: port {d}(veth{n}) entered blocking state",
    "usb 1-{d}: new high-speed USB device number {n} using xhci_hcd",
    "nvidia-uvm: Loaded the UVM driver, major device number {n}.",
    "NVRM: loading NVIDIA UNIX x86_64 Kernel Module  535.129.03",
    "systemd-journald[{n}]: Data hash table of /var/log/journal/x.journal has a fill level",
    "perf: interrupt took too long ({n} > {t}), lowering kernel.perf_event_max_sample_rate",
    "[UFW BLOCK] IN=eth0 OUT= MAC=00:16:3e SRC=10.0.{d}.{n} DST=10.0.0.1 LEN=60 PROTO=TCP",
    "TCP: eth0: Driver has suspect GRO implementation, TCP performance may be compromised.",
]
MATCHING = [
    "cgroup: fork rejected by pids controller in /chaos/pids",
    "TCP: request_sock_TCP: Possible SYN flooding on port [::]:{n}. Sending cookies.",
    "NVRM: Xid (PCI:0000:3b:00): 13, pid={n}, name=python3, Graphics SM Warp Exception",
    "nf_conntrack: nf_conntrack: table full, dropping packet",
]
STORM = "watchdog: BUG: soft lockup - CPU#3 stuck for 23s! [stress:999]"


class _Window:
    """The smallest WindowView: detectors here read only the kernel log."""

    def latest(self) -> Sample | None:
        return None

    def series(self, name: str, seconds: float) -> list[tuple[float, float]]:
        return []

    def values(self, name: str, seconds: float) -> list[float]:
        return []

    def rate(self, name: str, seconds: float) -> float | None:
        return None

    def names(self) -> Iterable[str]:
        return ()

    def processes(self) -> Sequence[ProcessInfo] | None:
        return None


def mixed_lines(n: int, rng: random.Random, match_ratio: float = 0.01) -> list[KmsgRecord]:
    out = []
    for i in range(n):
        pool = MATCHING if rng.random() < match_ratio else NOISE
        text = rng.choice(pool).format(t=rng.randint(1, 10**9), n=rng.randint(1, 99999),
                                       d=rng.randint(0, 9))
        out.append(KmsgRecord(seq=i, priority=6, ts_us=i * 10, message=text))
    return out


def lines_per_second(repeats: int) -> float:
    rng = random.Random(7)
    batches = [mixed_lines(5000, rng) for _ in range(8)]
    window = _Window()
    rates = []
    for r in range(repeats):
        detector = Detector(load_library())
        started = time.perf_counter()
        for i, batch in enumerate(batches):
            detector.observe(window, Sample(ts=float(r * 100 + i), metrics={}, kmsg=tuple(batch)))
        rates.append(sum(map(len, batches)) / (time.perf_counter() - started))
    return statistics.median(rates)


def burst(repeats: int) -> tuple[float, bool]:
    storm = tuple(KmsgRecord(seq=i, priority=0, ts_us=i, message=STORM) for i in range(10_000))
    window = _Window()
    times, complete = [], True
    for r in range(repeats):
        detector = Detector(load_library())
        started = time.perf_counter()
        events = detector.observe(window, Sample(ts=float(r), metrics={}, kmsg=storm))
        times.append(time.perf_counter() - started)
        complete &= sum(e.count for e in events if e.playbook_id == "soft-lockup") == 10_000
    return statistics.median(times), complete


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    lps = lines_per_second(args.repeats)
    burst_s, complete = burst(args.repeats)
    print(f"kmsg lines/second/core (mixed, full library): {lps:,.0f}  (target >= 200,000)")
    print(f"10,000-line burst: {burst_s * 1000:.1f} ms, every line counted: {complete}"
          "  (target <= 200 ms)")
    return 0 if lps >= 200_000 and burst_s <= 0.2 and complete else 1


if __name__ == "__main__":
    sys.exit(main())
