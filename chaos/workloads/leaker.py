"""Grow without bound: allocate and touch N MB per second (a memory leak)."""

from __future__ import annotations

import argparse
import time

from chaos.workloads.common import set_comm

PAGE = 4096


def _touched(mb: int) -> bytearray:
    buf = bytearray(mb * 2**20)
    for i in range(0, len(buf), PAGE):  # touch every page so it is really resident
        buf[i] = 1
    return buf


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rate-mb", type=float, default=8.0)
    ap.add_argument("--cap-mb", type=int, default=2048, help="safety cap for the host")
    ap.add_argument("--comm", default=None, help="process name (15 bytes) for kernel reports")
    ap.add_argument("--note", default="", help="free text kept in the cmdline")
    ap.add_argument("--base-mb", type=int, default=0, help="allocate this much at once first")
    ap.add_argument("--delay", type=float, default=0.0, help="seconds to idle before leaking")
    a = ap.parse_args()
    if a.comm:
        set_comm(a.comm)
    held: list[bytearray] = [_touched(a.base_mb)] if a.base_mb else []
    time.sleep(a.delay)
    step = max(1, int(a.rate_mb / 4))
    while sum(len(b) for b in held) < a.cap_mb * 2**20:
        held.append(_touched(step))
        time.sleep(step / a.rate_mb)
    while True:
        time.sleep(1)


if __name__ == "__main__":
    main()
