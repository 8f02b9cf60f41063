"""``healer policy check``: JSON actions in, one JSON decision per line out.

The CLI cannot know live values unless asked: by default the current value is unknown,
so rules that bound steps answer needs_approval. ``--read-current`` reads host-scope
sysctls from /proc/sys and process limits from /proc/<pid>/limits (read-only).
Exit 0 when every decision was printed (denies included); 2 on usage or policy errors.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from guardrails import CheckContext, Decision, Policy, check, check_raw, load_policy, parse_action
from guardrails.actions import ProcessRlimit, SysctlWrite
from guardrails.context import MODES, PROVENANCES
from guardrails.errors import PolicyError
from healer.cli.common import settings_from_args

# /proc/<pid>/limits row names per rlimit resource (proc(5)).
_LIMIT_ROWS = {
    "nofile": "Max open files",
    "nproc": "Max processes",
    "memlock": "Max locked memory",
    "core": "Max core file size",
    "stack": "Max stack size",
}


class UsageError(Exception):
    """A bad flag value; reported on one line, exit 2."""


def register(subparsers: Any) -> None:
    """Add ``policy check``."""
    policy = subparsers.add_parser("policy", help="guard policy tools")
    policy.set_defaults(func=lambda args: _usage(policy))
    sub = policy.add_subparsers(
        dest="policy_command", metavar="SUBCOMMAND", parser_class=type(policy)
    )
    cmd = sub.add_parser("check", help="decide JSON actions under the guard policy")
    cmd.add_argument(
        "action", nargs="?", help="one JSON action, or - to read JSON lines from stdin"
    )
    cmd.add_argument("--policy", default=None, help="policy YAML (default: settings, else shipped)")
    cmd.add_argument("--mode", choices=MODES, default="auto")
    cmd.add_argument("--provenance", choices=PROVENANCES, default="operator")
    cmd.add_argument("--outside-playbook", action="store_true", help="proposed outside a playbook")
    cmd.add_argument("--current", default=None, help="the live value of the target")
    cmd.add_argument(
        "--fact", action="append", default=[], metavar="K=V", help="a fact, e.g. hard_limit=4096"
    )
    cmd.add_argument(
        "--approver", action="append", default=[], metavar="NAME", help="an approval so far"
    )
    cmd.add_argument(
        "--confine", action="append", default=[], metavar="SCOPE", help="allowed scope"
    )
    cmd.add_argument("--no-root", action="store_true", help="decide as a non-root daemon would")
    cmd.add_argument("--now", default=None, help="ISO 8601 time (default: now, UTC)")
    cmd.add_argument(
        "--read-current", action="store_true", help="read live host values (read-only)"
    )
    cmd.add_argument("--json", action="store_true", help="output is always JSON lines")
    cmd.set_defaults(func=run_check)


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return 2


def run_check(args: argparse.Namespace) -> int:
    """Print one decision per input action; 0 when all printed, 2 on usage/policy errors."""
    if args.action is None:
        print(
            "healer: policy check needs a JSON action or - (JSON lines on stdin)", file=sys.stderr
        )
        return 2
    settings = settings_from_args(args) if args.read_current or not args.policy else None
    try:
        policy = load_policy(args.policy or (settings.policy_file if settings else None))
        base = _context(args)
    except PolicyError as exc:
        print(f"healer: policy error: {exc}", file=sys.stderr)
        return 2
    except UsageError as exc:
        print(f"healer: {exc}", file=sys.stderr)
        return 2
    proc = settings.procfs_root if settings and args.read_current else None
    for line in _inputs(args.action):
        decision = _decide(line, base, policy, proc)
        sys.stdout.write(json.dumps(decision_json(decision), separators=(",", ":")) + "\n")
    sys.stdout.flush()
    return 0


def decision_json(decision: Decision) -> dict[str, Any]:
    """The ARCHITECTURE.md decision shape, with ``approval`` only when set."""
    out: dict[str, Any] = {
        "verdict": decision.verdict,
        "reasons": list(decision.reasons),
        "rules": list(decision.rules),
    }
    if decision.approval is not None:
        out["approval"] = decision.approval
    return out


def _inputs(arg: str) -> Iterator[str]:
    if arg != "-":
        yield arg
        return
    for line in sys.stdin:
        if line.strip():
            yield line


def _decide(line: str, base: CheckContext, policy: Policy, proc: Path | None) -> Decision:
    if proc is None:
        return check_raw(line, base, policy)[1]
    try:
        action = parse_action(line)
    except Exception:  # the parse error itself is reported by check_raw
        return check_raw(line, base, policy)[1]
    return check(action, _read_live(action, base, proc), policy)


def _context(args: argparse.Namespace) -> CheckContext:
    facts: dict[str, float] = {}
    for item in args.fact:
        name, sep, value = item.partition("=")
        try:
            facts[name.strip()] = float(value)
        except ValueError:
            sep = ""
        if not sep or not name.strip():
            raise UsageError(f"--fact wants NAME=NUMBER, got {item!r}")
    try:
        now = datetime.fromisoformat(args.now) if args.now else datetime.now(UTC)
    except ValueError as exc:
        raise UsageError(f"--now: {exc}") from exc
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    return CheckContext(
        now=now,
        mode=args.mode,
        provenance=args.provenance,
        in_playbook=not args.outside_playbook,
        current=args.current,
        facts=facts,
        approvals=tuple(args.approver),
        confine=tuple(args.confine),
        root=not args.no_root,
    )


def _read_live(action: Any, base: CheckContext, proc: Path) -> CheckContext:
    """Fill current value, key existence and hard limits from /proc (read-only)."""
    if isinstance(action, SysctlWrite) and action.scope == "host":
        path = proc.joinpath("sys", *action.key.split("."))
        try:
            current = " ".join(path.read_text(encoding="ascii").split())
        except FileNotFoundError:
            return replace(base, key_exists=False)
        except (OSError, UnicodeDecodeError):
            return base
        return replace(base, key_exists=True, current=base.current or current)
    if isinstance(action, ProcessRlimit):
        soft, hard = _read_limit(proc / str(action.pid) / "limits", action.resource)
        facts = dict(base.facts)
        if hard is not None:
            facts.setdefault("hard_limit", hard)
        return replace(base, current=base.current or soft, facts=facts)
    return base


def _read_limit(path: Path, resource: str) -> tuple[str | None, float | None]:
    row = _LIMIT_ROWS[resource]
    try:
        text = path.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError):
        return None, None
    for line in text.splitlines():
        if line.startswith(row):
            fields = line[len(row) :].split()
            if len(fields) >= 2:
                hard = float(fields[1]) if fields[1].isdigit() else None
                return fields[0], hard
    return None, None
