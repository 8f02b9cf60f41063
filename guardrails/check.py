"""``check``: the single gate every proposed change passes, at proposal and at apply time.

Pure and total: no I/O, never raises. The stages run in a fixed order and every
finding is collected, so a deny lists all its reasons:

    parse/shape -> confine -> protected -> key_exists -> paused -> rule bounds
    -> cgroup auto roots -> rate limit/cooldown -> blast radius -> provenance -> disruptive
    -> mode cap -> approval class (approvals counted) -> maintenance window

A finding either denies (hard: protected, out of range, outside confine, rate) or raises
the number of distinct human approvals the change needs (soft: step, direction, unknown
live value, approval class, provenance, mode). Zero needed -> allow; N needed and N
distinct approvers in the context -> allow (the apply-time re-check after a human said
yes); otherwise needs_approval with ``approval`` "approve" or "quorum:N".
"""

from __future__ import annotations

from typing import Any

from guardrails.actions import (
    Action,
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
    parse_action,
)
from guardrails.bounds import Numbers, judge, numbers, subject
from guardrails.context import CheckContext
from guardrails.decision import Decision
from guardrails.history import history_reasons
from guardrails.policy import Policy, PolicyIndex, approvals_needed
from guardrails.scopes import confine_reasons, shape_reasons

_ACTION_TYPES = (
    SysctlWrite,
    CgroupLimit,
    ProcessRlimit,
    ProcessNice,
    GpuPowerLimit,
    GpuLockedClocks,
    GpuComputeMode,
    GpuMpsThreadPercentage,
    GpuTimeslice,
    Notify,
    Escalate,
)
# Notify and escalate change nothing: they only tell a human. Scope confinement, rate
# limits, blast radius, provenance and mode caps do not hold them back, with one exception:
# a message the LLM wrote outside the playbook's remedies is untrusted text (it may carry
# what an attacker put in a kernel line), so a person reads it before it is sent.
_MESSAGES = (Notify, Escalate)
_MODE_RANK = {"observe": 0, "advise": 1, "auto": 2}
_REASON_MAX = 400  # reasons may quote untrusted input; keep them bounded


class _Acc:
    """Findings so far: deny reasons, and the approvals the change needs."""

    __slots__ = ("deny_reasons", "deny_rules", "need", "need_reasons", "need_rules", "ok_rules")

    def __init__(self) -> None:
        self.deny_reasons: list[str] = []
        self.deny_rules: list[str] = []
        self.need = 0
        self.need_reasons: list[str] = []
        self.need_rules: list[str] = []
        self.ok_rules: list[str] = []

    def deny(self, reason: str, rule: str) -> None:
        self.deny_reasons.append(reason[:_REASON_MAX])
        if rule not in self.deny_rules:
            self.deny_rules.append(rule)

    def require(self, need: int, reason: str, rule: str) -> None:
        if need <= 0:
            return
        self.need = max(self.need, need)
        self.need_reasons.append(reason[:_REASON_MAX])
        if rule not in self.need_rules:
            self.need_rules.append(rule)

    def require_class(self, approval: str, reason: str, rule: str) -> None:
        need = approvals_needed(approval)
        if need is None:
            self.deny(f"{reason}: forbidden by policy", rule)
        else:
            self.require(need, reason, rule)


def check(action: Action, context: CheckContext, policy: Policy) -> Decision:
    """Decide one proposed action under ``policy``; pure, total, never raises."""
    try:
        if not isinstance(action, _ACTION_TYPES):
            return _deny_one(f"not a catalog action: {type(action).__name__}", "P-parse")
        return _check(action, context, policy)
    except Exception as exc:  # a guard bug must fail closed, never allow and never crash
        return _deny_one(f"internal guard error: {type(exc).__name__}", "X-internal")


def check_raw(data: Any, context: CheckContext, policy: Policy) -> tuple[Action | None, Decision]:
    """Parse untrusted input into an action and check it; a parse failure is a deny."""
    try:
        action = parse_action(data)
    except Exception as exc:  # pydantic ValidationError, bad JSON, bad bytes, recursion
        return None, _deny_one(f"unparseable action: {_parse_problem(exc)}", "P-parse")
    return action, check(action, context, policy)


def _check(action: Any, ctx: CheckContext, policy: Policy) -> Decision:
    acc = _Acc()
    message = isinstance(action, _MESSAGES)
    target: str = action.target
    values = numbers(action)
    for reason in shape_reasons(action):
        acc.deny(reason, "P-shape")
    if not message and ctx.confine:
        for reason in confine_reasons(action, ctx.confine):
            acc.deny(reason, "P-confine")
    _protected(action, target, ctx, policy.index, acc)
    _rule(action, values, ctx, policy, acc)
    _auto_roots(action, policy, acc)
    if not message:
        for reason, rule in history_reasons(target, values, ctx, policy.limits):
            acc.deny(reason, rule)
        _caps(action, ctx, policy, acc)
        _provenance(action, ctx, policy, acc)
    elif ctx.provenance == "llm" and not ctx.in_playbook:
        acc.require_class(policy.provenance.llm_outside_playbook,
                          "a message the LLM wrote outside the playbook's remedies: a person "
                          "reads it first", "V-outside-playbook")
    return _verdict(action, ctx, policy, acc)


