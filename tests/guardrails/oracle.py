"""An independent oracle for property tests: re-derives from the raw policy YAML (not the
Policy models) every bound an allowed action must satisfy."""

from __future__ import annotations

import fnmatch
import math
from typing import Any

import yaml

from guardrails import CheckContext
from guardrails.policy import default_policy_path

RAW = yaml.safe_load(default_policy_path().read_text())


def _approvers(ctx: CheckContext) -> int:
    return len({a.strip() for a in ctx.approvals if a.strip()})


def oracle_allows(action: Any, ctx: CheckContext) -> None:
    """Independent re-derivation of the bounds an allowed action must satisfy."""
    if action.kind in ("notify", "escalate"):
        return
    humans = _approvers(ctx)
    assert ctx.mode != "observe"
    if (
        ctx.mode == "advise"
        or not ctx.root
        or (not ctx.in_playbook and ctx.provenance != "operator")
    ):
        assert humans >= 1
    for scope in _scopes(action):
        assert not ctx.confine or any(
            scope == c or scope.startswith(c.rstrip("/") + "/") for c in ctx.confine
        ), scope
    assert ctx.changes_this_cycle < RAW["limits"]["max_changes_per_cycle"]
    assert ctx.changes_last_hour < RAW["limits"]["max_changes_per_hour"]
    target = f"{action.kind}:{action.scope}:{action.key_name}"
    assert not any(fnmatch.fnmatchcase(target, p) for p in RAW["protected_targets"]), target
    if action.kind == "cgroup_limit" and not _under_auto_root(action.path):
        assert humans >= 1, action.path
    if action.kind == "sysctl_write":
        assert not any(fnmatch.fnmatchcase(action.key, p) for p in RAW["protected"])
        assert ctx.key_exists is not False
        assert action.scope == "host" or action.scope.startswith("netns:")
    rule = _raw_rule(action)
    if rule is None:
        assert humans >= 1
        return
    assert rule["approval"] != "forbid"
    if rule["approval"] != "auto":
        assert humans >= 1
    _oracle_bounds(rule, action, ctx, humans)


def _oracle_bounds(rule: dict[str, Any], action: Any, ctx: CheckContext, humans: int) -> None:
    new = _nums(_value(action))
    if new is None:
        return
    for v in new:
        assert rule.get("min") is None or v >= rule["min"]
        assert rule.get("max") is None or v <= rule["max"]
        for fact, k in rule.get("max_facts", {}).items():
            assert fact in ctx.facts or humans >= 1
            if fact in ctx.facts and math.isfinite(ctx.facts[fact]):
                assert v <= ctx.facts[fact] * k
        for fact, k in rule.get("min_facts", {}).items():
            if fact in ctx.facts and math.isfinite(ctx.facts[fact]):
                assert v >= ctx.facts[fact] * k
    if humans >= 1 or ("max_step_percent" not in rule and rule.get("direction", "any") == "any"):
        return
    cur = _nums(ctx.current)
    assert cur is not None and len(cur) == len(new)
    pct, floor = rule.get("max_step_percent"), rule.get("step_floor", -math.inf)
    for v, c in zip(new, cur, strict=True):
        if rule.get("direction") == "up":
            assert v >= c
        if rule.get("direction") == "down":
            assert v <= c
        if pct is not None and v != c:
            assert v <= max(c * (1 + pct / 100), floor) if v > c else v >= c * (1 - pct / 100)


def _under_auto_root(path: str) -> bool:
    """Component by component: a glob's ``*`` never spans a ``/``."""
    parts = [p for p in path.split("/") if p not in ("", ".")]
    for root in RAW["cgroup_auto_roots"]:
        globs = [g for g in root.split("/") if g]
        if len(parts) >= len(globs) and all(
            fnmatch.fnmatchcase(part, g) for part, g in zip(parts, globs, strict=False)
        ):
            return True
    return False


def _raw_rule(action: Any) -> dict[str, Any] | None:
    subject = {
        "sysctl_write": lambda a: a.key,
        "cgroup_limit": lambda a: a.knob,
        "process_rlimit": lambda a: a.resource,
        "gpu_compute_mode": lambda a: a.mode,
        "gpu_timeslice": lambda a: a.level,
        "process_nice": lambda a: "nice",
        "gpu_power_limit": lambda a: "power_limit",
        "gpu_locked_clocks": lambda a: "locked_clocks",
        "gpu_mps_thread_percentage": lambda a: "mps",
    }[action.kind](action)
    for rule in RAW["rules"].get(action.kind, []):
        if fnmatch.fnmatchcase(subject, rule.get("match", "*")):
            return rule  # type: ignore[no-any-return]
    return None


def _value(action: Any) -> str | None:
    for field in ("value", "soft", "nice", "watts", "percent"):
        if hasattr(action, field):
            return str(getattr(action, field))
    if action.kind == "gpu_locked_clocks":
        return f"{action.min_mhz} {action.max_mhz}"
    return None


def _nums(text: str | None) -> list[float] | None:
    if text is None:
        return None
    try:
        return [math.inf if p == "max" else float(p) for p in text.split()] or None
    except ValueError:
        return None


def _scopes(action: Any) -> list[str]:
    out = [action.scope]
    if action.kind == "cgroup_limit":
        out.append(f"cgroup:{action.path}")
    if action.kind in ("process_rlimit", "process_nice"):
        out.append(f"pid:{action.pid}")
    if action.kind.startswith("gpu_"):
        out.append(f"gpu:{action.index}")
    return out
