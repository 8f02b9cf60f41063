"""``healer silence add|list|remove``: mark an unclassified kernel-message template harmless
for a while, as Alertmanager's silences do for alerts.

A silence names a template (``--template``) or an unclassified incident (``--incident``, or
its ``--fingerprint``); a template a playbook claims is refused. The commands act as the
local administrator and every add and remove is audited; the running daemon picks a change
up within a few seconds.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

from healer.act.engine import LOCAL_ADMIN
from healer.cli.common import print_json, settings_from_args
from healer.detect.silences import silence_for
from healer.errors import ConfigError
from healer.models import UNCLASSIFIED, Incident, SilenceRefused, split_fingerprint
from healer.store.engine import open_store
from healer.store.errors import NotFound
from healer.store.repository import Repository
from healer.store.rows import SilenceRow
from playbooks.loader import load_library

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def register(subparsers: Any) -> None:
    """Add ``silence add|list|remove``."""
    parser = subparsers.add_parser("silence", help="silence unclassified kernel messages")
    sub = parser.add_subparsers(dest="silence_cmd", metavar="add|list|remove",
                                parser_class=type(parser))
    p = sub.add_parser("add", help=f"silence a template (as {LOCAL_ADMIN}, audited)")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--template", help="the message template, as the incident shows it")
    what.add_argument("--incident", type=int, help="an unclassified incident's id")
    what.add_argument("--fingerprint", help="an unclassified incident's fingerprint")
    p.add_argument("--comment", required=True, help="why it is harmless")
    until = p.add_mutually_exclusive_group()
    until.add_argument("--duration", type=_duration, help="30m, 12h, 7d (default 24h)")
    until.add_argument("--until", type=_when, help="an ISO 8601 time (UTC if no zone)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_add)
    p = sub.add_parser("list", help="the silences, newest first")
    p.add_argument("--active", action="store_true", help="only those not expired")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_list)
    p = sub.add_parser("remove", help=f"remove a silence (as {LOCAL_ADMIN}, audited)")
    p.add_argument("id", type=int)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_remove)


def _duration(text: str) -> timedelta:
    unit = _UNITS.get(text[-1:])
    if unit is None or not text[:-1].isdigit():
        raise argparse.ArgumentTypeError(f"a duration like 30m, 12h or 7d, not {text!r}")
    return timedelta(seconds=int(text[:-1]) * unit)


def _when(text: str) -> datetime:
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"an ISO 8601 time, not {text!r}") from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def silence_json(row: SilenceRow, now: datetime) -> dict[str, Any]:
    """A silence as the API shows it."""
    return {**row.model_dump(mode="json"), "active": row.active(now)}


def _incident(repo: Repository, args: argparse.Namespace) -> Incident | None:
    if args.incident is not None:
        found = repo.get_incident(args.incident)
        if found is None or found.host_id != repo.host_id:
            raise ConfigError("incident", f"no incident {args.incident}")
        return found
    if args.fingerprint is not None:
        playbook, scope, subject = split_fingerprint(args.fingerprint)
        if playbook != UNCLASSIFIED or not subject:
            raise SilenceRefused("only an unclassified incident's fingerprint "
                                 "(unclassified|scope|template) can be silenced")
        found = repo.find_incident(playbook, scope, subject=subject)
        if found is None:
            raise ConfigError("fingerprint", "no incident with this fingerprint")
        return found
    return None


def cmd_add(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    repo = open_store(settings)
    now = repo.now()
    incident = _incident(repo, args)
    request = silence_for(load_library(settings.playbooks_dir).playbooks, comment=args.comment,
                          now=now, template=None if incident else args.template,
                          incident=incident, duration=args.duration, expires_at=args.until)
    row = repo.add_silence(request.template, request.comment, LOCAL_ADMIN, request.expires_at)
    if args.json:
        print_json(silence_json(row, now))
    else:
        print(f"silence {row.id} added until {row.expires_at.isoformat()}: {row.template}")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    repo = open_store(settings_from_args(args))
    now = repo.now()
    rows = repo.list_silences(active_at=now if args.active else None)
    if args.json:
        print_json([silence_json(r, now) for r in rows])
        return 0
    for r in rows:
        state = "active" if r.active(now) else "expired"
        print(f"{r.id}\t{state}\tuntil {r.expires_at.isoformat()}\t{r.created_by}\t"
              f"{r.template}\t# {r.comment}")
    return 0


def cmd_remove(args: argparse.Namespace) -> int:
    repo = open_store(settings_from_args(args))
    try:
        row = repo.remove_silence(args.id, LOCAL_ADMIN)
    except NotFound:
        print(f"healer: no silence {args.id}", file=sys.stderr)
        return 1
    if args.json:
        print_json(silence_json(row, repo.now()))
    else:
        print(f"silence {row.id} removed: {row.template}")
    return 0
