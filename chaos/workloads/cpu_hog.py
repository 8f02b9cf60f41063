"""Burn CPU in N processes (a batch job that takes every cycle it can get)."""

from __future__ import annotations

import argparse
import os

from chaos.workloads.common import die_with_parent


def _spin() -> None:
    x = 0
    while True:
        x = (x + 1) & 0xFFFF


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--procs", type=int, default=os.cpu_count() or 2)
    a = ap.parse_args()
    for _ in range(a.procs - 1):
        if os.fork() == 0:
            die_with_parent()
            _spin()
    _spin()


if __name__ == "__main__":
    main()
