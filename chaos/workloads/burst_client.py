"""Bursts of TCP connections: N non-blocking connects at once, held briefly, then closed."""

from __future__ import annotations

import argparse
import contextlib
import resource
import socket
import time


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--burst", type=int, default=100)
    ap.add_argument("--period", type=float, default=1.0)
    ap.add_argument("--hold", type=float, default=0.5)
    a = ap.parse_args()
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    while True:
        start = time.monotonic()
        socks = []
        for _ in range(a.burst):
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", a.port))
            socks.append(s)
        time.sleep(a.hold)
        for s in socks:
            with contextlib.suppress(OSError):
                s.close()
        time.sleep(max(0.0, a.period - (time.monotonic() - start)))


if __name__ == "__main__":
    main()
