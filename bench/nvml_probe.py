"""Read-only check of the NVML collector against a real GPU.

Reads every device through healer's ``NvmlBackend`` and ``GpuCollector``, compares the
readings with ``nvidia-smi --query-gpu`` taken in the same second, and times one full
device read (median of repeats). It calls no NVML setter: it never changes a GPU setting.

    python bench/nvml_probe.py [--repeats 50] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from healer.host.gpu.nvml import NvmlBackend
from healer.monitor.gpu import GpuCollector

# nvidia-smi field -> (healer metric, scale to healer's unit, tolerance)
SMI_FIELDS = {
    "temperature.gpu": ("temperature_celsius", 1.0, 3.0),
    "power.limit": ("power_limit_watts", 1.0, 1.0),
    "power.min_limit": ("power_limit_min_watts", 1.0, 1.0),
    "power.max_limit": ("power_limit_max_watts", 1.0, 1.0),
    "memory.total": ("memory_total_bytes", 1024 * 1024, 64 * 1024 * 1024),
    "memory.used": ("memory_used_bytes", 1024 * 1024, 512 * 1024 * 1024),
    "clocks.sm": ("sm_clock_mhz", 1.0, 200.0),
    "clocks.mem": ("mem_clock_mhz", 1.0, 200.0),
    "utilization.gpu": ("utilization_percent", 1.0, 20.0),
}


def smi() -> list[dict[str, float | None]]:
    out = subprocess.run(
        ["nvidia-smi", f"--query-gpu={','.join(SMI_FIELDS)}", "--format=csv,noheader,nounits"],
        capture_output=True, text=True, timeout=20, check=True,
    ).stdout
    rows = []
    for line in out.strip().splitlines():
        vals: dict[str, float | None] = {}
        for field, raw in zip(SMI_FIELDS, line.split(","), strict=True):
            try:
                vals[field] = float(raw.strip())
            except ValueError:
                vals[field] = None  # "[N/A]"
        rows.append(vals)
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=50)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    backend = NvmlBackend(timeout=2.0)
    collector = GpuCollector(backend)
    part = collector.collect()
    ref = smi()
    report: dict[str, object] = {"devices": [g.model_dump(mode="json") for g in part.gpus],
                                 "metrics": part.metrics, "nvidia_smi": ref, "checks": []}
    checks: list[dict[str, object]] = []
    for gpu, row in zip(part.gpus, ref, strict=False):
        for field, (name, scale, tol) in SMI_FIELDS.items():
            want, got = row.get(field), gpu.metrics.get(name)
            ok = want is None or (got is not None and abs(got - want * scale) <= tol)
            checks.append({"gpu": gpu.index, "metric": name, "healer": got,
                           "nvidia_smi": None if want is None else want * scale, "ok": ok})
    report["checks"] = checks

    times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        collector.collect()
        times.append(time.perf_counter() - t0)
    report["collect_median_ms"] = statistics.median(times) * 1000
    report["collect_p95_ms"] = sorted(times)[int(0.95 * (len(times) - 1))] * 1000

    print(f"{'gpu':>3} {'metric':<26} {'healer':>16} {'nvidia-smi':>16}  ok")
    for c in checks:
        healer_v, smi_v = str(c["healer"]), str(c["nvidia_smi"])
        print(f"{c['gpu']:>3} {c['metric']!s:<26} {healer_v:>16} {smi_v:>16}  {c['ok']}")
    print(f"devices={len(part.gpus)} throttle={[g.throttle_reasons for g in part.gpus]}")
    print(f"collect median={report['collect_median_ms']:.2f} ms "
          f"p95={report['collect_p95_ms']:.2f} ms")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, default=str))
    return 0 if all(c["ok"] for c in checks) and part.gpus else 1


if __name__ == "__main__":
    sys.exit(main())
