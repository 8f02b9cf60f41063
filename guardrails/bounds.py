"""Per-kind bounds: what a rule matches on, the numbers it bounds, and the bounds test.

Each action kind has a *subject* (what a rule's ``match`` glob sees) and zero or more
numbers (what ``min``/``max``/facts/step/direction bound). Hard bounds (range, facts)
deny; soft bounds (step, direction, an unknown live value) need a human.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from guardrails import linear
from guardrails.actions import (
    CgroupLimit,
    Escalate,
    GpuComputeMode,
    GpuLockedClocks,
    GpuMpsThreadPercentage,
    GpuPowerLimit,
    GpuTimeslice,
    Notify,
    ProcessNice,
    ProcessRlimit,
    SysctlWrite,
)
from guardrails.context import CheckContext
from guardrails.policy import Rule

Numbers = tuple[float, ...]
_NUMBER_RE = linear.compile(r"-?[0-9]{1,20}(?:\.[0-9]{1,12})?")
_INF = math.inf


class Sink(Protocol):
    """Where bound findings go (check's accumulator)."""

    def deny(self, reason: str, rule: str) -> None: ...
    def require(self, need: int, reason: str, rule: str) -> None: ...


# Per catalog class: (subject, numbers). Dispatch on the exact type: catalog models are
# final, and one dict lookup beats a chain of isinstance checks on the hot path.
_KINDS: dict[type, tuple[Callable[[Any], str], Callable[[Any], Numbers | None]]] = {
    SysctlWrite: (lambda a: a.key, lambda a: parse_numbers(a.value)),
    CgroupLimit: (lambda a: a.knob, lambda a: parse_numbers(a.value)),
    ProcessRlimit: (lambda a: a.resource, lambda a: (float(a.soft),)),
    ProcessNice: (lambda a: "nice", lambda a: (float(a.nice),)),
    GpuPowerLimit: (lambda a: "power_limit", lambda a: (float(a.watts),)),
    GpuLockedClocks: (lambda a: "locked_clocks", lambda a: (float(a.min_mhz), float(a.max_mhz))),
    GpuComputeMode: (lambda a: a.mode, lambda a: None),
    GpuMpsThreadPercentage: (lambda a: "mps", lambda a: (float(a.percent),)),
    GpuTimeslice: (lambda a: a.level, lambda a: None),
    Notify: (lambda a: "message", lambda a: None),
    Escalate: (lambda a: "message", lambda a: None),
}


def subject(action: object) -> str:
    """What a rule's ``match`` glob is tested against, per kind."""
    entry = _KINDS.get(type(action))
    return entry[0](action) if entry else "*"


def numbers(action: object) -> Numbers | None:
    """The numbers a rule bounds for this action; None when the kind has none."""
    entry = _KINDS.get(type(action))
    return entry[1](action) if entry else None


def parse_numbers(text: str | None) -> Numbers | None:
    """Whitespace-separated numbers; "max", "unlimited" and "infinity" read as +inf."""
    if text is None:
        return None
    parts = text.split()
    if not parts or len(parts) > 8:
        return None
    out: list[float] = []
    for part in parts:
        if part in ("max", "unlimited", "infinity"):
            out.append(_INF)
        elif _NUMBER_RE.fullmatch(part):
            out.append(float(part))
        else:
            return None
    return tuple(out)


def judge(rule: Rule, values: Numbers, ctx: CheckContext, sink: Sink) -> None:
    """Test ``values`` against the rule's range, fact bounds, direction and step."""
    _range(rule, values, sink)
    _facts(rule, values, ctx, sink)
    if not rule.needs_current:
        return
    current = parse_numbers(ctx.current)
    if current is None:
        why = "unknown" if ctx.current is None else f"{ctx.current[:40]!r} is not a number"
        sink.require(1, f"current value {why}; rule {rule.id} bounds steps", rule.id)
    elif len(current) != len(values):
        sink.require(1, f"new value has {len(values)} fields, current has {len(current)}", rule.id)
    else:
        _direction(rule, values, current, sink)
        _step(rule, values, current, sink)


def _range(rule: Rule, values: Numbers, sink: Sink) -> None:
    if rule.min is not None and any(v < rule.min for v in values):
        sink.deny(f"value {_fmt(values)} below minimum {num(rule.min)} of rule {rule.id}", rule.id)
    if rule.max is not None and any(v > rule.max for v in values):
        sink.deny(f"value {_fmt(values)} above maximum {num(rule.max)} of rule {rule.id}", rule.id)


def _facts(rule: Rule, values: Numbers, ctx: CheckContext, sink: Sink) -> None:
    for name, factor in rule.max_facts.items():
        fact = _fact(ctx, name)
        if fact is None:
            sink.require(1, f"fact {name} unknown; rule {rule.id} bounds by it", rule.id)
        elif any(v > fact * factor for v in values):
            limit = f"{factor:g} x {name} ({num(fact * factor)})"
            sink.deny(f"value {_fmt(values)} above {limit} of rule {rule.id}", rule.id)
    for name, factor in rule.min_facts.items():
        fact = _fact(ctx, name)
        if fact is None:
            sink.require(1, f"fact {name} unknown; rule {rule.id} bounds by it", rule.id)
        elif any(v < fact * factor for v in values):
            limit = f"{factor:g} x {name} ({num(fact * factor)})"
            sink.deny(f"value {_fmt(values)} below {limit} of rule {rule.id}", rule.id)


def _fact(ctx: CheckContext, name: str) -> float | None:
    return _finite(ctx.facts.get(name))


def _finite(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None  # NaN or inf would make every comparison vacuous
    return float(value)


def upper_bound(rule: Rule, facts: Mapping[str, float]) -> float | None:
    """The highest value ``rule``'s range and fact bounds allow (inf when none bounds it);
    None when a fact it bounds by is unknown (the guard would ask a human)."""
    bound = rule.max if rule.max is not None else _INF
    for name, factor in rule.max_facts.items():
        fact = _finite(facts.get(name))
        if fact is None:
            return None
        bound = min(bound, fact * factor)
    return bound


def step_ceiling(rule: Rule, current: float) -> float:
    """The highest value one upward step from ``current`` may reach under ``rule``."""
    if rule.max_step_percent is None:
        return _INF
    floor = rule.step_floor if rule.step_floor is not None else -_INF
    return max(current + abs(current) * rule.max_step_percent / 100.0, floor)


def _direction(rule: Rule, values: Numbers, current: Numbers, sink: Sink) -> None:
    pairs = tuple(zip(values, current, strict=True))
    if rule.direction == "up" and any(v < c for v, c in pairs):
        sink.require(
            1, f"rule {rule.id} allows raises only ({_fmt(current)} -> {_fmt(values)})", rule.id
        )
    elif rule.direction == "down" and any(v > c for v, c in pairs):
        sink.require(
            1, f"rule {rule.id} allows cuts only ({_fmt(current)} -> {_fmt(values)})", rule.id
        )


def _step(rule: Rule, values: Numbers, current: Numbers, sink: Sink) -> None:
    pct = rule.max_step_percent
    if pct is None:
        return
    for v, c in zip(values, current, strict=True):
        if v == c:
            continue
        if math.isinf(c) or math.isinf(v):
            ok = False  # no bounded step to or from "unlimited"
        elif v > c:
            ok = v <= step_ceiling(rule, c)
        else:
            ok = v >= c - abs(c) * pct / 100.0
        if not ok:
            sink.require(
                1,
                f"step {_fmt(current)} -> {_fmt(values)} exceeds {pct:g}% of rule {rule.id}",
                rule.id,
            )
            return


def _fmt(values: Numbers) -> str:
    return " ".join(num(v) for v in values)


def num(v: float) -> str:
    """A number as an operator would write it: integers without exponent, inf as max."""
    if math.isinf(v):
        return "max" if v > 0 else "-max"
    return str(int(v)) if v.is_integer() else f"{v:g}"
