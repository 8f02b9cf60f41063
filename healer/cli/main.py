"""``healer``: the command line. Each command group lives in its own module and is
registered here explicitly; nothing registers itself at import time.

Exit codes: 0 ok; 1 the thing checked is unhealthy or failed; 2 usage or config
error, reported as one line on stderr.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from guardrails.errors import PolicyError
from healer.errors import ConfigError, HealerError
from playbooks.errors import PlaybookError

# (module under healer.cli, what it provides). Each module defines
# ``register(subparsers) -> None`` that adds its commands with ``set_defaults(func=...)``;
# ``func(args) -> int`` returns the exit code.
COMMAND_MODULES: tuple[str, ...] = (
    "run",
    "serve",  # the unprivileged side healer run starts
    "snapshot",
    "journal",  # incidents, actions, approve, reject, rollback, persist
    "policy",
    "playbooks",
    "chaos",
    "eval",
    "users",  # user add|remove|passwd|role|list, token create|list|revoke
    "silences",  # silence add, list, remove
    "targets",  # target list, resume
    "fleet",  # host add, fleet pause|resume|status (a control plane)
)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"healer: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="healer", description="A self-healing agent for Linux and GPU hosts.")
    parser.add_argument("--config", type=str, default=None, help="TOML config file")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    seen: set[str] = set()
    for name in COMMAND_MODULES:
        module = importlib.import_module(f"healer.cli.{name}")
        before = set(sub.choices)
        module.register(sub)
        added = set(sub.choices) - before
        dup = added & seen
        if dup:
            raise RuntimeError(f"duplicate command {sorted(dup)}")
        seen |= added
    for name in seen:
        _add_config_flag(sub.choices[name])
    return parser


def _add_config_flag(parser: argparse.ArgumentParser) -> None:
    """Accept ``--config`` after any (sub)command too, as in ``healer run --config F``."""
    if "--config" not in parser._option_string_actions:
        parser.add_argument("--config", default=argparse.SUPPRESS, help="TOML config file")
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                _add_config_flag(child)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args))
    except (ConfigError, PolicyError, PlaybookError) as exc:  # our files' errors: exit 2
        print(f"healer: config error: {exc}", file=sys.stderr)
        return 2
    except HealerError as exc:
        print(f"healer: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `healer snapshot --json | head`: the reader left, not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