def _protected(action: Any, target: str, ctx: CheckContext, index: PolicyIndex, acc: _Acc) -> None:
    if isinstance(action, SysctlWrite):
        if index.is_protected(action.key):
            acc.deny(f"{action.key} is a protected key", "P-protected")
        if ctx.key_exists is False:
            acc.deny(
                f"{action.key} does not exist under {action.scope}'s /proc/sys", "P-key-missing"
            )
    if index.is_protected_target(target):
        acc.deny(f"{target} is a protected target", "P-protected-target")
    if target in ctx.paused_targets:
        # Admin drift: a person set this by hand; automation stands down until a human says so.
        acc.require(1, f"automation paused for {target} after an admin change", "D-paused")


def _rule(
    action: Any, values: Numbers | None, ctx: CheckContext, policy: Policy, acc: _Acc
) -> None:
    subj = subject(action)
    rule = policy.index.rule_for(action.kind, subj)
    if rule is None:
        if isinstance(action, SysctlWrite):
            acc.require_class(
                policy.unknown_sysctl, f"no policy rule for sysctl {subj}", "U-unknown-sysctl"
            )
        else:
            acc.require_class(
                policy.default_approval, f"no policy rule for {action.kind} {subj}", "U-default"
            )
        return
    if rule.approval != "auto":
        acc.require_class(rule.approval, f"rule {rule.id} needs {rule.approval}", rule.id)
    if values is not None:
        judge(rule, values, ctx, acc)
    acc.ok_rules.append(rule.id)


def _auto_roots(action: Any, policy: Policy, acc: _Acc) -> None:
    """Automatic cgroup changes only under the roots the policy names (issue: a container's
    or a delegated user's own limit must not be raised behind the admin's back)."""
    if isinstance(action, CgroupLimit) and not policy.index.in_auto_roots(action.path):
        acc.require(1, f"cgroup {action.path} is outside the policy's cgroup_auto_roots: "
                       "a limit someone set there on purpose changes only with a person's "
                       "approval", "C-auto-roots")


def _caps(action: Any, ctx: CheckContext, policy: Policy, acc: _Acc) -> None:
    if action.disruptive:
        acc.require(1, f"{action.kind} can interrupt running work", "K-disruptive")
    mode = min(_MODE_RANK.get(ctx.mode, 0), _MODE_RANK[policy.max_mode])
    if mode == 0:
        acc.deny("observe mode applies nothing", "M-observe")
    elif mode == 1:
        acc.require(1, "advise mode: a human approves every change", "M-advise")
    if not ctx.root:
        acc.require(1, "not root: mode capped at advise", "M-no-root")
    if ctx.changes_this_cycle >= policy.limits.max_changes_per_cycle:
        limit = policy.limits.max_changes_per_cycle
        acc.deny(
            f"blast radius: {ctx.changes_this_cycle} changes this cycle (max {limit})", "B-cycle"
        )
    if ctx.changes_last_hour >= policy.limits.max_changes_per_hour:
        limit = policy.limits.max_changes_per_hour
        acc.deny(
            f"blast radius: {ctx.changes_last_hour} changes in the last hour (max {limit})",
            "B-hour",
        )


def _provenance(action: Any, ctx: CheckContext, policy: Policy, acc: _Acc) -> None:
    rules = policy.provenance
    floor = getattr(rules, ctx.provenance, "approve")
    if floor != "auto":
        acc.require_class(floor, f"proposed by {ctx.provenance}", f"V-{ctx.provenance}")
    if not ctx.in_playbook and ctx.provenance != "operator":
        acc.require_class(
            rules.llm_outside_playbook,
            "proposed outside the playbook's remedies: never automatic",
            "V-outside-playbook",
        )


def _verdict(action: Any, ctx: CheckContext, policy: Policy, acc: _Acc) -> Decision:
    if acc.deny_reasons:
        return Decision(
            verdict="deny", reasons=tuple(acc.deny_reasons), rules=tuple(acc.deny_rules)
        )
    if acc.need == 0:
        reason = f"{action.target} within policy"
        return Decision(verdict="allow", reasons=(reason,), rules=tuple(acc.ok_rules))
    approval = "approve" if acc.need == 1 else f"quorum:{acc.need}"
    reasons, rules = tuple(acc.need_reasons), tuple(acc.need_rules)
    maint = policy.maintenance
    if maint.only_in_windows and not any(w.contains(ctx.now) for w in maint.windows):
        reasons += ("outside every maintenance window: changes needing a human wait for one",)
        return Decision(
            verdict="needs_approval", reasons=reasons, rules=(*rules, "W-window"), approval=approval
        )
    approvers = sorted({a.strip() for a in ctx.approvals if isinstance(a, str) and a.strip()})
    if len(approvers) >= acc.need:
        reason = f"approved by {', '.join(approvers)} ({approval})"
        return Decision(verdict="allow", reasons=(*reasons, reason), rules=(*rules, "A-approved"))
    if approvers:
        reasons += (f"{len(approvers)} of {acc.need} distinct approvals so far",)
    return Decision(verdict="needs_approval", reasons=reasons, rules=rules, approval=approval)


def _deny_one(reason: str, rule: str) -> Decision:
    return Decision(verdict="deny", reasons=(reason[:_REASON_MAX],), rules=(rule,))


def _parse_problem(exc: Exception) -> str:
    errors = getattr(exc, "errors", None)
    if callable(errors):
        try:
            first = errors(include_url=False, include_input=False)[0]
            loc = ".".join(str(p) for p in first.get("loc", ())) or "(input)"
            return f"{loc}: {first.get('msg', '')}"
        except Exception:  # a foreign exception with an errors() of another shape
            pass
    return f"{type(exc).__name__}: {exc}"
