"""The change engine's side of ``guardrails.check``: gather the context, ask, count, log.

``check`` is pure; everything it needs (the live value, limits, the journal's history,
the blast-radius counts, paused targets, approvals, the sandbox) is read here and passed
in. The engine calls this at proposal time and again right before applying.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Literal, Protocol, runtime_checkable

from guardrails import CheckContext, Decision, HistoryEntry, Policy, check, check_write
from guardrails.actions import Action
from healer.act.base import Actuator
from healer.act.confine import Confinement, confine_from
from healer.errors import ActuatorError
from healer.logs import logfmt
from healer.store.repository import Repository
from healer.telemetry import Telemetry

log = logging.getLogger("healer.guard")
__all__ = ["Confinement", "Gate", "KeyChecker", "Mode", "confine_from"]

Mode = Literal["observe", "advise", "auto"]
HISTORY_SPAN = timedelta(days=1)  # longer than any cooldown or rollback memory in the policy


@runtime_checkable
class KeyChecker(Protocol):
    """Actuators that can tell whether a key exists in a scope (sysctl, cgroup)."""

    def key_exists(self, action: Action) -> bool: ...


class Gate:
    """Builds a ``CheckContext`` from the live system and the journal, then calls ``check``."""

    def __init__(
        self,
        repo: Repository,
        policy: Policy,
        *,
        mode: Mode,
        confine: tuple[str, ...] | Confinement,
        root: bool,
        telemetry: Telemetry | None = None,
    ) -> None:
        self._repo = repo
        self._policy = policy
        self._mode: Mode = mode if root or mode == "observe" else "advise"
        self._confine = confine if isinstance(confine, Confinement) else Confinement(confine)
        self._root = root
        self._telemetry = telemetry

    def context(
        self,
        action: Action,
        actuator: Actuator | None,
        now: datetime,
        *,
        provenance: Literal["playbook", "llm", "operator"],
        in_playbook: bool,
        approvals: Sequence[str] = (),
        changes_this_cycle: int = 0,
        convergence: str | None = None,
    ) -> CheckContext:
        """Everything ``check`` needs about ``action``, read now; ``convergence``: the key
        of the convergence ``action`` is the next step of (ActionRecord.convergence)."""
        current, facts, exists = _live(action, actuator)
        read = self._repo.guard_reads(action.target, now - HISTORY_SPAN, now - timedelta(hours=1))
        history = tuple(
            HistoryEntry(target=h.target, ts=h.ts, state=h.state.value, value=h.value,
                         judged=h.judged, convergence=h.convergence)
            for h in read.history
        )
        return CheckContext(
            now=now, mode=self._mode, provenance=provenance, in_playbook=in_playbook,
            current=current, facts=facts, key_exists=exists, history=history,
            changes_this_cycle=changes_this_cycle, changes_last_hour=read.changes,
            paused_targets=read.paused,
            approvals=tuple(approvals), confine=self._confine.for_action(action), root=self._root,
            convergence=convergence,
        )

    def check_write(self, action: Action, value: str, *, when: str) -> Decision:
        """The hard rules for writing a journal value back (a restore) or persisting it."""
        decision = check_write(action, value, self._policy, self._confine.for_action(action))
        if decision.verdict != "allow":
            log.error(logfmt(msg=f"guard refused {when} of {action.target}",
                             rules=",".join(decision.rules), reason="; ".join(decision.reasons)))
        return decision

    def decide(self, action: Action, ctx: CheckContext, *, when: str) -> Decision:
        """Run the guard; count and log the verdict (``when``: proposal, apply, or lease).

        ``lease`` is the check before a fleet lease is asked for: it repeats every few
        seconds while the control plane says wait, so it is logged at debug and not
        counted; the check once the grant arrives (``apply``) is the one that counts.
        """
        decision = check(action, ctx, self._policy)
        if self._telemetry is not None and when != "lease":
            self._telemetry.decisions.labels(decision.verdict).inc()
        log.log(logging.DEBUG if when == "lease" else logging.INFO,
                logfmt(msg=f"guard {decision.verdict} {action.target}", at=when,
                       rules=",".join(decision.rules), reason="; ".join(decision.reasons)))
        return decision


def _live(
    action: Action, actuator: Actuator | None
) -> tuple[str | None, dict[str, float], bool | None]:
    """The current value (action units), the facts, and whether the key exists."""
    if actuator is None:
        return None, {}, None
    exists = actuator.key_exists(action) if isinstance(actuator, KeyChecker) else None
    try:
        raw = actuator.read(action)
        current = None if raw is None else actuator.in_action_units(action, raw)
        facts = actuator.facts(action) if raw is not None else {}
    except ActuatorError as exc:  # unknown live value: the guard treats it as a soft bound
        log.info(logfmt(msg="cannot read live value", target=action.target, error=exc))
        return None, {}, exists
    return current, facts, exists


Clock = Callable[[], datetime]
