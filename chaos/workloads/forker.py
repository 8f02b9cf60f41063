"""Keep N short-lived children (a pre-forking server recycling workers): re-fork as they exit."""

from __future__ import annotations

import argparse
import os
import random
import signal
import time

from chaos.workloads.common import die_with_parent


def _child(lifetime: float) -> None:
    die_with_parent()
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    time.sleep(lifetime * random.uniform(0.5, 1.5))
    os._exit(0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--children", type=int, default=30)
    ap.add_argument("--child-seconds", type=float, default=1.0, help="mean child lifetime")
    a = ap.parse_args()
    kids: set[int] = set()
    while True:
        while len(kids) < a.children:
            try:
                pid = os.fork()
            except BlockingIOError:  # EAGAIN: the pids controller said no (pids.events max)
                break
            if pid == 0:
                _child(a.child_seconds)
            kids.add(pid)
        while kids:
            pid, _ = os.waitpid(-1, os.WNOHANG)
            if pid == 0:
                break
            kids.discard(pid)
        time.sleep(0.05)


if __name__ == "__main__":
    main()
