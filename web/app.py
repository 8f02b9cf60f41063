"""``create_app``: the dashboard and JSON API as one FastAPI app, built from Settings.

The daemon runs it under uvicorn in its own process (``Settings.host``, 127.0.0.1 by
default). The app only reads and records: an approval is a database row, and only the
daemon writes to the kernel or the GPU.
"""

from __future__ import annotations

import contextlib
import ipaddress
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from importlib import resources
from typing import Annotated
from urllib.parse import quote, urlsplit

from fastapi import Depends, FastAPI, Request, Response
from fastapi.responses import JSONResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from fastapi.telemetry import TelemetryConfig
from starlette.exceptions import HTTPException as StarletteHTTPException

from healer.models import SilenceCheck
from healer.settings import Settings
from healer.store.repository import Repository
from healer.store.votes import VoteRefused
from web.auth import AuthError, Principal, optional_principal, requires
from web.context import AppContext, Metrics
from web.fleet import FleetConfig
from web.headers import SecurityHeaders
from web.limits import BodyLimit
from web.live import LiveState
from web.render import build_templates, render
from web.routers import (
    actions,
    agent,
    alerts,
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
    targets,
)
from web.routers import fleet as fleet_routes
from web.security import LoginThrottle, Signer, load_or_create_key, parse_networks

_PUBLIC_401 = ("/api/", "/metrics", "/openapi.json", "/slack/")

# healer's web side reports through Prometheus (/metrics), not OpenTelemetry. With FastAPI's
# bridge on, every request asked OpenTelemetry's global providers whether one was set (each
# read the environment): 5 % of a control-plane replica's time at a fleet fault's onset.
NO_OPENTELEMETRY: TelemetryConfig = {"tracing": False, "metrics": False, "logs": False,
                                     "operation_spans": False}


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
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code,
                            headers=exc.headers)  # Retry-After on 429 and 503
    return render(request, "error.html.j2", optional_principal(request),
                  status=exc.status_code, message=str(exc.detail))


def _loopback(host: str | None) -> bool:
    if host in ("localhost", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address((host or "").strip("[]")).is_loopback
    except ValueError:
        return False


def cookies_secure(settings: Settings) -> bool:
    """Cookies are ``Secure`` unless the dashboard is plain HTTP on loopback only.

    That is: it listens on a loopback address (``host``) and ``public_url`` is unset or an
    ``http://`` URL of a loopback host. Any other set-up is taken to be served over HTTPS
    (directly or by a proxy), where a cookie must never travel in clear.
    """
    if not _loopback(settings.host):
        return True
    if settings.public_url is None:
        return False
    url = urlsplit(settings.public_url)
    return not (url.scheme == "http" and _loopback(url.hostname))


def create_app(settings: Settings, *, repo: Repository, telemetry: Metrics,
               silence_check: SilenceCheck, live: LiveState | None = None,
               clock: Callable[[], datetime] = _utcnow,
               fleet: FleetConfig | None = None) -> FastAPI:
    """Build the web app; reads (or makes) the signing key in ``settings.state_dir``.
    With ``fleet`` it is a control plane: the agent protocol, the alert webhook, the
    hosts and the fleet view are mounted, and listings span every host."""
    ctx = AppContext(
        settings=settings, repo=repo, telemetry=telemetry, silence_check=silence_check,
        live=live,
        signer=Signer(load_or_create_key(settings.state_dir), clock=lambda: clock().timestamp()),
        login_throttle=LoginThrottle(), templates=build_templates(), clock=clock,
        secure_cookies=cookies_secure(settings),
        trusted_proxies=parse_networks(settings.trusted_proxies), started=clock(),
        fleet=fleet,
    )

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if fleet is not None:
            await fleet.hub.start()  # LISTEN in place before the first agent waits
        yield
        if fleet is not None:
            await fleet.hub.close()

    app = FastAPI(title="healer", version="1", docs_url=None, redoc_url=None, openapi_url=None,
                  description="healer's dashboard API: incidents, the action journal, approvals.",
                  lifespan=lifespan, telemetry=NO_OPENTELEMETRY)
    app.state.ctx = ctx
    modules = [health, snapshot, incidents, actions, proposals, audit, slack, session, pages,
               approvals_pages, journal_pages, silences, targets]
    if fleet is not None:
        # Routes are tried in order, and a control plane's requests are mostly agents':
        # theirs come first (after every other route, finding one took some 18 times as
        # long: bench/agent_http.py).
        modules = [agent, alerts, *modules, fleet_routes]
    for module in modules:
        app.include_router(module.router)

    @app.get("/openapi.json", include_in_schema=False)
    def openapi(_: Annotated[Principal, Depends(requires("viewer"))]) -> JSONResponse:
        return JSONResponse(app.openapi())

    static = resources.files("web").joinpath("static")
    app.mount("/static", StaticFiles(directory=str(static)), name="static")
    app.add_exception_handler(AuthError, _on_auth_error)
    app.add_exception_handler(VoteRefused, _on_vote_refused)
    app.add_exception_handler(StarletteHTTPException, _on_http_error)
    app.add_middleware(SecurityHeaders)
    app.add_middleware(BodyLimit)  # outermost: bodies are limited before anything reads them
    return app
