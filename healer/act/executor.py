"""Commit-confirmed mechanics for one journal record: apply, verify, restore.

The order is the safety argument (ARCHITECTURE.md, principle 3):
  1. read the original value;
  2. commit ``approved -> applying`` with the original, the deadline and the baseline;
  3. write, then read back; commit ``applying -> verifying`` with the read-back;
  4. judge the after-window; keep (``verified``) or restore, read back, and commit
     ``rolled_back`` only when the read-back equals the original exactly.
A crash between any two steps leaves a record in ``applying`` or ``verifying`` that
``ChangeEngine.reconcile_on_start`` finishes. Every step is safe to repeat.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

from guardrails.actions import Action, SysctlWrite
from guardrails.decision import Decision
from healer.act.base import ActuatorRegistry
from healer.act.persist import DropIn
from healer.errors import ActuatorError
from healer.logs import logfmt
from healer.models import ActionRecord, ActionState, Verification, VerifyResult, VerifySpec
from healer.store.errors import IllegalTransition, StaleState
from healer.store.repository import Repository
from healer.telemetry import Telemetry
from healer.verify import evaluate
from healer.verify.compare import KmsgFn
from healer.verify.process import ProcessSeries, is_process_metric

log = logging.getLogger("healer.act")

S = ActionState
MESSAGE_KINDS = frozenset({"notify", "escalate"})
SENT = "sent"  # the "applied" value of a notify/escalate record
LIVE_STATES = (S.APPLYING, S.VERIFYING, S.VERIFIED)  # a change that is (or may be) in place
READY_STATES = (S.APPROVED, S.WAITING_CANARY)  # allowed, not applied yet


class SeriesSource(Protocol):
    """The in-memory metric window (healer.window.MetricWindow): the last ``seconds`` of one
    metric, oldest first, relative to the newest sample."""

    def series(self, name: str, seconds: float) -> Sequence[tuple[float, float]]: ...


# The window may also offer ``kmsg(seconds) -> list[KmsgRecord]`` (quiet_kmsg verification)
# and ``processes() -> tuple[ProcessInfo, ...] | None`` (per-process verify metrics);
# MetricWindow does. Both are looked up with getattr so simpler windows still work.


class ActionNotifier(Protocol):
    """What the engine tells people (healer.notify.Notifier satisfies it)."""

    def action(self, event: str, record: ActionRecord, *, detail: str = "",
               severity: str | None = None) -> int: ...

    def escalation(self, subject: str, message: str, *, incident_id: int | None = None,
                   action_id: int | None = None) -> int: ...


def verification_of(record: ActionRecord) -> Verification:
    """The record's verification; a record journaled without one (by hand, or by an older
    writer) is judged as outside the playbook, the safe side."""
    return record.verification or Verification(spec=None, in_playbook=False)


def _settle_default() -> float:
    return float(VerifySpec.model_fields["settle_seconds"].default)


# (action, journal value) -> the guard's verdict on writing that value back (Gate.check_write)
WriteCheck = Callable[[Action, str], Decision]


class Executor:
    """Moves single records through applying, verifying and their verdicts."""

    def __init__(self, repo: Repository, actuators: ActuatorRegistry, *,
                 clock: Callable[[], datetime], notifier: ActionNotifier | None,
                 telemetry: Telemetry | None, window: SeriesSource | None, dropin: DropIn,
                 checkpoint: Callable[[str], None], check_restore: WriteCheck) -> None:
        self.repo, self.actuators, self.clock = repo, actuators, clock
        self.check_restore = check_restore
        self.notifier, self.telemetry, self.window = notifier, telemetry, window
        self.dropin, self.checkpoint = dropin, checkpoint
        self.processes = ProcessSeries()
        self.on_move: Callable[[ActionRecord], None] | None = None  # after every transition

    # -- journal plumbing ----------------------------------------------------------------
    def move(self, record: ActionRecord, to: ActionState, expect: Sequence[ActionState],
             comment: str = "", actor: str = "healer", **fields: Any) -> ActionRecord | None:
        """CAS transition; None when someone else moved the record first."""
        assert record.id is not None
        try:
            moved = self.repo.transition(record.id, to, expect=expect, actor=actor,
                                         comment=comment[:500], **fields)
        except (StaleState, IllegalTransition) as exc:
            log.info(logfmt(msg="journal record moved elsewhere", id=record.id, error=exc))
            return None
        if self.telemetry is not None:
            self.telemetry.actions.labels(record.action.kind, to.value).inc()
        log.info(logfmt(msg=f"action {to.value}: {record.action.target}", id=record.id,
                        original=moved.original, applied=moved.applied, comment=comment))
        if self.on_move is not None:
            self.on_move(moved)
        return moved

    def tell(self, event: str, record: ActionRecord, detail: str = "") -> None:
        """Queue a notification; a notifier failure never stops the engine."""
        if self.notifier is None:
            return
        try:
            self.notifier.action(event, record, detail=detail)
        except Exception:
            log.exception(logfmt(msg="notification failed", event=event, id=record.id))

    def escalate(self, record: ActionRecord, message: str) -> None:
        """Queue an escalation: a person must look at this."""
        log.error(logfmt(msg="escalation", id=record.id, target=record.action.target, text=message))
        if self.notifier is None:
            return
        try:
            self.notifier.escalation(f"action:{record.id}", message,
                                     incident_id=record.incident_id, action_id=record.id)
        except Exception:
            log.exception(logfmt(msg="escalation failed", id=record.id))

    def series(self, name: str, since: float, until: float) -> Sequence[tuple[float, float]]:
        """Points from the in-memory window, else from the store (after a restart)."""
        if is_process_metric(name):  # per-process: from the process scans, in memory
            scan = getattr(self.window, "processes", None)
            self.processes.observe(name, scan() if scan else None, self.clock().timestamp())
            return self.processes.series(name, since, until)
        if self.window is not None:
            seconds = max(0.0, self.clock().timestamp() - since) + 1.0
            points = [p for p in self.window.series(name, seconds) if since <= p[0] <= until]
            if points:
                return points
        return self.repo.metric_series(name, datetime.fromtimestamp(since, UTC),
                                       datetime.fromtimestamp(until, UTC))

    # -- apply -----------------------------------------------------------------------------
    def apply(self, record: ActionRecord, decision: Decision, original: str,
              verification: Verification, deadline: datetime) -> ActionRecord | None:
        """Commit the intent, write, read back, and move to verifying."""
        intent = self.move(record, S.APPLYING, READY_STATES, "intent committed",
                           original=original, deadline=deadline, decision=decision,
                           verification=verification)
        if intent is None:
            return None
        self.checkpoint("intent")
        try:
            applied = self._write(intent, decision)
        except ActuatorError as exc:
            log.error(logfmt(msg="apply failed", id=intent.id, target=intent.action.target,
                             error=exc))
            return self.restore(intent, f"apply failed: {exc}")
        self.checkpoint("written")
        moved = self.move(intent, S.VERIFYING, (S.APPLYING,), "applied and read back",
                          applied=applied)
        if moved is not None:
            self.checkpoint("verifying")
            self.tell("action_applied", moved, f"{moved.original} -> {moved.applied}")
        return moved

    def _write(self, record: ActionRecord, decision: Decision) -> str:
        if record.action.kind in MESSAGE_KINDS:
            self._send(record)
            return SENT
        return self.actuators.for_action(record.action).apply(record.action, decision)

    def _send(self, record: ActionRecord) -> None:
        message = str(getattr(record.action, "message", ""))
        if record.action.kind == "escalate":
            self.escalate(record, message)
        else:
            self.tell("action_applied", record, message)

    # -- verify ----------------------------------------------------------------------------
    def verify(self, record: ActionRecord, now: datetime) -> ActionRecord | None:
        """Judge one verifying record: keep, roll back, stand down, or keep waiting."""
        if record.action.kind in MESSAGE_KINDS:
            return self.move(record, S.VERIFIED, (S.VERIFYING,), "message sent")
        try:
            live = self.actuators.for_action(record.action).read(record.action)
        except ActuatorError as exc:
            log.warning(logfmt(msg="cannot read live value", id=record.id, error=exc))
            if now >= self.deadline(record):
                return self.restore(record, f"verification timed out; cannot read: {exc}")
            return None
        if live is None:
            return self.move(record, S.SUPERSEDED, (S.VERIFYING,), "target vanished")
        if live != record.applied and live == record.original:
            # Back at the original: our own restore interrupted before its commit (a crash),
            # or someone put the original back. Either way the change is undone.
            return self.restore(record, "value found back at the original")
        if live != record.applied:
            return self.supersede(record, live)
        try:
            result = self.judge(record, now)
        except Exception as exc:  # a broken spec or store read must not pin the change forever
            log.exception(logfmt(msg="cannot judge verification", id=record.id))
            result = VerifyResult(verdict=None, reasons=(f"cannot judge: {exc}",))
        why = "; ".join(result.reasons)
        if result.verdict == "fixed":
            return self.keep(record, result, f"fixed: {why}")
        if result.verdict == "regressed":
            return self.restore(record, f"regression: {why}", result)
        if result.verdict == "insufficient" and verification_of(record).step is not None:
            # A capacity raise that fell short is still better than the original: kept,
            # and the convergence steps again (healer.act.converge).
            return self.keep(record, result, f"insufficient, kept: {why}")
        if now >= self.deadline(record):
            return self.restore(record, f"verification timed out: {why}", result)
        return None

    def keep(self, record: ActionRecord, result: VerifyResult, comment: str
             ) -> ActionRecord | None:
        """verifying -> verified, with the verdict and its numbers recorded."""
        info = verification_of(record).model_copy(update={"result": result})
        moved = self.move(record, S.VERIFIED, (S.VERIFYING,), comment, verification=info)
        if moved is not None and result.verdict == "fixed":
            self.tell("action_verified", moved, "; ".join(result.reasons))
        return moved

    def deadline(self, record: ActionRecord) -> datetime:
        """When a verifying record must have its verdict: the journal's deadline, else the
        write time plus the spec's deadline (every verifying record ends by it)."""
        if record.deadline is not None:
            return record.deadline
        ver = verification_of(record)
        applied_at = ver.applied_at or record.updated_at.timestamp()
        seconds = ver.spec.deadline if ver.spec else 2 * _settle_default()
        return datetime.fromtimestamp(applied_at + seconds, UTC)

    def judge(self, record: ActionRecord, now: datetime) -> VerifyResult:
        """The verification verdict from the stored baseline and the after-window."""
        ver = verification_of(record)
        applied_at = ver.applied_at or record.updated_at.timestamp()
        if ver.spec is None:
            # No verify target (an LLM proposal outside any playbook): keep the change once
            # the read-back has held for the settle period; a person still sees it.
            held = now.timestamp() - applied_at >= _settle_default()
            return VerifyResult(verdict="fixed" if held else None,
                                reasons=("no verify target; the read-back value held",))
        return evaluate(ver.spec, ver.baseline, self.series, applied_at, now.timestamp(),
                        kmsg=self.kmsg_source(), kmsg_before=ver.kmsg_baseline)

    def kmsg_source(self) -> KmsgFn | None:
        """The window's kernel-log records by age, when it keeps them."""
        kmsg = getattr(self.window, "kmsg", None)
        return kmsg if callable(kmsg) else None

    def supersede(self, record: ActionRecord, live: str) -> ActionRecord | None:
        """Someone else changed the value: leave theirs in place and pause automation."""
        detail = f"live value {live!r} is neither applied {record.applied!r} " \
                 f"nor original {record.original!r}: stood down"
        moved = self.move(record, S.SUPERSEDED, (S.VERIFYING, S.VERIFIED), detail)
        if moved is not None:
            self.repo.pause_target(record.action.target, detail)
            self.escalate(moved, f"admin drift on {record.action.target}: {detail}; "
                                 "automation paused for this target until resumed")
        return moved

    # -- restore ---------------------------------------------------------------------------
    def restore(self, record: ActionRecord, reason: str, result: VerifyResult | None = None,
                actor: str = "healer", *, judged: bool = True) -> ActionRecord | None:
        """Write the original back; ``rolled_back`` only if the read-back equals it exactly.

        ``judged=False``: undone without a verdict on the value (crash recovery); the guard's
        R-repeat-rollback then does not hold the value against a later proposal.
        """
        info = verification_of(record).model_copy(update={
            "rollback_reason": reason, "judged": judged,
            "result": result or verification_of(record).result})
        try:
            back = self._put_back(record)
        except ActuatorError as exc:
            return self._failed(record, f"{reason}; restore failed: {exc}", info, actor)
        self.checkpoint("restored")
        if back != record.original:
            return self._failed(record, f"{reason}; read back {back!r}, "
                                        f"original was {record.original!r}", info, actor)
        self._unpersist(record, actor)
        moved = self.move(record, S.ROLLED_BACK, LIVE_STATES, reason, actor=actor,
                          verification=info)
        if moved is not None:
            self.tell("action_rolled_back", moved, reason)
        return moved

    def _put_back(self, record: ActionRecord) -> str | None:
        if record.action.kind in MESSAGE_KINDS or record.original is None:
            return record.original  # nothing was (or can be) changed
        # The original comes from the database: it passes the value grammar and the
        # protected rules like any other write, or it is not written (and reported).
        decision = self.check_restore(record.action, record.original)
        if decision.verdict != "allow":
            raise ActuatorError(record.action.scope, record.action.target,
                                "restore refused by the guard: " + "; ".join(decision.reasons))
        actuator = self.actuators.for_action(record.action)
        if actuator.read(record.action) == record.original:
            return record.original  # already there: restoring twice changes nothing
        return actuator.restore(record)

    def _failed(self, record: ActionRecord, detail: str, info: Verification,
                actor: str) -> ActionRecord | None:
        # A verified change whose manual rollback fails stays verified (it is still in
        # place; TRANSITIONS has no verified -> rollback_failed); the escalation says so.
        moved = self.move(record, S.ROLLBACK_FAILED, (S.APPLYING, S.VERIFYING), detail,
                          actor=actor, verification=info)
        if moved is not None:
            self.tell("rollback_failed", moved, detail)
        self.escalate(moved or record, f"ROLLBACK FAILED for {record.action.target}: {detail}")
        return moved

    def _unpersist(self, record: ActionRecord, actor: str) -> None:
        if record.id is None or not _persistable(record.action):
            return
        try:
            if self.dropin.remove(record.id):
                self.repo.add_audit(actor, "action.unpersisted", f"action:{record.id}",
                                    {"file": str(self.dropin.path)})
        except OSError as exc:
            log.error(logfmt(msg="cannot update sysctl drop-in", file=self.dropin.path, error=exc))


def _persistable(action: Action) -> bool:
    return isinstance(action, SysctlWrite) and action.scope == "host"
