"""Everything a request handler needs, built once by ``create_app`` and kept on app.state."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol, TypedDict

import jinja2
from fastapi import Request
from prometheus_client import CollectorRegistry

from healer.models import SilenceCheck
from healer.settings import Settings
from healer.store.repository import Repository
from web.fleet import FleetConfig
from web.live import LiveState
from web.security import LoginThrottle, Networks, Signer

# Each argon2id check takes 64 MiB and a core for about 0.1 s; two at once bound both.
HASH_SLOTS = 2


class Metrics(Protocol):
    """What ``/metrics`` exposes (``healer.telemetry.Telemetry``): this process's registry,
    and the loop's, which the agent publishes and an in-process loop (tests) fills."""

    @property
    def serve_registry(self) -> CollectorRegistry: ...

    @property
    def agent_registry(self) -> CollectorRegistry: ...


class HostScope(TypedDict):
    """Whose records a listing reads (the repository's ``host``/``every_host`` keywords)."""

    host: str | None
    every_host: bool


@dataclass
class AppContext:
    settings: Settings
    repo: Repository
    telemetry: Metrics
    silence_check: SilenceCheck  # checks a silence against the playbook library
    live: LiveState | None
    signer: Signer
    login_throttle: LoginThrottle
    templates: jinja2.Environment
    clock: Callable[[], datetime]
    secure_cookies: bool
    trusted_proxies: Networks
    started: datetime  # the loop's lag is counted from here until the first sample
    hash_slots: threading.BoundedSemaphore = field(
        default_factory=lambda: threading.BoundedSemaphore(HASH_SLOTS))
    fleet: FleetConfig | None = None  # a control plane: the agent protocol, alerts, hosts

    def hosts(self, host: str | None = None) -> HostScope:
        """``host``'s records; without one, every host's on a control plane, else this
        host's own."""
        return {"host": host, "every_host": host is None and self.fleet is not None}


def get_ctx(request: Request) -> AppContext:
    """The app's context (a FastAPI dependency)."""
    ctx: AppContext = request.app.state.ctx
    return ctx
