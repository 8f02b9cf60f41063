"""``healer run``: the root agent, and the unprivileged side it starts and supervises.

The agent is the loop: collectors, detection, the guard, the actuators and the journal.
It listens on no port and never imports the web stack, the LLM client or the notifiers'
HTTP clients. It execs ``healer serve`` as the service user for everything that faces the
network (healer.privsep), restarts it with backoff when it dies, and stops both on
SIGTERM/SIGINT, exiting 0 after a clean stop.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import threading
from pathlib import Path
from typing import Any

from healer import heap
from healer.cli.common import settings_from_args
from healer.fleet.config import TOKEN_ENV, fleet_config
from healer.logs import setup_logging
from healer.privsep import interpreter
from healer.settings import Settings

SUPERVISE_EVERY_SECONDS = 1.0  # how often the agent checks on the unprivileged side


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("run", help="run the agent (and the dashboard it starts)")
    p.add_argument("--mode", choices=("observe", "advise", "auto"), default=None)
    p.add_argument("--host", default=None, help="dashboard bind address (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=None, help="dashboard port (default 8765)")
    p.add_argument("--control-plane", default=None, metavar="URL",
                   help="join a fleet: the control plane's URL (host token in "
                        f"{TOKEN_ENV}; plain http only to loopback)")
    p.add_argument("--host-id", default=None, metavar="ID",
                   help="this host's id (default: the host name)")
    p.add_argument("--ca-file", default=None, metavar="PATH",
                   help="CA bundle the control plane's certificate must chain to")
    p.set_defaults(func=_run)


def serve_settings(settings: Settings) -> str:
    """The unprivileged side's settings as JSON, secrets in clear: it is the side that uses
    the LLM key and the webhook and Slack secrets. The agent holds no other secret there."""
    data: dict[str, Any] = settings.model_dump(mode="json")
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        if hasattr(value, "get_secret_value"):
            data[name] = value.get_secret_value()
    return json.dumps(data)


def _code_paths() -> dict[str, Path]:
    """What the unprivileged side must reach to start at all: this environment (its
    interpreter and site-packages) and the standard library it was built from."""
    return {"environment": interpreter().parent.parent,
            "standard library": Path(os.__file__).parent}


def _run(args: argparse.Namespace) -> int:
    from healer.daemon import build_daemon
    from healer.privsep import (
        Supervisor,
        check_reachable,
        child_env,
        serve_argv,
        service_identity,
        share_state,
        spawn,
    )

    settings = settings_from_args(args, mode=args.mode, host=args.host, port=args.port,
                                  control_plane_url=args.control_plane, host_id=args.host_id,
                                  ca_file=args.ca_file)
    # The host token stays in this process: out of the environment every child inherits
    # (healer serve gets an allowlist anyway, healer.privsep), and out of Settings, which
    # healer serve receives whole.
    fleet = fleet_config(settings, os.environ.pop(TOKEN_ENV, None))
    setup_logging(settings.log_level)
    identity = service_identity(settings.service_user) if os.geteuid() == 0 else None
    if identity is not None and settings.serve == "spawn":
        check_reachable(identity, _code_paths())
    daemon = build_daemon(settings, publish_group=identity.gid if identity else None,
                          fleet=fleet)
    share_state(daemon.settings, identity)
    if identity is not None:
        check_reachable(identity, {"state directory": daemon.settings.state_dir,
                                   "runtime directory": daemon.settings.live_dir})
    supervisor = None
    if settings.serve == "spawn":
        env = child_env(os.environ, serve_settings(daemon.settings),
                        unprivileged=identity is not None)
        supervisor = Supervisor(lambda: spawn(serve_argv(), env, identity))
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    daemon.start()
    heap.settle()  # start-up is done: what it built stays
    try:
        if supervisor is not None:
            supervisor.start()
        while not stop.wait(SUPERVISE_EVERY_SECONDS):
            if supervisor is not None:
                supervisor.poll()
    finally:
        if supervisor is not None:
            supervisor.stop()
        daemon.stop()
    return 0
