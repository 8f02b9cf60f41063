"""``healer incidents|actions|approve|reject|rollback|persist``: the journal from the shell.

``incidents``, ``actions``, ``approve`` and ``reject`` only read or write the database.
``approve|reject ID --as USER`` records USER's vote (USER must be a healer user with the
approver role; there is no default, so a vote always names a person): votes count distinct
users, and the running daemon decides the request on its next cycle, then re-checks the
guard before applying. ``rollback`` and ``persist`` are local root operator commands that
restore originals / write the sysctl drop-in directly (the daemon's compare-and-set
journal keeps the two from racing); they act as ``local-admin``. All are audit-logged.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from datetime import UTC, datetime
from typing import Any

from healer.act.engine import LOCAL_ADMIN, ChangeEngine
from healer.act.seal import JournalSeal
from healer.cli.common import print_json, row_id, settings_from_args
from healer.errors import ConfigError, HealerError
from healer.models import ActionRecord, ActionState, Incident, IncidentStatus
from healer.settings import Settings
from healer.store.engine import open_store
from healer.store.repository import Repository
from healer.store.votes import needed, record_vote, tally, users_by_id

S = ActionState


def register(subparsers: Any) -> None:
    """Add the journal commands."""
    p = subparsers.add_parser("incidents", help="list incidents, newest first")
    p.add_argument("--json", action="store_true")
    p.add_argument("--status", choices=[s.value for s in IncidentStatus], default=None)
    p.add_argument("--limit", type=int, default=100)
    p.set_defaults(func=cmd_incidents)
    p = subparsers.add_parser("actions", help="list the action journal, newest first")
    p.add_argument("--json", action="store_true")
    p.add_argument("--state", choices=[s.value for s in ActionState], action="append")
    p.add_argument("--limit", type=int, default=100)
    p.set_defaults(func=cmd_actions)
    for name, helptext in (("approve", "approve a proposal"), ("reject", "reject a proposal")):
        p = subparsers.add_parser(name, help=f"{helptext}: record a named user's vote")
        p.add_argument("id", type=row_id)
        p.add_argument("--as", dest="voter", required=True, metavar="USER",
                       help="the healer user (approver role) casting the vote")
        p.add_argument("--comment", default="")
        p.add_argument("--json", action="store_true")
        p.set_defaults(func=cmd_vote, approve=name == "approve")
    p = subparsers.add_parser("rollback", help="restore the original value (local root)")
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("id", type=row_id, nargs="?")
    target.add_argument("--all", action="store_true", help="every change in place, newest first")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_rollback)
    p = subparsers.add_parser("persist", help="write a verified host sysctl to the drop-in file")
    p.add_argument("id", type=row_id)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_persist)
    p = subparsers.add_parser("journal", help="the sealed action journal (local root)")
    jsub = p.add_subparsers(dest="journal_command", metavar="COMMAND", required=True)
    a = jsub.add_parser("adopt", help="seal every journal row again under the current key, "
                                      "after checking them (a lost key, a restored backup)")
    a.add_argument("--json", action="store_true")
    a.set_defaults(func=cmd_journal_adopt)


def _repo(args: argparse.Namespace) -> tuple[Settings, Repository]:
    settings = settings_from_args(args)
    return settings, open_store(settings)


def incident_json(incident: Incident) -> dict[str, Any]:
    """The ARCHITECTURE.md incident shape (evidence left out)."""
    data = incident.model_dump(mode="json", exclude={"evidence"})
    diag = incident.diagnosis
    opinion = None if diag is None or diag.second_opinion is None else \
        diag.second_opinion.model_dump(mode="json", exclude={"proposals"})
    data["diagnosis"] = None if diag is None else {
        "root_cause": diag.root_cause, "source": diag.source,
        "confidence": diag.confidence, "explanation": diag.explanation,
        "second_opinion": opinion,  # the LLM's proposals are action records
    }
    return data


def record_json(repo: Repository, record: ActionRecord) -> dict[str, Any]:
    """The ARCHITECTURE.md action record shape (plus provenance, deadline, rationale),
    with its ``transitions``."""
    return records_json(repo, [record])[0]


def records_json(repo: Repository, records: list[ActionRecord]) -> list[dict[str, Any]]:
    """``record_json`` of many records, their transitions read in one query."""
    moves = repo.transitions([r.id for r in records if r.id is not None])
    return [r.model_dump(mode="json") | {"transitions": [
        t.model_dump(mode="json") for t in moves.get(r.id or 0, [])]} for r in records]


def _line(record: ActionRecord) -> str:
    a = record.action
    values = f"{record.original or '-'} -> {record.applied or '-'}"
    return (f"{record.id:>5}  {record.state.value:<17} {a.kind:<22} {a.target}  {values}  "
            f"[{record.decision.verdict}: {'; '.join(record.decision.reasons)[:80]}]")


def cmd_incidents(args: argparse.Namespace) -> int:
    """Print incidents."""
    _, repo = _repo(args)
    status = IncidentStatus(args.status) if args.status else None
    incidents = repo.list_incidents(status=status, limit=args.limit)
    if args.json:
        print_json([incident_json(i) for i in incidents])
        return 0
    for i in incidents:
        diag = i.diagnosis.root_cause if i.diagnosis else "-"
        print(f"{i.id:>5}  {i.status.value:<8} {i.severity:<8} {i.playbook:<28} {i.scope:<24} "
              f"x{i.count:<5} {i.last_seen.isoformat()}  diagnosis={diag}")
    return 0


def cmd_actions(args: argparse.Namespace) -> int:
    """Print the journal."""
    _, repo = _repo(args)
    states = [ActionState(s) for s in args.state] if args.state else None
    records = repo.list_actions(states=states, limit=args.limit)
    if args.json:
        print_json(records_json(repo, records))
    else:
        for record in records:
            print(_line(record))
    return 0


def cmd_vote(args: argparse.Namespace) -> int:
    """Record a named user's vote; the daemon decides the request on its next cycle."""
    settings, repo = _repo(args)
    if repo.get_user(args.voter) is None:
        raise ConfigError("--as", f"no healer user {args.voter!r} (see healer user add)")
    result = record_vote(repo, args.id, args.voter, args.approve, args.comment,
                         now=datetime.now(UTC), ttl_seconds=settings.approval_ttl_seconds,
                         via="cli")  # VoteRefused is a HealerError: main prints it, exit 1
    record = result.record
    counted = tally(result.votes, users_by_id(repo))
    if args.json:
        print_json(record_json(repo, record) | {"approved_by": list(counted.approvers),
                                          "rejected_by": list(counted.rejecters)})
        return 0
    verb = "approval" if args.approve else "rejection"
    print(f"action {args.id}: {args.voter}'s {verb} recorded; "
          f"{len(counted.approvers)} of {needed(record)} approvals, "
          f"{len(counted.rejecters)} rejections; the daemon decides on its next cycle "
          "and re-checks the guard before applying")
    return 0


