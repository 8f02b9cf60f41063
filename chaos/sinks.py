"""Local HTTP endpoints the sandboxed daemon talks to, so the runner can see what it sent.

- ``WebhookSink``: receives healer's outgoing notification hooks (``HEALER_WEBHOOK_URL``).
- ``LlmProxy``: sits between healer and the test LLM server, forwarding every request and
  recording it, so a scenario can count LLM calls and inspect what text reached the model.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self


class _Recorder:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests: list[dict[str, Any]] = []

    def record(self, path: str, body: bytes) -> None:
        try:
            parsed: Any = json.loads(body) if body else None
        except ValueError:
            parsed = body.decode(errors="replace")
        with self.lock:
            self.requests.append({"ts": time.time(), "path": path, "body": parsed})

    def snapshot(self) -> list[dict[str, Any]]:
        with self.lock:
            return list(self.requests)


class _Server:
    """A threaded HTTP server on 127.0.0.1 with an ephemeral port."""

    handler: type[BaseHTTPRequestHandler]

    def __init__(self) -> None:
        self.rec = _Recorder()
        handler = type("H", (self.handler,), {"owner": self})
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def start(self) -> Self:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    @property
    def requests(self) -> list[dict[str, Any]]:
        return self.rec.snapshot()


class _Quiet(BaseHTTPRequestHandler):
    owner: Any

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))


class _SinkHandler(_Quiet):
    def do_POST(self) -> None:
        self.owner.rec.record(self.path, self._body())
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()


class WebhookSink(_Server):
    """Accepts every POST and keeps its JSON body."""

    handler = _SinkHandler


class _ProxyHandler(_Quiet):
    def _forward(self, body: bytes | None) -> None:
        if body is not None:
            self.owner.rec.record(self.path, body)
        headers = {
            k: v
            for k, v in self.headers.items()
            if k.lower() in ("content-type", "authorization", "accept")
        }
        req = urllib.request.Request(
            self.owner.upstream + self.path, data=body, method=self.command, headers=headers
        )
        try:
            with urllib.request.urlopen(req, timeout=120) as resp:
                status, data, ctype = resp.status, resp.read(), resp.headers.get("Content-Type")
        except urllib.error.HTTPError as exc:
            status, data, ctype = exc.code, exc.read(), exc.headers.get("Content-Type")
        except OSError as exc:
            status, data, ctype = 502, str(exc).encode(), "text/plain"
        self.send_response(status)
        self.send_header("Content-Type", ctype or "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:
        self._forward(self._body())

    def do_GET(self) -> None:
        self._forward(None)


class LlmProxy(_Server):
    """Forwards to an OpenAI-compatible upstream and records each POST body."""

    handler = _ProxyHandler

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        super().__init__()

    def chat_calls(self) -> list[dict[str, Any]]:
        """Recorded chat-completion requests."""
        return [r for r in self.requests if r["path"].rstrip("/").endswith("chat/completions")]
