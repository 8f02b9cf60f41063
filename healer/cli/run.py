"""``healer run``: the daemon, with the dashboard and API in the same process."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from healer.cli.common import settings_from_args
from healer.logs import setup_logging

if TYPE_CHECKING:  # uvicorn loads only when the daemon starts
    import uvicorn


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("run", help="run the daemon and the dashboard")
    p.add_argument("--mode", choices=("observe", "advise", "auto"), default=None)
    p.add_argument("--host", default=None, help="dashboard bind address (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=None, help="dashboard port (default 8765)")
    p.set_defaults(func=_run)


TICK_S = 0.5  # uvicorn's own loop wakes every 0.1 s: 0.2 % of a core on an idle host


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
            # kill the process before the daemon stops its jobs and flushes; healer owns
            # the exit instead (code 0 after a clean stop).
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


def _run(args: argparse.Namespace) -> int:
    import uvicorn

    from healer.daemon import build_daemon
    from healer.detect.silences import silence_check
    from web.app import create_app
    from web.live import WindowLive

    settings = settings_from_args(args, mode=args.mode, host=args.host, port=args.port)
    setup_logging(settings.log_level)
    daemon = build_daemon(settings)
    llm = daemon.diagnoser.status if daemon.settings.llm_enabled else None
    live = WindowLive(daemon.pipeline.window, llm=llm)
    app = create_app(daemon.settings, repo=daemon.repo, telemetry=daemon.telemetry, live=live,
                     silence_check=silence_check(daemon.pipeline.library.playbooks))
    server = _quiet_server(uvicorn.Config(app, host=settings.host, port=settings.port,
                                          log_level="warning", access_log=False))
    daemon.start()
    try:
        server.run()  # returns on SIGTERM/SIGINT
    finally:
        daemon.stop()
    return 0
