"""``healer serve``: the unprivileged side of healer.

Everything that parses what the network sends runs here, never in the root agent: the
dashboard and the JSON API, Slack interactions, notification delivery, and the LLM
client (its answers are stored; the agent guards every proposal in them). It reads the
agent's live file for ``/metrics``, ``/healthz``, ``/api/v1/snapshot`` and the live charts,
and shares only the database with it: votes, silences and sessions go in, and the agent
re-checks everything it acts on.

``healer run`` execs it as ``healer serve --from-agent`` (settings as JSON in the
environment, privileges already dropped by the kernel between fork and exec); a systemd
unit may run it on its own instead (``deploy/healer-serve.service``). Either way it sets
``no_new_privs`` and refuses to run with root privileges before it imports anything that
faces the network.

On a shared PostgreSQL database (``HEALER_DATABASE_URL=postgresql+psycopg://...``) and not
under an agent, it is the fleet's control plane: it migrates the schema itself (replicas
starting together upgrade once), serves the agent protocol and the alert webhook, runs
the fleet's periodic jobs on one replica at a time, and asks the LLM once per fleet
fingerprint across replicas. It keeps no state of its own: run several behind a load
balancer. It reads no live file (no agent runs beside it).
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import TYPE_CHECKING

from healer import heap
from healer.cli.common import settings_from_args
from healer.privsep import EXPECT_ENV, SETTINGS_ENV, enter_unprivileged

if TYPE_CHECKING:  # the web stack loads only after the privilege checks
    import uvicorn

    from healer.live import LiveReader
    from healer.models import SilenceCheck
    from healer.settings import Settings
    from healer.store.repository import Repository
    from healer.telemetry import Telemetry
    from web.fleet import FleetConfig

TICK_S = 0.5  # uvicorn's own loop wakes every 0.1 s: 0.2 % of a core on an idle host
NOTIFY_EVERY_SECONDS = 2.0  # outbox delivery: often enough for chat, apart from HTTP
LLM_EVERY_SECONDS = 2.0  # the LLM job looks for incidents that want its answer
# On SIGTERM, agents' long polls (up to 25 s) are answered at once, and their agents ask
# the next replica; requests still running after this are cut.
SHUTDOWN_GRACE_S = 3
# An agent keeps one connection per thread: a heartbeat every 5 s (±20 %), a host waiting
# for room asks every 10 s. Kept this long, they are reused, not opened again each time
# (uvicorn's default closes them after 5 s idle).
KEEP_ALIVE_S = 30


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("serve", help="the dashboard, API and notifications (never as root)")
    p.add_argument("--from-agent", action="store_true",
                   help="started by `healer run`: settings come from the agent")
    p.add_argument("--host", default=None, help="bind address (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=None, help="port (default 8765)")
    p.set_defaults(func=_serve)


def _serve(args: argparse.Namespace) -> int:
    # First, before the web stack is imported: no privilege left, and none to be gained.
    enter_unprivileged(strict=os.environ.get(EXPECT_ENV) == "1")
    from healer.logs import setup_logging
    from healer.settings import Settings

    if args.from_agent:
        settings = Settings(**json.loads(os.environ[SETTINGS_ENV]))
    else:
        settings = settings_from_args(args, host=args.host, port=args.port)
    setup_logging(settings.log_level)
    from healer.store.engine import is_fleet

    return serve(settings, fleet=not args.from_agent and is_fleet(settings))


@dataclass
class Serve:
    """The unprivileged side, built from Settings: its store, metrics, the agent's live
    view, and its periodic jobs; ``serve`` runs them and the web app."""

    settings: Settings
    repo: Repository
    telemetry: Telemetry
    live: LiveReader | None  # None: a control plane (no agent beside it)
    jobs: dict[str, tuple[Callable[[], object], float]]  # id -> (job, period in seconds)
    silence_check: SilenceCheck  # refuses a silence over a template a playbook claims
    fleet: FleetConfig | None = None  # a control plane


def build_serve(settings: Settings, *, fleet: bool = False) -> Serve:
    """Build every part of ``healer serve`` from settings; nothing runs yet."""
    if fleet:
        return build_control_plane(settings)
    from healer.detect.silences import silence_check
    from healer.diagnose.context import llm_context
    from healer.diagnose.factory import build_llm, llm_limits
    from healer.diagnose.pending import diagnose_pending
    from healer.live import LIVE_FILE, LiveReader
    from healer.notify.channels import build_channels
    from healer.notify.outbox import OutboxDeliverer
    from healer.store.engine import open_store
    from healer.telemetry import Telemetry
    from playbooks.loader import load_library

    repo = open_store(settings, migrate=False)  # the root agent migrates before it starts us
    telemetry = Telemetry()
    llm = build_llm(settings, telemetry) if settings.llm_enabled else None
    live = LiveReader(settings.live_dir / LIVE_FILE, window_seconds=settings.window_seconds,
                      interval_seconds=settings.interval_seconds,
                      on_sample=lambda sample: telemetry.host.update(sample.metrics),
                      llm=llm.status if llm is not None else None)
    deliverer = OutboxDeliverer(repo, build_channels(settings), telemetry=telemetry)
    library = load_library(settings.playbooks_dir)
    jobs: dict[str, tuple[Callable[[], object], float]] = {
        "live": (live.poll, settings.interval_seconds / 2),
        "notify": (lambda: deliverer.deliver_due(datetime.now(UTC)), NOTIFY_EVERY_SECONDS),
    }
    if llm is not None:
        jobs["llm"] = (partial(diagnose_pending, repo, llm, library, limits=llm_limits(settings),
                               telemetry=telemetry,
                               context_for=llm_context(settings, library, live.window)),
                       LLM_EVERY_SECONDS)
    return Serve(settings, repo, telemetry, live, jobs, silence_check(library.playbooks))


def build_control_plane(settings: Settings) -> Serve:
    """A fleet's control plane: the store (migrated here), the fleet policy and jobs, the
    fleet's LLM job, and the long-poll hub; no live file, no agent."""
    from guardrails.policy import load_policy
    from healer.control.answers import deliver_answers
    from healer.control.jobs import TICK_SECONDS, FleetJobs
    from healer.detect.silences import silence_check
    from healer.diagnose.factory import build_llm, llm_limits
    from healer.diagnose.pending import diagnose_pending
    from healer.notify.channels import build_channels
    from healer.notify.notifier import Notifier
    from healer.notify.outbox import OutboxDeliverer
    from healer.store.engine import open_control_plane
    from healer.telemetry import Telemetry
    from playbooks.loader import load_library
    from web.events import EventHub
    from web.fleet import FleetConfig, Lanes, own_version

    repo = open_control_plane(settings)
    telemetry = Telemetry()
    policy = load_policy(settings.policy_file).fleet
    library = load_library(settings.playbooks_dir)
    fleet_jobs = FleetJobs(repo, policy, Notifier(settings, repo))
    deliverer = OutboxDeliverer(repo, build_channels(settings), telemetry=telemetry)

    def notify() -> None:  # one replica delivers: no page goes out twice
        with repo.one_replica("notify") as mine:
            if mine:
                deliverer.deliver_due(datetime.now(UTC))

    jobs: dict[str, tuple[Callable[[], object], float]] = {
        "fleet": (fleet_jobs.tick, TICK_SECONDS), "notify": (notify, NOTIFY_EVERY_SECONDS),
        "answers": (partial(deliver_answers, repo), LLM_EVERY_SECONDS)}
    if settings.llm_enabled:
        llm = build_llm(settings, telemetry)
        jobs["llm"] = (partial(diagnose_pending, repo, llm, library, limits=llm_limits(settings),
                               telemetry=telemetry, fleet=True), LLM_EVERY_SECONDS)
    config = FleetConfig(policy=policy, library=library, hub=EventHub(repo),
                         version=own_version(), lanes=Lanes().observed(telemetry.agent_request))
    return Serve(settings, repo, telemetry, None, jobs, silence_check(library.playbooks),
                 config)


