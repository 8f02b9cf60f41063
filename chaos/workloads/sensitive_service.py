"""A service that regresses when net.core.somaxconn moves (for bad-fix-rollback).

It stands for a real dependency on a tunable: it reads somaxconn in its own network
namespace every 50 ms, reports latency 5 ms while the value is the one it started with and
500 ms otherwise, and reports backlog pressure while the runner's flag file exists. It logs
each change and restore with a timestamp, so the runner can time the rollback exactly.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from chaos.workloads.common import append_event, write_prom

SOMAXCONN = Path("/proc/sys/net/core/somaxconn")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--textfile-dir", required=True)
    ap.add_argument("--events", required=True)
    ap.add_argument("--pressure-flag", required=True)
    a = ap.parse_args()
    out, events, flag = Path(a.textfile_dir), Path(a.events), Path(a.pressure_flag)
    original = SOMAXCONN.read_text().strip()
    changed = False
    last_write = 0.0
    while True:
        value = SOMAXCONN.read_text().strip()
        if (value != original) != changed:
            changed = not changed
            append_event(events, event="changed" if changed else "restored", value=value)
        if time.monotonic() - last_write >= 0.2:
            write_prom(
                out,
                "chaos_service",
                {
                    "chaos_service_latency_seconds": 0.5 if changed else 0.005,
                    "chaos_service_pressure": 1.0 if flag.exists() else 0.0,
                },
            )
            last_write = time.monotonic()
        time.sleep(0.05)


if __name__ == "__main__":
    main()
