"""Helpers shared by the CLI modules: settings from flags, JSON output."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from healer.settings import Settings, load_settings


def settings_from_args(args: argparse.Namespace, **flags: Any) -> Settings:
    """Build Settings from ``--config`` plus the given flag overrides (None = unset)."""
    config = getattr(args, "config", None)
    return load_settings(Path(config) if config else None, **flags)


def print_json(obj: Any) -> None:
    json.dump(obj, sys.stdout, default=str, sort_keys=False)
    sys.stdout.write("\n")


ROW_ID_MAX = 2**63 - 1  # row ids are 64-bit; a larger number names no row


def row_id(text: str) -> int:
    """An argparse type: a journal or token id, 1 .. 2**63-1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an id") from None
    if not 1 <= value <= ROW_ID_MAX:
        raise argparse.ArgumentTypeError(f"{text!r} is not an id (1 .. {ROW_ID_MAX})")
    return value
