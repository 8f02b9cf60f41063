"""Grow without bound: allocate and touch N MB per second (a memory leak)."""

from __future__ import annotations

import argparse
import time

from chaos.workloads.common import set_comm

PAGE = 4096


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rate-mb", type=float, default=8.0)
    ap.add_argument("--cap-mb", type=int, default=2048, help="safety cap for the host")
    ap.add_argument("--comm", default=None, help="process name (15 bytes) for kernel reports")
    ap.add_argument("--note", default="", help="free text kept in the cmdline")
    a = ap.parse_args()
    if a.comm:
        set_comm(a.comm)
    held: list[bytearray] = []
    step = max(1, int(a.rate_mb / 4))
    while sum(len(b) for b in held) < a.cap_mb * 2**20:
        buf = bytearray(step * 2**20)
        for i in range(0, len(buf), PAGE):
            buf[i] = 1
        held.append(buf)
        time.sleep(step / a.rate_mb)
    while True:
        time.sleep(1)


if __name__ == "__main__":
    main()
