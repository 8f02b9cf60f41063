"""Everything a request handler needs, built once by ``create_app`` and kept on app.state."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import jinja2
from fastapi import Request

from healer.settings import Settings
from healer.store.repository import Repository
from healer.telemetry import Telemetry
from web.live import LiveState
from web.security import RateLimiter, Signer


@dataclass
class AppContext:
    settings: Settings
    repo: Repository
    telemetry: Telemetry
    live: LiveState | None
    signer: Signer
    login_limiter: RateLimiter
    templates: jinja2.Environment
    clock: Callable[[], datetime]
    secure_cookies: bool


def get_ctx(request: Request) -> AppContext:
    """The app's context (a FastAPI dependency)."""
    ctx: AppContext = request.app.state.ctx
    return ctx
