"""Property tests: check never raises, nothing outside policy is allowed, and every allow
re-verifies against the raw policy YAML with an independent oracle (oracle.py)."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import replace
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from guardrails import CheckContext, Decision, check_raw, load_policy

from .oracle import oracle_allows
from .strategies import (
    PROTECTED_KEYS,
    action_dicts,
    contexts,
    favourable,
    json_values,
    near_bounds,
    well_formed,
)

POLICY = load_policy()
SETTINGS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
VERDICTS = {"allow", "needs_approval", "deny"}


@SETTINGS
@given(data=json_values | st.binary(max_size=40) | st.text(max_size=60), context=contexts)
def test_check_raw_never_raises_on_arbitrary_input(data: Any, context: CheckContext) -> None:
    action, decision = check_raw(data, context, POLICY)
    assert isinstance(decision, Decision) and decision.verdict in VERDICTS
    if action is None:
        assert decision.verdict == "deny" and decision.rules == ("P-parse",)


def _judge(data: Any, context: CheckContext) -> tuple[Any, Decision]:
    action, decision = check_raw(data, context, POLICY)
    assert "X-internal" not in decision.rules, decision.reasons  # a guard bug, never a "no"
    if decision.verdict == "allow":
        assert action is not None
        oracle_allows(action, context)
    return action, decision


@SETTINGS
@given(data=well_formed | action_dicts, context=contexts | favourable, as_json=st.booleans())
def test_allow_implies_every_bound_held(
    data: dict[str, Any], context: CheckContext, as_json: bool
) -> None:
    _judge(json.dumps(data) if as_json else data, context)


@SETTINGS
@given(key=st.sampled_from(PROTECTED_KEYS), value=st.integers(0, 10**6), context=contexts)
def test_protected_key_is_never_allowed(key: str, value: int, context: CheckContext) -> None:
    _, d = check_raw({"kind": "sysctl_write", "key": key, "value": str(value)}, context, POLICY)
    assert d.verdict == "deny"


@SETTINGS
@given(value=st.integers(65536, 2**62), context=contexts)
def test_out_of_range_value_is_never_allowed(value: int, context: CheckContext) -> None:
    data = {
        "kind": "sysctl_write",
        "scope": "netns:chaos-1",
        "key": "net.core.somaxconn",
        "value": str(value),
    }
    assert check_raw(data, context, POLICY)[1].verdict == "deny"


@SETTINGS
@given(cur=st.integers(129, 65535), data=st.data(), context=contexts)
def test_wrong_direction_is_never_allowed_without_a_human(
    cur: int, data: st.DataObject, context: CheckContext
) -> None:
    new = data.draw(st.integers(128, cur - 1))
    ctx = replace(context, current=str(cur), approvals=())
    a = {"kind": "sysctl_write", "key": "net.core.somaxconn", "value": str(new)}
    assert check_raw(a, ctx, POLICY)[1].verdict != "allow"


@settings(max_examples=1500, deadline=None)
@given(case=near_bounds())
def test_allow_near_bounds_implies_every_bound_held(
    case: tuple[dict[str, Any], CheckContext],
) -> None:
    data, context = case
    action, _ = _judge(data, context)
    assert action is not None


@SETTINGS
@given(data=well_formed, context=contexts | favourable)
def test_outside_confine_is_never_allowed(data: dict[str, Any], context: CheckContext) -> None:
    ctx = replace(context, confine=("netns:nowhere",))
    action, d = check_raw(data, ctx, POLICY)
    if action is not None and action.kind not in ("notify", "escalate"):
        assert d.verdict == "deny"


def test_the_strategies_reach_every_verdict_so_the_oracle_is_not_vacuous() -> None:
    """An oracle that only runs on "allow" proves nothing if nothing is ever allowed."""
    seen: Counter[str] = Counter()

    @settings(max_examples=400, deadline=None, database=None, derandomize=True)
    @given(data=well_formed | action_dicts, context=contexts | favourable)
    def sample(data: dict[str, Any], context: CheckContext) -> None:
        seen[_judge(data, context)[1].verdict] += 1

    @settings(max_examples=400, deadline=None, database=None, derandomize=True)
    @given(case=near_bounds())
    def sample_near(case: tuple[dict[str, Any], CheckContext]) -> None:
        seen[_judge(*case)[1].verdict] += 1

    sample()
    sample_near()
    assert seen["allow"] >= 20, seen
    assert seen["needs_approval"] >= 40 and seen["deny"] >= 40, seen
