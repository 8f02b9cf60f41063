"""Request bodies are limited while they stream, before anything buffers them.

A pure ASGI middleware: a declared ``Content-Length`` over the limit is answered 413
without reading a byte, and a chunked body is counted as it arrives and refused at the
first chunk past the limit. The server then stops reading the socket (uvicorn's flow
control), so a 200 MB upload costs the daemon at most one limit's worth of memory.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# Slack sends small form bodies; 64 KiB is ample for one block_actions payload.
SLACK_MAX_BODY = 64 * 1024
# An agent's batch of reports (docs/fleet-protocol.md): incidents carry their evidence.
REPORT_MAX_BODY = 4 * 1024 * 1024
# Everything else healer accepts is a login form, a vote comment or a small JSON body.
DEFAULT_MAX_BODY = 1024 * 1024


class BodyTooLarge(HTTPException):
    """Raised from ``receive`` once the streamed body passes its limit (answered 413)."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body larger than {limit} bytes")


class BodyLimit:
    """Limit every request body: ``limits`` by path prefix, else ``default`` bytes."""

    def __init__(self, app: ASGIApp, *, default: int = DEFAULT_MAX_BODY,
                 limits: Mapping[str, int] | None = None) -> None:
        self.app, self.default = app, default
        self.limits = dict(limits or {"/slack/": SLACK_MAX_BODY,
                                      "/api/v1/agent/report": REPORT_MAX_BODY})

    def limit_for(self, path: str) -> int:
        """The limit that applies to ``path``."""
        for prefix, limit in self.limits.items():
            if path.startswith(prefix):
                return limit
        return self.default

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["path"])
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            await _refuse(send, limit)
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise BodyTooLarge(limit)
            return message

        await self.app(scope, counted, send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _refuse(send: Send, limit: int) -> None:
    body = json.dumps({"detail": f"request body larger than {limit} bytes"}).encode()
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})
