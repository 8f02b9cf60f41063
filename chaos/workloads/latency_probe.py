"""A latency-sensitive service: a fixed unit of CPU work every period; reports p95 latency.

It calibrates the unit on start (uncontended) and sets its SLO at --slo-factor times that;
both go to a Prometheus textfile, as an application would report its own SLO.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections import deque
from pathlib import Path

from chaos.workloads.common import write_prom


def _work(n: int) -> None:
    x = 0
    for i in range(n):
        x ^= i


def _calibrate(ms: float) -> int:
    n = 10000
    while True:
        t = time.perf_counter()
        _work(n)
        dt = time.perf_counter() - t
        if dt >= ms / 1000.0:
            return max(1, int(n * (ms / 1000.0) / dt))
        n *= 2


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--textfile-dir", required=True)
    ap.add_argument("--work-ms", type=float, default=5.0)
    ap.add_argument("--period", type=float, default=0.05)
    ap.add_argument("--slo-factor", type=float, default=3.0)
    a = ap.parse_args()
    n = _calibrate(a.work_ms)
    base = statistics.median(_timed(n) for _ in range(20))
    window: deque[float] = deque(maxlen=40)
    last_write = 0.0
    while True:
        window.append(_timed(n))
        if time.monotonic() - last_write > 0.5 and len(window) >= 10:
            p95 = statistics.quantiles(window, n=20)[-1]
            write_prom(
                Path(a.textfile_dir),
                "chaos_latency",
                {
                    "chaos_latency_p95_seconds": p95,
                    "chaos_latency_slo_seconds": base * a.slo_factor,
                    "chaos_latency_slo_ok": float(p95 <= base * a.slo_factor),
                },
            )
            last_write = time.monotonic()
        time.sleep(a.period)


def _timed(n: int) -> float:
    t = time.perf_counter()
    _work(n)
    return time.perf_counter() - t


if __name__ == "__main__":
    main()
