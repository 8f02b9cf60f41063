"""What a control plane spends on an agent request before the protocol's own code runs.

Every agent request (heartbeat, report, lease, release) crosses the HTTP server and the
app's routing first. This measures both, each against a peer in the same run:

- the server: uvicorn as ``healer serve`` runs it (httptools and uvloop, a response's head
  and body in one write: web.protocol) against uvicorn's own httptools protocol (head and
  body written apart) and against its pure-Python h11 and asyncio. Server CPU time per
  request, and the TCP segments the client receives per request (its kernel counts them:
  ``tcpi_segs_in``), for a lease-sized JSON POST from 8 kept-alive connections to an app
  that answers a fixed JSON object;
- the routing: finding the agent protocol's routes in the control plane's app, where they
  come first, against the same app with them after every other route.

Medians over ``--repeats`` runs. Usage: ``python bench/agent_http.py [--repeats N] [--json]``.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from starlette.routing import BaseRoute, Match

ANSWER = b'{"wait": {"reason": "hold", "rule": "F-hold", "retry_after": 12.5, "detail": ""}}'
ASK = json.dumps({"host_id": "host-001", "action_id": 7, "purpose": "apply",
                  "incident_fingerprint": "listen-backlog-too-small|host",
                  "remedy": {"playbook": "listen-backlog-too-small", "kind": "sysctl_write",
                             "target": "net.core.somaxconn"}})
HEADERS = {"Content-Type": "application/json", "Authorization": "Bearer hlr_" + "a" * 43,
           "X-Healer-Agent-Version": "0.1.0"}
APP = f'''
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    more = True
    while more:
        more = (await receive()).get("more_body", False)
    await send({{"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json")]}})
    await send({{"type": "http.response.body", "body": {ANSWER!r}}})
'''
CLIENTS = 8
# struct tcp_info (linux/tcp.h): tcpi_segs_in, a __u32 at this offset (Linux 4.2 and later)
TCPI_SEGS_IN = 140
SERVERS = {  # name: (uvicorn's --http, --loop)
    "one_write": ("web.protocol:OneWriteHttpToolsProtocol", "uvloop"),
    "httptools_uvloop": ("httptools", "uvloop"),
    "h11_asyncio": ("h11", "asyncio"),
}
PATHS = ("/api/v1/agent/lease", "/api/v1/agent/report", "/api/v1/agent/heartbeat")


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _segments_in(conn: http.client.HTTPConnection) -> int:
    assert conn.sock is not None
    info = conn.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, TCPI_SEGS_IN + 4)
    return int.from_bytes(info[TCPI_SEGS_IN:TCPI_SEGS_IN + 4], sys.byteorder)


def server_us(work: Path, parser: str, loop: str, requests: int) -> tuple[float, float]:
    """Server CPU microseconds per request, and TCP segments the client receives per
    request, with uvicorn's HTTP ``parser`` and ``loop``."""
    port = _port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "bench_app:app", "--port", str(port), "--http", parser,
         "--loop", loop, "--log-level", "warning", "--no-access-log"], cwd=work)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise SystemExit(f"uvicorn ({parser}, {loop}) did not start") from None
                time.sleep(0.05)

        each = requests // CLIENTS
        segments: list[int] = []

        def client() -> None:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            conn.request("POST", PATHS[0], body=ASK, headers=HEADERS)  # connected, warm
            conn.getresponse().read()
            first = _segments_in(conn)
            for _ in range(each):
                conn.request("POST", PATHS[0], body=ASK, headers=HEADERS)
                conn.getresponse().read()
            segments.append(_segments_in(conn) - first)
            conn.close()

        before = _cpu_seconds(proc.pid)
        threads = [threading.Thread(target=client) for _ in range(CLIENTS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        asked = (each + 1) * CLIENTS  # with the warm-up requests
        return 1e6 * (_cpu_seconds(proc.pid) - before) / asked, sum(segments) / (each * CLIENTS)
    finally:
        proc.terminate()
        proc.wait()


def control_plane_routes(work: Path) -> list[BaseRoute]:
    """The routes of a control plane's app, in the order it tries them."""
    from guardrails import load_policy
    from healer.detect.silences import silence_check
    from healer.settings import Settings
    from healer.store.engine import open_engine
    from healer.store.repository import Repository
    from healer.telemetry import Telemetry
    from playbooks.loader import load_library
    from web import create_app
    from web.events import EventHub
    from web.fleet import FleetConfig

    url = f"sqlite:///{work / 'healer.db'}"
    settings = Settings(state_dir=work, database_url=url)
    repo = Repository(open_engine(url), "control-plane")
    library = load_library()
    fleet = FleetConfig(policy=load_policy().fleet, library=library, hub=EventHub(repo),
                        version="0.1.0")
    app = create_app(settings, repo=repo, telemetry=Telemetry(), fleet=fleet,
                     silence_check=silence_check(library.playbooks))
    return list(app.router.routes)


def routing_us(routes: list[BaseRoute], rounds: int) -> float:
    """Microseconds to find an agent request's route, tried in ``routes``' order."""
    scopes = [{"type": "http", "path": p, "method": "POST", "root_path": "", "headers": []}
              for p in PATHS]
    started = time.perf_counter()
    for _ in range(rounds):
        for scope in scopes:
            for route in routes:
                if route.matches(scope)[0] == Match.FULL:
                    break
    return 1e6 * (time.perf_counter() - started) / (rounds * len(scopes))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "bench_app.py").write_text(APP)
        runs: dict[str, list[float]] = {name: [] for name in SERVERS}
        segments: dict[str, list[float]] = {f"{name}_segments": [] for name in SERVERS}
        for _ in range(args.repeats):
            for name, (http, loop) in SERVERS.items():
                us, segs = server_us(work, http, loop, args.requests)
                runs[name].append(us)
                segments[f"{name}_segments"].append(segs)
        routes = control_plane_routes(work)
        agent = [r for r in routes if getattr(getattr(r, "original_router", None), "prefix",
                                              "").startswith(("/api/v1/agent", "/api/v1/alerts"))]
        last = [r for r in routes if r not in agent] + agent
        rounds = 2000
        routing = {"agent_routes_first": [routing_us(routes, rounds) for _ in range(args.repeats)],
                   "agent_routes_last": [routing_us(last, rounds) for _ in range(args.repeats)]}
    result: dict[str, Any] = {k: round(statistics.median(v), 1) for k, v in
                              (runs | routing).items()}
    result |= {k: round(statistics.median(v), 2) for k, v in segments.items()}
    result["one_write_ratio"] = round(result["one_write"] / result["httptools_uvloop"], 2)
    result["server_ratio"] = round(result["httptools_uvloop"] / result["h11_asyncio"], 2)
    result["routing_ratio"] = round(result["agent_routes_first"] / result["agent_routes_last"], 2)
    if args.json:
        print(json.dumps(result))
    else:
        print(f"server CPU per request: {result['one_write']} us, a response in one write "
              f"({result['one_write_segments']} segments per request), against "
              f"{result['httptools_uvloop']} us with uvicorn's own httptools protocol "
              f"({result['httptools_uvloop_segments']}): {result['one_write_ratio']}x")
        print(f"server CPU per request: {result['httptools_uvloop']} us (httptools, uvloop) "
              f"against {result['h11_asyncio']} us (h11, asyncio): {result['server_ratio']}x")
        print(f"routing an agent request: {result['agent_routes_first']} us (agent routes "
              f"first) against {result['agent_routes_last']} us (last): "
              f"{result['routing_ratio']}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
