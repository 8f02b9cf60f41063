"""Shared fixtures: the shipped policy, a fixed clock, and context/action builders."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from guardrails import Action, CheckContext, Decision, Policy, check, load_policy, parse_action

FIXTURES = Path(__file__).parent / "fixtures"
# A Wednesday, 12:00 UTC: outside the weekend-night window of windows_only.yaml.
NOW = datetime(2026, 3, 4, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="session")
def policy() -> Policy:
    return load_policy()


def ctx(**kw: Any) -> CheckContext:
    """A context at NOW for one of a playbook's own remedies, unless told otherwise.

    ``CheckContext`` itself defaults to "outside the playbook" (the safe side);
    test_check_context asserts that default.
    """
    kw.setdefault("now", NOW)
    kw.setdefault("in_playbook", True)
    return CheckContext(**kw)


def act(**fields: Any) -> Action:
    return parse_action(fields)


@pytest.fixture
def decide(policy: Policy) -> Callable[..., Decision]:
    """decide(action_fields, **context_fields) under the default policy."""

    def _decide(fields: dict[str, Any], **kw: Any) -> Decision:
        return check(act(**fields), ctx(**kw), policy)

    return _decide


def sysctl(key: str, value: str, scope: str = "host") -> dict[str, Any]:
    return {"kind": "sysctl_write", "scope": scope, "key": key, "value": value}
