"""Outside tools the suite needs, and what happens when one is missing.

Under CI (``.ci/run`` exports ``HEALER_CI=1``) a missing tool fails the test: the project's
own files install every tool, so a missing one is a broken install, never a reason to
skip. Elsewhere it skips with a reason that says how to install it.

    chromium = require_tool("chromium", "Debian's chromium (make system-deps)")
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from healer.store.pgserver import dies_with_parent

__all__ = ["dies_with_parent", "missing", "require_tool", "under_ci"]

CI_ENV = "HEALER_CI"


def under_ci() -> bool:
    """True when the suite runs under ``.ci/run``."""
    return os.environ.get(CI_ENV, "") not in ("", "0")


def missing(reason: str) -> None:
    """Fail under CI, skip elsewhere; never returns."""
    if under_ci():
        pytest.fail(f"{reason} (missing under CI: the install step is broken)", pytrace=False)
    pytest.skip(reason)


def require_tool(name: str, install_hint: str) -> Path:
    """The path of executable ``name`` (a name on PATH or an absolute path)."""
    found = shutil.which(name)
    if found is None:
        missing(f"needs {name}: install {install_hint}")
    return Path(str(found))
