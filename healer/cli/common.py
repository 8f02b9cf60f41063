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
