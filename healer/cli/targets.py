"""``healer target list|resume``: the targets automation stood down on, and resuming one.

When someone changes a value healer manages (admin drift), healer leaves their value in
place, records ``superseded`` and pauses automation for that target (``kind:scope:key``,
as ``healer actions`` shows it) until a person resumes it here, through the API or from the
dashboard. This is per target on this host; the fleet's kill switch is ``healer fleet``.
``resume`` acts as the local administrator and is audited; the daemon's guard reads the
paused set on every check, so the next proposal for the target may be applied again.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from healer.act.engine import LOCAL_ADMIN
from healer.cli.common import print_json, settings_from_args
from healer.store.engine import open_store
from healer.store.errors import NotFound


def register(subparsers: Any) -> None:
    """Add ``target list|resume``."""
    parser = subparsers.add_parser("target", help="targets paused after admin drift")
    sub = parser.add_subparsers(dest="target_cmd", metavar="list|resume",
                                parser_class=type(parser))
    p = sub.add_parser("list", help="paused targets, newest first")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_list)
    p = sub.add_parser("resume", help=f"let automation change a target again (as {LOCAL_ADMIN},"
                                      " audited)")
    p.add_argument("target", help="kind:scope:key, as `healer target list` shows it")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_resume)
    parser.set_defaults(func=lambda args: (parser.print_help(), 2)[1])


def cmd_list(args: argparse.Namespace) -> int:
    rows = open_store(settings_from_args(args)).list_paused_targets()
    if args.json:
        print_json([r.model_dump(mode="json") for r in rows])
        return 0
    for r in rows:
        print(f"{r.target}\tsince {r.at.isoformat()}\t# {r.reason}")
    return 0


def cmd_resume(args: argparse.Namespace) -> int:
    repo = open_store(settings_from_args(args))
    try:
        repo.resume_target(args.target, LOCAL_ADMIN)
    except NotFound:
        print(f"healer: target {args.target!r} is not paused", file=sys.stderr)
        return 1
    if args.json:
        print_json({"target": args.target, "resumed": True})
    else:
        print(f"target resumed: {args.target}")
    return 0
