"""``create_app``: the dashboard and JSON API as one FastAPI app, built from Settings.

The daemon runs it under uvicorn in its own process (``Settings.host``, 127.0.0.1 by
default). The app only reads and records: an approval is a database row, and only the
daemon writes to the kernel or the GPU.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from importlib import resources
from typing import Annotated
from urllib.parse import quote

from fastapi import Depends, FastAPI, Request, Response
from fastapi.responses import JSONResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from healer.settings import Settings
from healer.store.repository import Repository
from healer.telemetry import Telemetry
from web.approvals import VoteRefused
from web.auth import AuthError, Principal, optional_principal, requires
from web.context import AppContext
from web.live import LiveState
from web.render import build_templates, render
from web.routers import (
    actions,
    approvals_pages,
    audit,
    health,
    incidents,
    journal_pages,
    pages,
    proposals,
    session,
    silences,
    slack,
    snapshot,
)
from web.security import RateLimiter, Signer, load_or_create_key

# Pages load only their own script and styles; nothing from another origin, no framing.
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
_PUBLIC_401 = ("/api/", "/metrics", "/openapi.json", "/slack/")


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _is_api(request: Request) -> bool:
    return request.url.path.startswith(_PUBLIC_401)


async def _on_auth_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, AuthError)
    if exc.status == 401 and request.method == "GET" and not _is_api(request):
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/login?next={quote(target)}", status_code=303)
    headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
    if _is_api(request):
        return JSONResponse({"detail": exc.detail}, status_code=exc.status, headers=headers)
    return render(request, "error.html.j2", optional_principal(request), status=exc.status,
                  message=exc.detail)


async def _on_vote_refused(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, VoteRefused)
    return JSONResponse({"detail": exc.detail}, status_code=exc.status)


async def _on_http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    if _is_api(request) or request.method != "GET":
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code)
    return render(request, "error.html.j2", optional_principal(request),
                  status=exc.status_code, message=str(exc.detail))


async def _security_headers(request: Request,
                            call_next: Callable[[Request], Awaitable[Response]]) -> Response:
    response = await call_next(request)
    response.headers.setdefault("Content-Security-Policy", CSP)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    response.headers.setdefault("X-Frame-Options", "DENY")
    if request.url.path.startswith(("/api/", "/login")) or "text/html" in response.headers.get(
            "content-type", ""):
        response.headers.setdefault("Cache-Control", "no-store")
    return response


def create_app(settings: Settings, *, repo: Repository, telemetry: Telemetry,
               live: LiveState | None = None,
               clock: Callable[[], datetime] = _utcnow) -> FastAPI:
    """Build the web app; reads (or makes) the signing key in ``settings.state_dir``."""
    ctx = AppContext(
        settings=settings, repo=repo, telemetry=telemetry, live=live,
        signer=Signer(load_or_create_key(settings.state_dir), clock=lambda: clock().timestamp()),
        login_limiter=RateLimiter(limit=5, window=60.0), templates=build_templates(),
        clock=clock, secure_cookies=(settings.public_url or "").startswith("https://"),
    )
    app = FastAPI(title="healer", version="1", docs_url=None, redoc_url=None, openapi_url=None,
                  description="healer's dashboard API: incidents, the action journal, approvals.")
    app.state.ctx = ctx
    for module in (health, snapshot, incidents, actions, proposals, audit, slack, session, pages,
                   approvals_pages, journal_pages, silences):
        app.include_router(module.router)

    @app.get("/openapi.json", include_in_schema=False)
    def openapi(_: Annotated[Principal, Depends(requires("viewer"))]) -> JSONResponse:
        return JSONResponse(app.openapi())

    static = resources.files("web").joinpath("static")
    app.mount("/static", StaticFiles(directory=str(static)), name="static")
    app.add_exception_handler(AuthError, _on_auth_error)
    app.add_exception_handler(VoteRefused, _on_vote_refused)
    app.add_exception_handler(StarletteHTTPException, _on_http_error)
    app.middleware("http")(_security_headers)
    return app
