"""``healer serve``: the unprivileged side of healer.

Everything that parses what the network sends runs here, never in the root agent: the
dashboard and the JSON API, Slack interactions, and notification delivery. It reads the
agent's live file for ``/metrics``, ``/healthz``, ``/api/v1/snapshot`` and the live charts,
and shares only the database with it: votes, silences and sessions go in, and the agent
re-checks everything it acts on.

``healer run`` execs it as ``healer serve --from-agent`` (settings as JSON in the
environment, privileges already dropped by the kernel between fork and exec); a systemd
unit may run it on its own instead (``deploy/healer-serve.service``). Either way it sets
``no_new_privs`` and refuses to run with root privileges before it imports anything that
faces the network.
"""

from __future__ import annotations

import argparse
import json
import os
from typing import TYPE_CHECKING

from healer.cli.common import settings_from_args
from healer.privsep import EXPECT_ENV, SETTINGS_ENV, enter_unprivileged

if TYPE_CHECKING:  # the web stack loads only after the privilege checks
    import uvicorn

    from healer.settings import Settings

TICK_S = 0.5  # uvicorn's own loop wakes every 0.1 s: 0.2 % of a core on an idle host
NOTIFY_EVERY_SECONDS = 2.0  # outbox delivery: often enough for chat, apart from HTTP


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
    return serve(settings)


def serve(settings: Settings) -> int:
    """Run the unprivileged side until SIGTERM/SIGINT; 0 after a clean stop."""
    from datetime import UTC, datetime

    import uvicorn
    from apscheduler.schedulers.background import BackgroundScheduler

    from healer.live import LIVE_FILE, LiveReader
    from healer.notify import OutboxDeliverer, build_channels
    from healer.store.engine import open_store
    from healer.telemetry import Telemetry
    from web.app import create_app

    repo = open_store(settings, migrate=False)  # the root agent migrates before it starts us
    telemetry = Telemetry()
    live = LiveReader(settings.live_dir / LIVE_FILE, window_seconds=settings.window_seconds,
                      interval_seconds=settings.interval_seconds,
                      on_sample=lambda sample: telemetry.host.update(sample.metrics))
    deliverer = OutboxDeliverer(repo, build_channels(settings), telemetry=telemetry)
    scheduler = BackgroundScheduler(timezone=UTC)
    scheduler.add_job(live.poll, "interval", seconds=settings.interval_seconds / 2,
                      id="live", max_instances=1, coalesce=True)
    scheduler.add_job(lambda: deliverer.deliver_due(datetime.now(UTC)), "interval",
                      seconds=NOTIFY_EVERY_SECONDS, id="notify", max_instances=1,
                      coalesce=True)
    live.poll()
    app = create_app(settings, repo=repo, telemetry=telemetry, live=live)
    server = _quiet_server(uvicorn.Config(app, host=settings.host, port=settings.port,
                                          log_level="warning", access_log=False))
    scheduler.start()
    try:
        server.run()  # returns on SIGTERM/SIGINT
    finally:
        scheduler.shutdown(wait=True)
    return 0 if server.started else 1


def _quiet_server(config: uvicorn.Config) -> uvicorn.Server:
    """A ``uvicorn.Server`` whose housekeeping loop ticks every ``TICK_S``, not 0.1 s.

    The tick only refreshes the Date header (once a second anyway) and notices a
    SIGTERM/SIGINT, so a shutdown now starts within ``TICK_S``.
    """
    import asyncio
    import contextlib
    import signal
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

        async def main_loop(self) -> None:
            counter = 0
            while not await self.on_tick(counter):
                await asyncio.sleep(TICK_S)
                counter = (counter + 10) % 864000  # a multiple of 10: the header is refreshed

    return QuietServer(config)