def _engine(settings: Settings, repo: Repository) -> ChangeEngine:
    from healer.act.registry import build_actuators
    from healer.host.gpu import build_gpu_backend

    gpu = None
    # Without a usable GPU backend, GPU changes cannot be rolled back from here.
    with contextlib.suppress(HealerError):
        gpu = build_gpu_backend(settings)
    repo.follow_fleet_reporting()  # in a fleet, an operator's rollback is reported too
    return ChangeEngine.from_settings(settings, repo=repo,
                                      actuators=build_actuators(settings, gpu=gpu),
                                      seal=JournalSeal.open(repo, settings.key_dir))


def cmd_rollback(args: argparse.Namespace) -> int:
    """Restore originals: one action, or every change in place (newest first)."""
    settings, repo = _repo(args)
    engine = _engine(settings, repo)
    if args.all:
        records = engine.rollback_all(LOCAL_ADMIN)
        left = list(repo.iter_actions(states=(S.APPLYING, S.VERIFYING, S.VERIFIED)))
    else:
        records, left = [engine.rollback(args.id, LOCAL_ADMIN)], []
    if args.json:
        print_json(records_json(repo, records))
    else:
        for record in records:
            print(_line(record))
        for record in left:
            print(f"not rolled back: {_line(record)}", file=sys.stderr)
    failed = [r for r in records if r.state != S.ROLLED_BACK] + left
    return 1 if failed else 0


def cmd_persist(args: argparse.Namespace) -> int:
    """Persist a verified host sysctl in the drop-in file."""
    settings, repo = _repo(args)
    record = _engine(settings, repo).persist(args.id, LOCAL_ADMIN)
    if args.json:
        print_json(record_json(repo, record) | {"persisted_to": str(settings.sysctl_dropin)})
    else:
        print(f"action {args.id}: persisted to {settings.sysctl_dropin}")
    return 0


def cmd_journal_adopt(args: argparse.Namespace) -> int:
    """Vouch for the journal as it is: every row is sealed again under the current key."""
    settings, repo = _repo(args)
    count = JournalSeal.open(repo, settings.key_dir).adopt(LOCAL_ADMIN)
    if args.json:
        print_json({"adopted": count})
    else:
        print(f"journal adopted: {count} row(s) sealed under {settings.key_dir}")
    return 0
