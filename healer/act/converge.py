"""Convergent steps: a capacity raise stepped again while its verdict is "insufficient".

A first step that falls short is a normal case for a capacity remedy (a listen backlog, a
cgroup's memory or pids limit, an open-file limit): the symptom goes on at the same rate
or lower. That change is kept, since it is already better than the original, and the next
step goes out at once, as a new journaled, guarded and verified action that can be rolled
back on its own:

    step k+1 = current * factor**k, or more where the kernel's evidence (the verdict's
               numbers, ``Converge.demand``) shows a larger demand,
               never past the policy's step bound, range or facts (the ceiling).

An observed usage that the very limit being raised capped (a cgroup's peak can never pass
its memory.max; a killed task's rss is at most the limit) says nothing about the demand,
so it is not used. After ``Step.allowed`` steps (the playbook's ``max_steps``), or at the
ceiling, a person is asked, with the steps and their verdicts; approving that escalation
allows one more step. ``next_value`` is pure; ``Converger`` reads the live value, facts
and rule, and proposes through the engine.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol

from guardrails import Policy
from guardrails.actions import Action, Escalate, action_to_dict, parse_action
from guardrails.bounds import parse_numbers, step_ceiling, subject, upper_bound
from guardrails.policy import Rule
from healer.act.base import ActuatorRegistry
from healer.errors import ActuatorError, HealerError
from healer.logs import logfmt
from healer.models import (
    ActionRecord,
    ActionState,
    Incident,
    Proposal,
    Step,
    Stop,
    StopReason,
    VerifySpec,
)
from healer.store.repository import Repository
from playbooks.schema import CONVERGE_FIELDS, Converge, Playbook

log = logging.getLogger("healer.act")
S = ActionState
CAPPED_FRACTION = 0.9  # usage at >= 90 % of the limit being raised was capped by that limit


@dataclass(frozen=True)
class NextStep:
    """The next step's value, or why there is none (``stop``), and how it was sized."""

    value: int | None
    reason: str
    ceiling: float | None
    stop: StopReason | None = None


def demand(plan: Converge, current: float, numbers: Mapping[str, float]) -> float | None:
    """The value the kernel's evidence asks for (with headroom); None when it says nothing."""
    needs = []
    for d in plan.demand:
        raw = numbers.get(d.number)
        if raw is None:
            continue
        seen = raw * d.scale
        if d.kind == "shortfall":
            needs.append((current + seen) * plan.headroom)
        elif seen < CAPPED_FRACTION * current:  # usage: worthless once the limit capped it
            needs.append(seen * plan.headroom)
    return max(needs, default=None)


def next_value(plan: Converge, done: int, current: float, rule: Rule | None,
               facts: Mapping[str, float], numbers: Mapping[str, float]) -> NextStep:
    """Step ``done + 1`` from the live value ``current`` after ``done`` steps."""
    if rule is None:
        return NextStep(None, "no policy rule bounds this knob", None, "unbounded")
    ceiling = upper_bound(rule, facts)
    if ceiling is None:
        return NextStep(None, f"a fact rule {rule.id} bounds by is unknown", None, "unbounded")
    if math.isinf(ceiling):  # healer steps only toward a ceiling it knows
        return NextStep(None, f"rule {rule.id} sets no ceiling", None, "unbounded")
    geometric = current * plan.factor ** done
    need = demand(plan, current, numbers)
    want = max(geometric, need or 0.0)
    reach = min(ceiling, step_ceiling(rule, current))
    value = math.floor(min(want, reach))
    if rule.min is not None and value < rule.min:
        value = math.ceil(rule.min) if rule.min <= reach else value
    if value <= current or (rule.min is not None and value < rule.min):
        return NextStep(None, f"the policy's ceiling ({_num(ceiling)}, rule {rule.id}) is "
                              f"reached at {_num(current)}", ceiling, "ceiling")
    how = f"x{plan.factor:g}^{done} = {_num(geometric)}"
    if need is not None and need > geometric:
        how = f"the kernel's evidence asks for {_num(need)}"
    if value < want:
        how += f", held to {_num(value)} by rule {rule.id}"
    return NextStep(value, how, ceiling)


def _num(v: float) -> str:
    return "max" if math.isinf(v) else f"{v:.0f}"


def with_value(action: Action, value: int) -> Action:
    """``action`` with its limit set to ``value`` (validated through the catalog again)."""
    data = action_to_dict(action)
    field = CONVERGE_FIELDS[action.kind]
    data[field] = str(value) if isinstance(data[field], str) else value
    return parse_action(data)


