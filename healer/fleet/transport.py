"""HTTP to the control plane with the standard library's ``http.client`` and ``ssl``.

The root agent loads no HTTP client library (pyproject's import contract), and the host
token lives only here, in the root process (healer.privsep never passes it on). Each
``Transport`` holds one keep-alive connection and belongs to one thread; ``abort`` may be
called from another thread to end a long poll at once. TLS is verified against
``ca_file`` (else the system's store); plain HTTP is refused unless the control plane is
on a loopback address.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import logging
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

from pydantic_core import to_json

from healer.errors import ConfigError, HealerError
from healer.fleet.wire import API
from healer.settings import check_control_plane_url
from healer.telemetry import Telemetry

log = logging.getLogger("healer.fleet")

MAX_REPLY_BYTES = 8 * 1024 * 1024
DEFAULT_RETRY_AFTER = 5.0  # a 429/503 without a usable Retry-After
MAX_RETRY_AFTER = 600.0
_STALE = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)


class FleetError(HealerError):
    """A request to the control plane did not get its answer."""


class Unreachable(FleetError):
    """No answer: connection refused or reset, a timeout, a TLS failure, a 5xx."""


class Backpressure(FleetError):
    """429 or 503: come back after ``retry_after`` seconds."""

    def __init__(self, status: int, retry_after: float) -> None:
        super().__init__(f"HTTP {status}: retry after {retry_after:g}s")
        self.status, self.retry_after = status, retry_after


class Outdated(FleetError):
    """426: the control plane does not accept this agent's version."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class Refused(FleetError):
    """Another 4xx (403 wrong host, 409 lease lost, 422 malformed)."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"HTTP {status}: {detail}")
        self.status, self.detail = status, detail


@dataclass(frozen=True)
class Endpoint:
    """Where the control plane is: scheme, host, port and the URL's path prefix."""

    tls: bool
    host: str
    port: int
    prefix: str

    @classmethod
    def parse(cls, url: str) -> Endpoint:
        """``url`` checked: https anywhere, http only to loopback; ConfigError otherwise."""
        try:
            parts = urlsplit(check_control_plane_url(url))
        except ValueError as exc:
            raise ConfigError("control_plane_url", str(exc)) from None
        tls = parts.scheme == "https"
        return cls(tls=tls, host=parts.hostname or "", port=parts.port or (443 if tls else 80),
                   prefix=parts.path.rstrip("/"))


def tls_context(ca_file: Path | None) -> ssl.SSLContext:
    """A verifying client context: the certificate chain and the host name are checked."""
    try:
        return ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError("ca_file", f"cannot load {ca_file}: {exc}") from None


def _retry_after(value: str | None) -> float:
    try:
        seconds = float(value) if value is not None else DEFAULT_RETRY_AFTER
    except ValueError:
        seconds = DEFAULT_RETRY_AFTER  # an HTTP date: the protocol says seconds
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


def _detail(raw: bytes) -> str:
    try:
        data = json.loads(raw)
    except ValueError:
        return raw[:200].decode("utf-8", "replace")
    detail = data.get("detail", data) if isinstance(data, dict) else data
    return str(detail)[:300]


