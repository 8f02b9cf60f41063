"""Keep N child processes alive, re-forking when one is missing; count refused forks."""

from __future__ import annotations

import argparse
import os
import signal
import time

from chaos.workloads.common import die_with_parent


def _child() -> None:
    die_with_parent()
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    time.sleep(3600)
    os._exit(0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--children", type=int, default=30)
    a = ap.parse_args()
    kids: set[int] = set()
    refused = 0
    while True:
        while len(kids) < a.children:
            try:
                pid = os.fork()
            except BlockingIOError:  # EAGAIN: the pids controller said no
                refused += 1
                break
            if pid == 0:
                _child()
            kids.add(pid)
        while kids:
            pid, _ = os.waitpid(-1, os.WNOHANG)
            if pid == 0:
                break
            kids.discard(pid)
        time.sleep(0.2)


if __name__ == "__main__":
    main()
