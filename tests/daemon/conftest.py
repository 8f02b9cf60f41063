"""The engine tests' journal on a settable clock, for tests that run the pipeline's cycles."""

from __future__ import annotations

from tests.act.conftest import clock, repo

__all__ = ["clock", "repo"]