class Transport:
    """JSON requests to ``/api/v1/agent/*`` with the host token and the agent's version."""

    def __init__(self, endpoint: Endpoint, token: str, version: str, *,
                 context: ssl.SSLContext | None = None, timeout: float = 10.0,
                 telemetry: Telemetry | None = None) -> None:
        self.endpoint, self.version, self.timeout = endpoint, version, timeout
        self.telemetry = telemetry  # healer_fleet_request_seconds, answered or not
        self._token = token
        self._context = context if context is not None or not endpoint.tls else tls_context(None)
        self._conn: http.client.HTTPConnection | None = None
        self._closed = False
        self._lock = threading.Lock()  # guards _conn against abort() from another thread

    def call(self, method: str, name: str, body: dict[str, Any] | None = None, *,
             query: dict[str, str | int] | None = None, timeout: float | None = None,
             metric: str | None = None) -> dict[str, Any]:
        """One request; the JSON object answered with 200, or a FleetError. ``metric``: the
        endpoint label it is timed under (default ``name``; a lease renewal is ``renew``)."""
        started = time.perf_counter()
        try:
            return self._call(method, name, body, query, timeout)
        finally:
            if self.telemetry is not None:
                self.telemetry.fleet_request_seconds.labels(metric or name).observe(
                    time.perf_counter() - started)

    def _call(self, method: str, name: str, body: dict[str, Any] | None,
              query: dict[str, str | int] | None, timeout: float | None) -> dict[str, Any]:
        path = f"{self.endpoint.prefix}{API}{name}"
        if query:
            path += "?" + urlencode(query)
        payload = None if body is None else to_json(body, inf_nan_mode="strings")
        headers = {"Authorization": f"Bearer {self._token}", "Accept": "application/json",
                   "X-Healer-Agent-Version": self.version}
        if payload is not None:
            headers["Content-Type"] = "application/json"
        for attempt in (1, 2):
            reused = self._conn is not None
            try:
                conn = self._connection(timeout or self.timeout)
                conn.request(method, path, body=payload, headers=headers)
                reply = conn.getresponse()
                raw = reply.read(MAX_REPLY_BYTES + 1)
                break
            except (OSError, http.client.HTTPException) as exc:
                self.abort()
                # A kept-alive connection the server closed meanwhile fails before any
                # answer: once, on a fresh connection, the request is sent again.
                if attempt == 1 and reused and isinstance(exc, _STALE):
                    continue
                raise Unreachable(f"{method} {name}: {type(exc).__name__}: {exc}") from None
        if reply.will_close:
            self.abort()
        return self._answer(reply.status, reply.getheader("Retry-After"), raw, name)

    def _answer(self, status: int, retry_after: str | None, raw: bytes,
                name: str) -> dict[str, Any]:
        if status in (429, 503):
            raise Backpressure(status, _retry_after(retry_after))
        if status == 426:
            raise Outdated(_detail(raw))
        if 400 <= status < 500:
            raise Refused(status, _detail(raw))
        if status != 200:
            raise Unreachable(f"{name}: HTTP {status}: {_detail(raw)}")
        if len(raw) > MAX_REPLY_BYTES:
            raise Unreachable(f"{name}: the answer is over {MAX_REPLY_BYTES} bytes")
        try:
            data = json.loads(raw)
        except ValueError:
            raise Unreachable(f"{name}: the answer is not JSON") from None
        if not isinstance(data, dict):
            raise Unreachable(f"{name}: the answer is not a JSON object")
        return data

    def _connection(self, timeout: float) -> http.client.HTTPConnection:
        with self._lock:
            if self._closed:
                raise OSError("the transport is closed")
            if self._conn is None:
                ep = self.endpoint
                self._conn = (http.client.HTTPSConnection(ep.host, ep.port, timeout=timeout,
                                                          context=self._context)
                              if ep.tls else
                              http.client.HTTPConnection(ep.host, ep.port, timeout=timeout))
            conn = self._conn
        conn.timeout = timeout
        if conn.sock is not None:
            conn.sock.settimeout(timeout)
        return conn

    def close(self) -> None:
        """Abort what is in flight and refuse further requests (the agent is stopping)."""
        with self._lock:
            self._closed = True
        self.abort()

    def abort(self) -> None:
        """Drop the connection (a request blocked on it fails at once); the next call
        opens a new one. Safe from any thread."""
        with self._lock:
            conn, self._conn = self._conn, None
        if conn is None:
            return
        sock = conn.sock
        if sock is not None:
            with contextlib.suppress(OSError):  # already closed by the peer
                sock.shutdown(socket.SHUT_RDWR)
        conn.close()
