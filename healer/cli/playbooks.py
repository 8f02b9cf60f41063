"""``healer playbooks list|validate``: what the library watches, and whether it loads."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from healer.cli.common import print_json
from playbooks.loader import load_library, validate_dir


def register(subparsers: Any) -> None:
    """Add ``playbooks list`` and ``playbooks validate``."""
    parser = subparsers.add_parser("playbooks", help="list or validate the playbook library")
    sub = parser.add_subparsers(dest="playbooks_command", metavar="SUBCOMMAND",
                                parser_class=type(parser))
    p_list = sub.add_parser("list", help="ids, titles and what each playbook watches")
    p_list.add_argument("--json", action="store_true", help="print JSON")
    p_list.add_argument("--dir", type=Path, default=None, help="library directory")
    p_list.set_defaults(func=cmd_list)
    p_val = sub.add_parser("validate", help="report every error as file:line: key: problem")
    p_val.add_argument("dir", nargs="?", type=Path, default=None, help="library directory")
    p_val.set_defaults(func=cmd_validate)
    parser.set_defaults(func=lambda args: (parser.print_help(), 2)[1])


def cmd_list(args: argparse.Namespace) -> int:
    """Print the library (exit 2 when it does not load)."""
    library = load_library(args.dir)
    rows = [{"id": pb.id, "title": pb.title, "severity": pb.severity, "scope": pb.scope,
             "watches": pb.watches, "remedies": [r.action.kind for r in pb.remedies]}
            for pb in library]
    if args.json:
        print_json(rows)
        return 0
    width = max(len(r["id"]) for r in rows)
    for row in rows:
        print(f"{row['id']:<{width}}  {row['severity']:<8}  {row['title']}")
        print(f"{'':<{width}}  watches: {', '.join(row['watches'])}")
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    """Print every error; 0 when clean, 1 on any error."""
    library, errors = validate_dir(args.dir)
    for line in errors:
        print(line, file=sys.stderr)
    if library is None:
        print(f"{len(errors)} error(s)", file=sys.stderr)
        return 1
    print(f"ok: {len(library)} playbooks in {library.source}")
    return 0
