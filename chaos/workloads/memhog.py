"""Hold about N MB of touched memory (a steady service that needs that much)."""

from __future__ import annotations

import argparse
import time

from chaos.workloads.common import set_comm

PAGE = 4096


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=int, default=110)
    ap.add_argument("--step-mb", type=int, default=10)
    ap.add_argument("--comm", default=None, help="process name (15 bytes) for kernel reports")
    ap.add_argument("--note", default="", help="free text kept in the cmdline")
    a = ap.parse_args()
    if a.comm:
        set_comm(a.comm)
    chunks = []
    for _ in range(0, a.mb, a.step_mb):
        buf = bytearray(a.step_mb * 2**20)
        for i in range(0, len(buf), PAGE):  # touch every page so it is really resident
            buf[i] = 1
        chunks.append(buf)
        time.sleep(0.05)
    while True:
        time.sleep(1)


if __name__ == "__main__":
    main()
