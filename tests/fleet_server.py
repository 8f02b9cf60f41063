"""A small control plane for the agent's tests: the protocol's answers over real HTTP.

It implements ``/api/v1/agent/{heartbeat,report,lease,release,events}`` as
docs/fleet-protocol.md says (host tokens, the version rule with 426, 429/503 with
Retry-After, reports upserted by seq and acked through the first gap, leases with a TTL,
epochs, renewals and 409 on a lost one, a long-polled event queue), with no fleet policy
of its own: a test scripts what ``/lease`` answers. Every request is recorded.

    with ControlPlane(token="t", host_id="h1") as cp:
        cp.lease_answers.append(cp.wait("canary"))   # the next request waits; then grants
        cp.push({"type": "pause"})
"""

from __future__ import annotations

import json
import ssl
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

PREFIX = "/api/v1/agent/"


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # an agent that hung up mid-answer (stopped, or a test's partition): expected


@dataclass(frozen=True)
class Seen:
    """One request as it arrived."""

    endpoint: str
    headers: dict[str, str]
    body: dict[str, Any]
    at: float  # time.monotonic() on arrival


@dataclass
class Lease:
    lease_id: int
    action_id: int
    epoch: int
    expires: float


@dataclass
class Throttle:
    """The next ``count`` calls of an endpoint are answered ``status`` (429, 503, 426)."""

    status: int
    count: int
    retry_after: str | None = None
    detail: str = "try later"


