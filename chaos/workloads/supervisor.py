"""Restart a child whenever it exits, like systemd's Restart=always: ``supervisor -- argv``."""

from __future__ import annotations

import argparse
import subprocess
import time

from chaos.workloads.common import append_event, die_with_parent


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--delay", type=float, default=0.5)
    ap.add_argument("--events", default=None, help="JSON-lines file of exits")
    ap.add_argument("argv", nargs=argparse.REMAINDER)
    a = ap.parse_args()
    argv = a.argv[1:] if a.argv[:1] == ["--"] else a.argv
    while True:
        child = subprocess.Popen(argv, preexec_fn=die_with_parent)
        rc = child.wait()
        if a.events:
            from pathlib import Path

            append_event(Path(a.events), pid=child.pid, rc=rc)
        time.sleep(a.delay)


if __name__ == "__main__":
    main()