def serve(settings: Settings, *, fleet: bool = False) -> int:
    """Run the unprivileged side until SIGTERM/SIGINT; 0 after a clean stop."""
    import uvicorn
    from apscheduler.schedulers.background import BackgroundScheduler

    from web.app import create_app
    from web.protocol import OneWriteHttpToolsProtocol

    parts = build_serve(settings, fleet=fleet)
    scheduler = BackgroundScheduler(timezone=UTC)
    for job_id, (job, seconds) in parts.jobs.items():
        scheduler.add_job(job, "interval", seconds=seconds, id=job_id, max_instances=1,
                          coalesce=True)
    if parts.live is not None:
        parts.live.poll()
    app = create_app(settings, repo=parts.repo, telemetry=parts.telemetry, live=parts.live,
                     silence_check=parts.silence_check, fleet=parts.fleet)
    config = uvicorn.Config(app, host=settings.host, port=settings.port,
                            http=OneWriteHttpToolsProtocol, log_level="warning",
                            access_log=False, timeout_keep_alive=KEEP_ALIVE_S,
                            timeout_graceful_shutdown=SHUTDOWN_GRACE_S)
    server = _quiet_server(config, stopping=None if parts.fleet is None
                           else parts.fleet.hub.stop_waiting)
    scheduler.start()
    heap.settle()  # the app is built: what it holds stays
    try:
        server.run()  # returns on SIGTERM/SIGINT
    finally:
        scheduler.shutdown(wait=True)
    return 0 if server.started else 1


def _quiet_server(config: uvicorn.Config,
                  stopping: Callable[[], None] | None = None) -> uvicorn.Server:
    """A ``uvicorn.Server`` whose housekeeping loop ticks every ``TICK_S``, not 0.1 s, and
    that calls ``stopping()`` (on its event loop) when its shutdown begins.

    The tick only refreshes the Date header (once a second anyway) and notices a
    SIGTERM/SIGINT, so a shutdown now starts within ``TICK_S``. A control plane's
    ``stopping`` answers the long polls: left to uvicorn, each would be cancelled after
    the grace period and logged as an error with its traceback.
    """
    import asyncio
    import contextlib
    import signal
    import socket
    import threading
    from collections.abc import Generator

    import uvicorn

    class QuietServer(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Generator[None, None, None]:
            # uvicorn re-raises the captured SIGTERM after its own shutdown, which would
            # kill the process before the jobs stop; healer owns the exit instead (code 0
            # after a clean stop).
            if threading.current_thread() is not threading.main_thread():
                yield
                return
            handled = (signal.SIGINT, signal.SIGTERM)
            original = {sig: signal.signal(sig, self.handle_exit) for sig in handled}
            try:
                yield
            finally:
                for sig, handler in original.items():
                    signal.signal(sig, handler)

        async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
            if stopping is not None:
                stopping()
            await super().shutdown(sockets)

        async def main_loop(self) -> None:
            counter = 0
            while not await self.on_tick(counter):
                await asyncio.sleep(TICK_S)
                counter = (counter + 10) % 864000  # a multiple of 10: the header is refreshed

    return QuietServer(config)
