"""Security headers on every response, as a pure ASGI middleware.

Pure ASGI rather than Starlette's ``BaseHTTPMiddleware``: that one runs the app in a task
group and turns an HTTP error raised while the body streams (web.limits) into a 500.
"""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# Pages load only their own script and styles; nothing from another origin, no framing.
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
_FIXED = (("Content-Security-Policy", CSP), ("X-Content-Type-Options", "nosniff"),
          ("Referrer-Policy", "same-origin"), ("X-Frame-Options", "DENY"))
_NO_STORE_PATHS = ("/api/", "/login")


class SecurityHeaders:
    """Adds CSP, nosniff, referrer and framing rules; ``no-store`` on the API, login and
    HTML pages. Headers the app set itself are kept."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        no_store_path = str(scope["path"]).startswith(_NO_STORE_PATHS)

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in _FIXED:
                    headers.setdefault(name, value)
                if no_store_path or "text/html" in headers.get("content-type", ""):
                    headers.setdefault("Cache-Control", "no-store")
            await send(message)

        await self.app(scope, receive, with_headers)
