"""A GPU job on the simulated backend: it registers itself as a process of the device,
asks for SMs and memory, and reports its own throughput as a Prometheus textfile.

Throughput is what the job would see on real hardware: its SM share over its demand,
times 0.7 while the GPU is in HW thermal slowdown (the simulator's clock drop), times
power_limit/demand when the power cap binds. The simulated backend writes the shares and
temperature back into the state file every time healer samples it.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import sys
import time
from pathlib import Path
from typing import Any

from chaos import gpusim
from chaos.workloads.common import write_prom


def throughput(dev: dict[str, Any], proc: dict[str, Any]) -> float:
    """The job's throughput as a fraction of what it would get alone on a cool GPU."""
    demand = float(proc.get("sm_demand_percent") or 1.0)
    share = float(proc.get("sm_util_percent", demand))
    ratio = min(1.0, share / demand)
    if float(dev.get("temperature_c", 0)) >= float(dev.get("slowdown_temp_c", 1e9)):
        ratio *= 0.7
    watts = float(dev.get("power_demand_w", 0) or 0)
    if watts > 0:
        ratio *= min(1.0, float(dev.get("power_limit_w", watts)) / watts)
    return ratio


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--state", required=True)
    ap.add_argument("--index", type=int, default=0)
    ap.add_argument("--name", default="train")
    ap.add_argument("--sm-demand", type=float, default=90.0)
    ap.add_argument("--mem-mb", type=int, default=4096)
    ap.add_argument("--textfile-dir", default=None)
    a = ap.parse_args()
    path, pid = Path(a.state), os.getpid()
    metric = "chaos_gpu_" + re.sub(r"[^a-z0-9]", "_", a.name.lower()) + "_throughput_ratio"
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    gpusim.upsert_process(
        path,
        a.index,
        {
            "pid": pid,
            "name": a.name,
            "used_memory_bytes": a.mem_mb * 2**20,
            "sm_demand_percent": a.sm_demand,
        },
    )
    try:
        while True:
            dev = gpusim.device(path, a.index)
            me = next((p for p in dev.get("processes", []) if p["pid"] == pid), None)
            if me is None:  # dropped by someone: register again
                me = gpusim.upsert_process(
                    path,
                    a.index,
                    {
                        "pid": pid,
                        "name": a.name,
                        "used_memory_bytes": a.mem_mb * 2**20,
                        "sm_demand_percent": a.sm_demand,
                    },
                )
            if a.textfile_dir:
                write_prom(
                    Path(a.textfile_dir), f"chaos_gpu_{a.name}", {metric: throughput(dev, me)}
                )
            time.sleep(0.5)
    finally:
        gpusim.remove_process(path, a.index, pid)


if __name__ == "__main__":
    main()