@dataclass
class ControlPlane:
    token: str
    host_id: str
    version: str = "0.1.0"
    ttl_seconds: float = 15.0
    heartbeat_seconds: float = 5.0
    clock_offset: float = 0.0  # seconds the server's clock runs ahead of the host's
    paused: bool = False
    renew_status: int = 200  # 409: every renewal finds its lease lost
    ack_mode: str = "contiguous"  # contiguous | none | jump (acks a seq never sent)
    lease_answers: deque[dict[str, Any]] = field(default_factory=deque)
    throttles: dict[str, Throttle] = field(default_factory=dict)
    seen: list[Seen] = field(default_factory=list)
    reports: dict[int, dict[str, Any]] = field(default_factory=dict)  # seq -> report
    releases: list[dict[str, Any]] = field(default_factory=list)
    leases: dict[int, Lease] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    _cond: threading.Condition = field(default_factory=threading.Condition)
    _next_lease: int = 1
    server: ThreadingHTTPServer | None = None
    tls: tuple[Path, Path] | None = None  # (certificate chain, key): serve https

    # -- life ---------------------------------------------------------------------------
    def __enter__(self) -> ControlPlane:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self, port: int = 0) -> None:
        plane = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as a real control plane

            def do_GET(self) -> None:
                plane._handle(self, "GET")

            def do_POST(self) -> None:
                plane._handle(self, "POST")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = _Server(("127.0.0.1", port), Handler)
        if self.tls is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*self.tls)
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                         daemon=True).start()

    def stop(self) -> None:
        """Close the listening socket (a partition, for the agent)."""
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            with self._cond:
                self._cond.notify_all()

    @property
    def port(self) -> int:
        assert self.server is not None
        return int(self.server.server_address[1])

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    # -- what tests script and read -------------------------------------------------------
    @staticmethod
    def wait(reason: str, retry_after: float = 0.5, rule: str = "") -> dict[str, Any]:
        return {"wait": {"reason": reason, "rule": rule or f"F-{reason}",
                         "retry_after": retry_after}}

    def push(self, *events: dict[str, Any]) -> None:
        """Queue events for the host; a waiting long poll answers at once."""
        with self._cond:
            self.events.extend(events)
            self._cond.notify_all()

    def requests(self, endpoint: str) -> list[Seen]:
        with self._cond:
            return [s for s in self.seen if s.endpoint == endpoint]

    # -- the protocol -----------------------------------------------------------------
    def _handle(self, h: BaseHTTPRequestHandler, method: str) -> None:
        url = urlsplit(h.path)
        endpoint = url.path.removeprefix(PREFIX)
        length = int(h.headers.get("Content-Length") or 0)
        body = json.loads(h.rfile.read(length)) if length else {}
        if method == "GET":
            body = {k: v[0] for k, v in parse_qs(url.query).items()}
        with self._cond:
            self.seen.append(Seen(endpoint, dict(h.headers.items()), body, time.monotonic()))
        status, answer, headers = self._answer(endpoint, h.headers, body)
        raw = json.dumps(answer).encode()
        h.send_response(status)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(raw)))
        for name, value in headers.items():
            h.send_header(name, value)
        h.end_headers()
        h.wfile.write(raw)

    def _answer(self, endpoint: str, headers: Any, body: dict[str, Any]
                ) -> tuple[int, dict[str, Any], dict[str, str]]:
        if headers.get("Authorization") != f"Bearer {self.token}":
            return 401, {"detail": "not a host token"}, {}
        if body.get("host_id") != self.host_id:
            return 403, {"detail": "host_id is not this token's"}, {}
        if not self._version_ok(str(headers.get("X-Healer-Agent-Version", ""))):
            return 426, {"detail": f"agent version not within one minor of {self.version}"}, {}
        throttle = self.throttles.get(endpoint)
        if throttle is not None and throttle.count > 0:
            throttle.count -= 1
            extra = {"Retry-After": throttle.retry_after} if throttle.retry_after else {}
            return throttle.status, {"detail": throttle.detail}, extra
        handler = {"heartbeat": self._heartbeat, "report": self._report, "lease": self._lease,
                   "release": self._release, "events": self._events}.get(endpoint)
        if handler is None:
            return 404, {"detail": "no such endpoint"}, {}
        status, answer = handler(body)
        return status, answer, {}

    def _version_ok(self, version: str) -> bool:
        try:
            major, minor, _ = (int(p) for p in version.split("."))
            my_major, my_minor, _ = (int(p) for p in self.version.split("."))
        except ValueError:
            return False
        return major == my_major and abs(minor - my_minor) <= 1

    def _heartbeat(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        now = datetime.now(UTC) + timedelta(seconds=self.clock_offset)
        return 200, {"server_time": now.isoformat(), "paused": self.paused,
                     "heartbeat_seconds": self.heartbeat_seconds}

    def _report(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        with self._cond:
            for report in body["reports"]:
                self.reports.setdefault(int(report["seq"]), report)  # a replay changes nothing
            acked = 0
            while acked + 1 in self.reports:
                acked += 1
        if self.ack_mode == "none":
            acked = 0
        elif self.ack_mode == "jump":
            acked = 1000
        return 200, {"acked_through": acked}

    def _lease(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        now = time.monotonic()
        renew = body.get("renew")
        with self._cond:
            if renew is not None:
                lease = self.leases.get(int(renew["lease_id"]))
                if self.renew_status != 200 or lease is None or lease.expires < now:
                    return self.renew_status if self.renew_status != 200 else 409, {
                        "detail": "lease lost"}
                lease.expires = now + self.ttl_seconds
                return 200, {"grant": self._grant(lease)}
            if self.lease_answers:
                return 200, self.lease_answers.popleft()
            lease = Lease(self._next_lease, int(body["action_id"]), 1, now + self.ttl_seconds)
            self._next_lease += 1
            self.leases[lease.lease_id] = lease
            return 200, {"grant": self._grant(lease)}

    def _grant(self, lease: Lease) -> dict[str, Any]:
        return {"lease_id": lease.lease_id, "epoch": lease.epoch,
                "ttl_seconds": self.ttl_seconds, "rule": "F-canary"}

    def _release(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        with self._cond:
            self.releases.append(body)
            lease = self.leases.pop(int(body["lease_id"]), None)
        return (200, {}) if lease is not None else (409, {"detail": "no such lease"})

    def _events(self, query: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        after = int(query.get("after") or 0)
        deadline = time.monotonic() + min(float(query.get("wait", 25)), 25.0)
        with self._cond:
            while len(self.events) <= after and time.monotonic() < deadline:
                if self.server is None or self.server.socket.fileno() < 0:
                    break
                self._cond.wait(max(0.0, deadline - time.monotonic()))
            return 200, {"cursor": str(len(self.events)), "events": self.events[after:]}
