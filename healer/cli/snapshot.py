"""``healer snapshot [--json]``: one reading of this host, as a table or one JSON object.

CPU percentages need two readings, so it samples twice 0.1 s apart. The kernel
log is read from the daemon's cursor without moving it (read-only).
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from healer.cli.common import print_json, settings_from_args
from healer.models import KmsgRecord, Sample
from healer.monitor.kmsg import KmsgCollector
from healer.monitor.registry import Monitor, build_collectors

RECENT_KMSG = 20


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``snapshot`` command."""
    p = subparsers.add_parser("snapshot", help="take one reading of this host and print it")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def take_snapshot(monitor: Monitor, gap: float = 0.1) -> tuple[Sample, list[KmsgRecord]]:
    """Two readings ``gap`` seconds apart; returns the second and every kmsg record read."""
    first = monitor.sample()
    time.sleep(gap)
    second = monitor.sample()
    return second, [*first.kmsg, *second.kmsg]


def snapshot_dict(sample: Sample, kmsg: list[KmsgRecord], monitor: Monitor) -> dict[str, Any]:
    """The JSON shape: ``{"metrics": {...}, "gpus": [...], "kmsg": {...}}``."""
    kc = next((c for c in monitor.collectors if isinstance(c, KmsgCollector)), None)
    return {
        "ts": sample.ts,
        "metrics": dict(sorted(sample.metrics.items())),
        "gpus": [g.model_dump(mode="json") for g in sample.gpus],
        "kmsg": {
            "source": kc.source_spec if kc else "none",
            "lines": kc.lines_total if kc else 0,
            "lost": kc.lost_total if kc else 0,
            "malformed": kc.malformed_total if kc else 0,
            "recent": [r.model_dump(mode="json") for r in kmsg[-RECENT_KMSG:]],
        },
        "collector_errors": list(sample.collector_errors),
    }


def _print_table(snap: dict[str, Any]) -> None:
    metrics: dict[str, float] = snap["metrics"]
    width = max((len(k) for k in metrics), default=10)
    for name, value in metrics.items():
        shown = f"{value:.0f}" if value == int(value) and abs(value) < 1e15 else f"{value:.3f}"
        print(f"{name:<{width}}  {shown:>18}")
    for g in snap["gpus"]:
        state = "ok" if g["ok"] else "UNKNOWN"
        print(f"gpu {g['index']}: {g['name']} {g['pci_bus_id']} {state} "
              f"throttle={','.join(g['throttle_reasons']) or '-'}")
    k = snap["kmsg"]
    print(f"kmsg ({k['source']}): {k['lines']} new lines, {k['lost']} lost, "
          f"{k['malformed']} malformed")
    if snap["collector_errors"]:
        print(f"collector errors: {', '.join(snap['collector_errors'])}")


def run(args: argparse.Namespace) -> int:
    """Take the snapshot and print it; exit 1 if any collector failed."""
    settings = settings_from_args(args)
    monitor = Monitor(build_collectors(settings, kmsg_persist=False, processes=False))
    try:
        sample, kmsg = take_snapshot(monitor)
    finally:
        monitor.close()
    snap = snapshot_dict(sample, kmsg, monitor)
    if args.json:
        print_json(snap)
    else:
        _print_table(snap)
    return 1 if sample.collector_errors else 0
