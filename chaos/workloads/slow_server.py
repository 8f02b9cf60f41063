"""A TCP server that accepts slowly and re-calls listen() each second, as servers do on reload.

listen(2): the backlog is silently capped at net.core.somaxconn of the socket's namespace
*at the time of the call*, and calling listen() again on a listening socket updates it
(net/ipv4/af_inet.c inet_listen). So a raised somaxconn takes effect within a second.
"""

from __future__ import annotations

import argparse
import select
import socket
import time


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--backlog", type=int, default=4096)
    ap.add_argument("--accept-rate", type=float, default=300.0, help="accepts per second")
    ap.add_argument("--relisten", type=float, default=1.0)
    a = ap.parse_args()
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", a.port))
    srv.listen(a.backlog)
    gap, last_listen = 1.0 / a.accept_rate, time.monotonic()
    while True:
        if time.monotonic() - last_listen >= a.relisten:
            srv.listen(a.backlog)
            last_listen = time.monotonic()
        if select.select([srv], [], [], 0.2)[0]:
            conn, _ = srv.accept()
            conn.close()
            time.sleep(gap)


if __name__ == "__main__":
    main()