class Propose(Protocol):
    """``ChangeEngine.propose``: guard a proposal and journal it."""

    def __call__(self, incident: Incident | None, proposal: Proposal,
                 verify: Playbook | VerifySpec | None = None, *,
                 max_per_incident: int | None = None, step: Step | None = None,
                 stop: Stop | None = None) -> ActionRecord: ...


class Converger:
    """Drives convergences: the next step, or a person asked; the engine journals."""

    def __init__(self, repo: Repository, actuators: ActuatorRegistry, policy: Policy, *,
                 propose: Propose, escalate: Callable[[ActionRecord, str], None]) -> None:
        self.repo, self.actuators, self.policy = repo, actuators, policy
        self._propose, self._escalate = propose, escalate

    def _live(self, action: Action) -> tuple[float | None, dict[str, float]]:
        """The live value (one number, action units) and the actuator's facts."""
        actuator = self.actuators.for_action(action)
        raw = actuator.read(action)
        if raw is None:
            return None, {}
        numbers = parse_numbers(actuator.in_action_units(action, raw))
        value = numbers[0] if numbers is not None and len(numbers) == 1 else None
        return value, actuator.facts(action)

    def ceiling(self, action: Action) -> float | None:
        """The highest value the policy allows this action's knob now (range and facts)."""
        rule = self.policy.rule_for(action.kind, subject(action))
        try:
            facts = self._live(action)[1]
        except ActuatorError:
            return None
        bound = upper_bound(rule, facts) if rule is not None else None
        return None if bound is None or math.isinf(bound) else bound

    def first_step(self, action: Action, plan: Converge, cap: int | None) -> Step:
        """Step 1 of a new convergence (``cap``: the remedy's max_per_incident)."""
        allowed = min(plan.max_steps, cap) if cap is not None else plan.max_steps
        return Step(number=1, allowed=allowed, cap=cap, plan=plan, ceiling=self.ceiling(action))

    # -- after a verdict ---------------------------------------------------------------------
    def after_verified(self, record: ActionRecord) -> list[ActionRecord]:
        """A record just verified: a step kept as insufficient goes on at once, and an
        approved "continue" grants one more step. A failure here never stalls the cycle."""
        try:
            if record.action.kind == "escalate":
                return self.after_granted(record)
            nxt = self.after_kept(record)
        except (ActuatorError, HealerError, ValueError) as exc:
            log.exception(logfmt(msg="convergence failed", id=record.id, error=exc))
            return []
        return [nxt] if nxt is not None else []

    def after_kept(self, record: ActionRecord) -> ActionRecord | None:
        """A step was kept as "insufficient": propose the next one, or ask a person."""
        step = record.verification.step if record.verification else None
        if step is None or record.verdict != "insufficient":
            return None
        if step.number >= step.allowed:
            return self._stop(record, "steps", f"{step.number} step(s), the most allowed",
                              grants=step.cap is None or step.number < step.cap)
        return self._next(record, step.allowed)

    def _next(self, record: ActionRecord, allowed: int) -> ActionRecord | None:
        assert record.verification is not None and record.verification.step is not None
        ver, step = record.verification, record.verification.step
        action = record.action
        try:
            current, facts = self._live(action)
        except ActuatorError as exc:
            log.info(logfmt(msg="convergence: cannot read", id=record.id, error=exc))
            return self._stop(record, "unbounded", f"cannot read {action.target}: {exc}")
        if current is None:
            return self._stop(record, "unbounded", f"{action.target} is not one number")
        rule = self.policy.rule_for(action.kind, subject(action))
        numbers = ver.result.numbers if ver.result else {}
        nxt = next_value(step.plan, step.number, current, rule, facts, numbers)
        if nxt.value is None:
            assert nxt.stop is not None
            return self._stop(record, nxt.stop, nxt.reason)
        new = Step(number=step.number + 1, first=step.first or record.id, previous=record.id,
                   allowed=allowed, cap=step.cap, plan=step.plan, ceiling=nxt.ceiling)
        incident = self.repo.get_incident(record.incident_id) if record.incident_id else None
        why = "; ".join(ver.result.reasons) if ver.result else ""
        proposal = Proposal(
            action=with_value(action, nxt.value), provenance=record.provenance,
            in_playbook=ver.in_playbook,
            rationale=(f"convergence step {new.number} of at most {allowed}: step "
                       f"{step.number} (action {record.id}) was insufficient ({why}); "
                       f"sized {nxt.reason}")[:2000])
        log.info(logfmt(msg=f"convergence step {new.number}: {action.target}", previous=record.id,
                        current=current, value=nxt.value, sized=nxt.reason))
        out = self._propose(incident, proposal, ver.spec, step=new)
        if out.state == S.DENIED:
            self._escalate(out, f"convergence of {action.target} stopped: the guard denied "
                                f"step {new.number} ({'; '.join(out.decision.reasons)})")
        return out

    def _stop(self, record: ActionRecord, reason: StopReason, why: str, *,
              grants: bool = False) -> ActionRecord:
        """Ask a person, with the steps and their verdicts; approving a stop for the step
        count (below the remedy's max_per_incident) allows one more step."""
        steps = self._steps(record)
        lines = [f"#{r.id} {r.original} -> {r.applied}: {r.verdict or r.state.value}"
                 for r in steps]
        ask = ("Approve this escalation to allow one more step." if grants
               else "A person must raise the limit's budget or fix the workload.")
        message = (f"convergence of {record.action.target} stopped ({reason}): {why}. "
                   f"Steps: {'; '.join(lines)}. {ask}")[:2000]
        incident = self.repo.get_incident(record.incident_id) if record.incident_id else None
        proposal = Proposal(action=Escalate(scope=record.action.scope, message=message),
                            provenance="playbook", rationale=message)
        log.info(logfmt(msg=f"convergence stopped: {record.action.target}", reason=reason, why=why))
        return self._propose(incident, proposal, None,
                             stop=Stop(reason=reason, steps=tuple(r.id or 0 for r in steps),
                                       grants_step=grants))

    def _steps(self, last: ActionRecord) -> list[ActionRecord]:
        """The convergence's steps up to ``last``, oldest first (following ``previous``)."""
        out = [last]
        while out[-1].verification and out[-1].verification.step:
            prev = out[-1].verification.step.previous
            record = self.repo.get_action(prev) if prev is not None else None
            if record is None:
                break
            out.append(record)
        return out[::-1]

    # -- a person's "continue" -----------------------------------------------------------------
    def after_granted(self, escalation: ActionRecord) -> list[ActionRecord]:
        """An approved stop for the step count was sent: one more step for each convergence
        of its incident still stopped there (kept, insufficient, its target's newest change).
        Escalations of one scope share a target, so one approval may answer several."""
        stop = escalation.verification.stop if escalation.verification else None
        if stop is None or not stop.grants_step or escalation.id is None:
            return []
        out = []
        for last in self._stopped(escalation):
            assert last.verification is not None and last.verification.step is not None
            moved = self._next(last, last.verification.step.allowed + 1)
            if moved is not None:
                out.append(moved)
        return out

    def _stopped(self, escalation: ActionRecord) -> list[ActionRecord]:
        """Convergences stopped at their step count before ``escalation`` was journaled."""
        assert escalation.id is not None and escalation.verification is not None
        stop = escalation.verification.stop
        assert stop is not None
        if escalation.incident_id is None:
            found = [self.repo.get_action(i) for i in stop.steps[-1:]]
            records = [r for r in found if r is not None]
        else:
            records = list(self.repo.iter_actions(incident_id=escalation.incident_id))
        newest: dict[str, ActionRecord] = {}
        for r in records:  # newest first
            newest.setdefault(r.action.target, r)
        return [r for r in newest.values()
                if (r.id or 0) < escalation.id and _at_limit(r) and self._stalled(r)]

    def _stalled(self, record: ActionRecord) -> bool:
        """Kept as insufficient, and still its target's newest change."""
        if record.state != S.VERIFIED or record.verdict != "insufficient" or record.id is None:
            return False
        newest = next(self.repo.iter_actions(incident_id=record.incident_id,
                                             target=record.action.target), None)
        return newest is not None and newest.id == record.id

    def resume(self, verified: Iterable[ActionRecord]) -> list[ActionRecord]:
        """After a restart, finish what a crash cut short: a kept insufficient step whose
        next step never went out, and an approved "continue" not yet acted on.
        ``verified``: verified records, newest first."""
        out: list[ActionRecord] = []
        seen: set[str] = set()
        for record in verified:
            ver = record.verification
            if ver is not None and ver.stop is not None:
                out += self.after_granted(record)
            step = ver.step if ver is not None else None
            if step is None or record.action.target in seen:
                continue
            seen.add(record.action.target)
            if step.number < step.allowed and self._stalled(record):
                moved = self._next(record, step.allowed)
                if moved is not None:
                    out.append(moved)
        return out


def _at_limit(record: ActionRecord) -> bool:
    step = record.verification.step if record.verification else None
    return step is not None and step.number >= step.allowed
