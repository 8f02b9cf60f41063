"""The change engine: proposals into the journal, and the journal forward, one step a cycle.

    engine = ChangeEngine.from_settings(settings, repo=..., actuators=..., window=...,
                                        telemetry=..., notifier=...)
    engine.reconcile_on_start()           # once, before the first cycle
    engine.propose(incident, proposal, playbook)   # when a diagnosis arrives
    engine.step()                         # every cycle: expire, apply, verify, converge

Nothing is applied without a fresh ``allow``: ``step`` re-runs ``guardrails.check`` (with
the recorded human approvals) immediately before writing; a stored verdict or a web
approval is never trusted on its own. In a fleet (``fleet``, healer.act.lease), a change
that writes the host is applied only while the control plane's lease on its remedy is
fresh, and that lease is necessary, never sufficient: the guard still decides. A capacity
raise kept as "insufficient" is stepped again at once, each step its own proposal through
the same gate (healer.act.converge).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from guardrails import Decision, Policy, load_policy
from guardrails.actions import Action, SysctlWrite
from guardrails.policy import approvals_needed
from healer.act.base import Actuator, ActuatorRegistry, Pinner
from healer.act.confine import Confinement
from healer.act.converge import Converger
from healer.act.executor import (
    LIVE_STATES,
    MESSAGE_KINDS,
    READY_STATES,
    ActionNotifier,
    Executor,
    SeriesSource,
    verification_of,
)
from healer.act.gate import Gate, Mode
from healer.act.lease import FleetAnswer, FleetGate, Outcome
from healer.act.limits import converge_for, max_per_incident_for
from healer.act.persist import DropIn
from healer.act.seal import JournalSeal
from healer.errors import ActuatorError, HealerError
from healer.logs import logfmt
from healer.models import (
    ActionRecord,
    ActionState,
    Incident,
    IncidentStatus,
    Proposal,
    Slo,
    Step,
    Stop,
    Verification,
    VerifySpec,
)
from healer.settings import Settings
from healer.store.repository import Repository
from healer.store.votes import decide, tally, users_by_id
from healer.telemetry import Telemetry
from healer.verify import kmsg_baseline, summarize_baseline
from healer.verify.labels import spec_for
from healer.verify.slo import parse_slos
from playbooks.schema import Playbook

log = logging.getLogger("healer.act")

S = ActionState
OPEN_STATES = (S.PROPOSED, S.AWAITING_APPROVAL, S.APPROVED, S.WAITING_CANARY, S.APPLYING,
               S.VERIFYING)
# Guard findings that only say "not now": the approved change waits for a later cycle.
WAIT_RULES = frozenset({"B-cycle", "W-window"})
DRIFT_EVERY_CYCLES = 30  # verified changes: live value re-read every N cycles, not every one
# A change counts against a remedy's max_per_incident once it was applied at all.
APPLIED_STATES = (S.APPLYING, S.VERIFYING, S.VERIFIED, S.ROLLED_BACK, S.ROLLBACK_FAILED,
                  S.SUPERSEDED)
LOCAL_ADMIN = "local-admin"
# How a change that held a fleet lease ended, as the control plane's /release takes it.
OUTCOMES: dict[ActionState, Outcome] = {
    S.VERIFIED: "verified", S.ROLLED_BACK: "rolled_back", S.ROLLBACK_FAILED: "rollback_failed",
    S.SUPERSEDED: "superseded", S.DENIED: "denied"}


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _noop(_point: str) -> None:
    return None


def _verdict_state(decision: Decision) -> ActionState:
    return {"allow": S.APPROVED, "needs_approval": S.AWAITING_APPROVAL}.get(
        decision.verdict, S.DENIED
    )


class ChangeEngine:
    """Guard, apply, verify, keep or roll back: the commit-confirmed journal, driven."""

    def __init__(self, repo: Repository, actuators: ActuatorRegistry, policy: Policy, *,
                 mode: Mode = "auto", confine: tuple[str, ...] | Confinement = (),
                 window: SeriesSource | None = None, telemetry: Telemetry | None = None,
                 clock: Callable[[], datetime] = _utcnow, notifier: ActionNotifier | None = None,
                 approval_ttl_seconds: float = 3600.0, dropin: DropIn | None = None,
                 root: bool | None = None, checkpoint: Callable[[str], None] = _noop,
                 drift_every_cycles: int = DRIFT_EVERY_CYCLES, slos: tuple[Slo, ...] = (),
                 seal: JournalSeal | None = None, fleet: FleetGate | None = None) -> None:
        self.repo, self.actuators, self.clock = repo, actuators, clock
        self.fleet = fleet  # None: a single host, no control plane to ask
        self._fleet_waits: dict[int, str] = {}  # action id -> the wait last recorded
        # Only rows this agent sealed are acted on (healer.act.seal); the daemon and root's
        # CLI pass the persistent key, anything else gets a key that dies with it.
        self.seal = seal or JournalSeal.ephemeral(repo)
        self.slos = slos  # the operator's SLOs, for playbooks that verify on them
        root = os.geteuid() == 0 if root is None else root
        if not root:
            log.warning(logfmt(
                msg="not root: actuators report not permitted; mode capped at advise"))
        self.gate = Gate(repo, policy, mode=mode, confine=confine, root=root, telemetry=telemetry)
        self.approval_ttl = timedelta(seconds=approval_ttl_seconds)
        self.drift_every, self._cycles = max(1, drift_every_cycles), 0
        self.executor = Executor(
            repo, actuators, clock=clock, notifier=notifier, telemetry=telemetry, window=window,
            dropin=dropin or DropIn(Settings.model_fields["sysctl_dropin"].default),
            checkpoint=checkpoint,
            check_restore=lambda action, value: self.gate.check_write(action, value,
                                                                      when="restore"),
        )
        self.converger = Converger(repo, actuators, policy, propose=self.propose,
                                   escalate=self.executor.escalate)
        self.executor.on_move = self._moved
        self.seal.report = lambda record, why: self.executor.escalate(
            record, f"journal row {record.id} failed its seal check ({why}): not acted on; "
                    "check the database, then `healer journal adopt` if the rows are genuine")

    @classmethod
    def from_settings(cls, settings: Settings, *, repo: Repository, actuators: ActuatorRegistry,
                      window: SeriesSource | None = None, telemetry: Telemetry | None = None,
                      notifier: ActionNotifier | None = None, policy: Policy | None = None,
                      **kwargs: Any) -> ChangeEngine:
        """The daemon's engine: mode, sandbox, policy, approval TTL and drop-in from Settings."""
        return cls(
            repo, actuators, policy or load_policy(settings.policy_file), mode=settings.mode,
            confine=Confinement.of(settings.netns, settings.cgroup_root,
                                   procfs_root=settings.procfs_root,
                                   gpu_backend=settings.gpu_backend),
            window=window,
            telemetry=telemetry, notifier=notifier,
            approval_ttl_seconds=settings.approval_ttl_seconds,
            dropin=DropIn(settings.sysctl_dropin), slos=parse_slos(settings.slo_metrics),
            **kwargs,
        )

    def _actuator(self, action: Action) -> Actuator | None:
        return None if action.kind in MESSAGE_KINDS else self.actuators.for_action(action)

    # -- proposals ---------------------------------------------------------------------------
    def propose(self, incident: Incident | None, proposal: Proposal,
                verify: Playbook | VerifySpec | None = None, *,
                max_per_incident: int | None = None, step: Step | None = None,
                stop: Stop | None = None) -> ActionRecord:
        """Guard a proposal and journal it: denied, awaiting_approval or approved.

        ``verify`` is a ``VerifySpec``, a playbook (its ``verify`` block is resolved against
        the incident; its remedies give ``max_per_incident`` and the ``converge`` plan), or
        None. A change already open for the same target is not proposed twice: the open
        record is returned. ``max_per_incident`` (explicit, else the matching playbook
        remedy's): once that many changes of this target were applied for the incident, a
        further one is denied. ``step``: a convergence's next step (healer.act.converge);
        ``stop``: on the escalation that says a convergence stopped.
        """
        action = proposal.action
        open_record = next(self.repo.iter_actions(states=OPEN_STATES, target=action.target), None)
        if open_record is not None:
            return open_record
        now = self.clock()
        spec = spec_for(verify, incident, action, self.slos)
        playbook = verify if isinstance(verify, Playbook) else None
        if max_per_incident is None:
            max_per_incident = max_per_incident_for(playbook, action)
        plan = converge_for(playbook, action)
        if step is None and plan is not None:
            step = self.converger.first_step(action, plan, max_per_incident)
        if step is not None and spec is not None:
            spec = spec.model_copy(update={"capacity": True})  # a raise: never "worse"
        decision = self._per_incident(incident, action, max_per_incident)
        try:
            if decision is None:
                actuator = self._actuator(action)
                if isinstance(actuator, Pinner):  # (pid, start time): a pid may be reused
                    action = actuator.pin(action)
                ctx = self.gate.context(action, actuator, now, provenance=proposal.provenance,
                                        in_playbook=proposal.in_playbook,
                                        convergence=step.continues if step else None)
                decision = self.gate.decide(action, ctx, when="proposal")
        except ActuatorError as exc:
            decision = Decision(verdict="deny", reasons=(str(exc),), rules=("E-actuator",))
        record = self.repo.add_action(ActionRecord(
            host_id=self.repo.host_id, incident_id=incident.id if incident else None,
            action=action, decision=decision, provenance=proposal.provenance,
            created_at=now, updated_at=now, rationale=proposal.rationale[:2000],
            approvals_needed=approvals_needed(decision.approval or "auto") or 0,
            verification=Verification(spec=spec, in_playbook=proposal.in_playbook, step=step,
                                      stop=stop),
        ))
        moved = self.executor.move(record, _verdict_state(decision), (S.PROPOSED,),
                                   "; ".join(decision.reasons))
        if moved is not None and moved.state == S.AWAITING_APPROVAL:
            self.executor.tell("approval_needed", moved)
        return moved or record

    def _per_incident(self, incident: Incident | None, action: Action,
                      limit: int | None) -> Decision | None:
        """A deny once ``limit`` changes of this target were applied for the incident."""
        if limit is None or incident is None or incident.id is None:
            return None
        done = list(self.repo.iter_actions(states=APPLIED_STATES, incident_id=incident.id,
                                           target=action.target))
        if len(done) < limit:
            return None
        ids = ", ".join(str(r.id) for r in done)
        return Decision(verdict="deny", rules=("R-max-per-incident",), reasons=(
            f"the playbook allows at most {limit} change(s) of {action.target} per incident; "
            f"already applied for incident {incident.id}: action {ids}",))

    # -- the cycle ---------------------------------------------------------------------------
    def step(self) -> list[ActionRecord]:
        """Expire stale approvals, apply approved changes, judge verifying ones."""
        changed: list[ActionRecord] = []
        now = self.clock()
        # The usual cycle has nothing to do, or only waits for the fleet: one indexed probe
        # of ids and states instead of loading records. Votes arrive from other processes
        # (web, CLI) as rows, so probe every cycle.
        present = self.repo.in_states((S.AWAITING_APPROVAL, *READY_STATES, S.VERIFYING))
        awaiting = min((p.created_at for p in present if p.state == S.AWAITING_APPROVAL),
                       default=None)
        if awaiting is not None:
            changed += self.decide_votes()  # before expiry: a vote cast in time still counts
        approved = any(r.state == S.APPROVED for r in changed)  # ready now
        if awaiting is not None and awaiting <= now - self.approval_ttl:
            changed += self._expire(now)
        ready = approved or any(p.state in READY_STATES and not self._held_back(p.id, p.state)
                                for p in present)
        verifying = any(p.state == S.VERIFYING for p in present)
        if ready or verifying:
            changed += self._advance(ready, verifying)
        self._cycles += 1
        if self._cycles % self.drift_every == 0:
            changed += self.check_drift()
        return changed

    def _sealed(self, records: Iterable[ActionRecord]) -> list[ActionRecord]:
        """The records this agent may act on: sealed by it (the rest are reported)."""
        return [r for r in records if self.seal.trusted(r)]

    def _advance(self, ready: bool, verifying: bool) -> list[ActionRecord]:
        """Apply the ready changes (``ready``: some may move), then judge the verifying
        ones (``verifying``, or any applied now)."""
        changed: list[ActionRecord] = []
        applied = 0
        for record in self.repo.iter_actions(states=READY_STATES, oldest_first=True) \
                if ready else ():
            assert record.id is not None
            if self._held_back(record.id, record.state) or not self.seal.trusted(record):
                continue
            moved = self._apply(record, applied)
            if moved is not None:
                changed.append(moved)
                applied += moved.state in LIVE_STATES or moved.state == S.ROLLED_BACK
        if not (verifying or applied):
            return changed
        for record in self._sealed(self.repo.iter_actions(states=(S.VERIFYING,),
                                                          oldest_first=True)):
            moved = self.executor.verify(record, self.clock())
            if moved is not None:
                changed.append(moved)
                if moved.state == S.VERIFIED:  # a short step goes on at once
                    changed += self.converger.after_verified(moved)
        return changed

    def check_drift(self) -> list[ActionRecord]:
        """Stand down on verified changes an administrator has since overridden.

        Only the newest in-place change of each target is compared (an older verified
        record's value was replaced by healer's own later change). A live value that is
        neither ``applied`` nor ``original`` is the admin's: ``superseded``, target paused,
        escalated. A vanished target is closed as ``superseded`` without a pause.
        """
        out: list[ActionRecord] = []
        seen: set[str] = set()
        for record in self.repo.iter_actions(states=LIVE_STATES):  # newest first
            target = record.action.target
            if target in seen or record.action.kind in MESSAGE_KINDS:
                continue
            seen.add(target)
            if record.state != S.VERIFIED or not self.seal.trusted(record):
                continue
            moved = self._drifted(record)
            if moved is not None:
                out.append(moved)
        return out

    def _drifted(self, record: ActionRecord) -> ActionRecord | None:
        try:
            live = self.executor.actuators.for_action(record.action).read(record.action)
        except ActuatorError as exc:
            log.info(logfmt(msg="drift check: cannot read", id=record.id, error=exc))
            return None
        if live is None:
            return self.executor.move(record, S.SUPERSEDED, (S.VERIFIED,), "target vanished")
        if live in (record.applied, record.original):
            return None  # ours, or the original put back by hand: nothing to stand down from
        return self.executor.supersede(record, live)

    def decide_votes(self) -> list[ActionRecord]:
        """Move awaiting requests that their recorded votes decide (one join per cycle).

        The web, Slack and the CLI only record votes; only this root engine moves the
        journal. Votes count by the voters' current users and roles (healer.store.votes).
        """
        pending = self.repo.awaiting_votes()
        users = users_by_id(self.repo) if pending else {}
        out = []
        for record, votes in pending:
            if not self.seal.trusted(record):
                continue
            outcome = decide(record, tally(votes, users))
            if outcome is None:
                continue
            moved = self.executor.move(record, outcome[0], (S.AWAITING_APPROVAL,), outcome[1])
            if moved is not None:
                out.append(moved)
        return out

    def _expire(self, now: datetime) -> list[ActionRecord]:
        out = []
        for record in self._sealed(self.repo.iter_actions(
                states=(S.AWAITING_APPROVAL,), created_before=now - self.approval_ttl)):
            moved = self.executor.move(record, S.EXPIRED, (S.AWAITING_APPROVAL,),
                                       f"no decision within {self.approval_ttl}")
            if moved is not None:
                self.executor.tell("approval_expired", moved)
                out.append(moved)
        return out

    def _apply(self, record: ActionRecord, changes_this_cycle: int) -> ActionRecord | None:
        """Ask the fleet (when in one), re-check the guard, read the original, then hand
        over to the executor."""
        assert record.id is not None
        fleet = None if record.action.kind in MESSAGE_KINDS else self.fleet
        answer = fleet.answer(record.id) if fleet is not None else None
        if answer is not None and not (answer.go or answer.ask):
            return self._fleet_wait(record, answer)
        now = self.clock()
        approvers = tally(self.repo.list_approvals(record.id), users_by_id(self.repo)).approvers
        ver = verification_of(record)
        try:
            actuator = self._actuator(record.action)
            ctx = self.gate.context(
                record.action, actuator, now, provenance=record.provenance,
                in_playbook=ver.in_playbook, approvals=approvers,
                changes_this_cycle=changes_this_cycle,
                convergence=ver.step.continues if ver.step else None)
            asking = fleet is not None and answer is not None and not answer.go
            decision = self.gate.decide(record.action, ctx, when="lease" if asking else "apply")
            original = actuator.read(record.action) if actuator else ""
        except ActuatorError as exc:
            decision, original = Decision(verdict="deny", reasons=(str(exc),),
                                          rules=("E-actuator",)), None
        if decision.verdict != "allow" and set(decision.rules) & WAIT_RULES:
            if fleet is not None and answer is not None and answer.go:
                fleet.release(record.id, "abandoned")  # not now: a later cycle asks again
            return None  # not now (blast radius this cycle, maintenance window): next cycle
        if decision.verdict != "allow" or original is None:
            why = "; ".join(decision.reasons) if decision.verdict != "allow" else "target is gone"
            return self.executor.move(record, S.DENIED, READY_STATES,
                                      f"re-check at apply time: {why}", decision=decision)
        if fleet is not None and answer is not None and not answer.go:
            fleet.request(record)  # the guard allows it: now ask the control plane
            return None
        if fleet is not None:
            fleet.applying(record.id)
        moved = self.executor.apply(record, decision, original, *self._intent(record, now))
        if moved is None and fleet is not None:
            fleet.release(record.id, "abandoned")  # someone else moved the record first
        return moved

    def _held_back(self, action_id: int, state: ActionState) -> bool:
        """A change the fleet still holds back, its wait already recorded: this cycle
        writes nothing for it (``_fleet_wait`` would not), so it is not loaded, and its
        seal (three reads) is checked when it next may move, not every cycle while
        hundreds of hosts wait. Only fleet-gated changes have a claim or a recorded wait."""
        if self.fleet is None:
            return False
        answer = self.fleet.answer(action_id)
        if answer.go or answer.ask:
            return False
        if answer.wait == "canary" and state == S.APPROVED:
            return False  # it moves to waiting_canary
        return answer.wait == "asking" or self._fleet_waits.get(action_id) == answer.wait

    def _fleet_wait(self, record: ActionRecord, answer: FleetAnswer) -> ActionRecord | None:
        """The fleet says wait: behind a canary the record moves to ``waiting_canary``; any
        other reason keeps it approved, recorded once each time the reason changes."""
        assert record.id is not None
        if answer.wait == "canary" and record.state == S.APPROVED:
            return self.executor.move(record, S.WAITING_CANARY, (S.APPROVED,), answer.detail)
        if answer.wait != "asking" and self._fleet_waits.get(record.id) != answer.wait:
            self._fleet_waits[record.id] = answer.wait
            log.info(logfmt(msg=f"fleet wait: {record.action.target}", id=record.id,
                            reason=answer.wait, rule=answer.rule))
            self.repo.add_audit("healer", "action.fleet_wait", f"action:{record.id}",
                                {"reason": answer.wait, "rule": answer.rule})
        return None

    def _moved(self, record: ActionRecord) -> None:
        """After every transition: a change that ended hands its fleet lease back."""
        outcome = OUTCOMES.get(record.state)
        if outcome is None or record.id is None:
            return
        self._fleet_waits.pop(record.id, None)
        if self.fleet is not None and record.action.kind not in MESSAGE_KINDS:
            self.fleet.release(record.id, outcome)

    def _intent(self, record: ActionRecord, now: datetime) -> tuple[Verification, datetime]:
        """The verification to commit with the intent (baseline summarized now), and the
        deadline."""
        ver = verification_of(record)
        update: dict[str, Any] = {"applied_at": now.timestamp()}
        if ver.spec is not None:
            update["baseline"] = summarize_baseline(ver.spec, self.executor.series,
                                                    now.timestamp())
            update["kmsg_baseline"] = kmsg_baseline(ver.spec, self.executor.kmsg_source())
        seconds = ver.spec.deadline if ver.spec else 2 * VerifySpec.model_fields[
            "settle_seconds"].default
        return ver.model_copy(update=update), now + timedelta(seconds=seconds)

    # -- recovery and operator commands -------------------------------------------------------
    def reconcile_on_start(self) -> list[ActionRecord]:
        """Restore every change a crash left unverified; safe to run repeatedly."""
        out: list[ActionRecord] = []
        now = self.clock()
        for record in self._sealed(self.repo.iter_actions(states=(S.APPLYING, S.VERIFYING),
                                                          oldest_first=True)):
            moved = self._reconcile(record, now)
            if moved is not None:
                out.append(moved)
        out += self.converger.resume(self._sealed(self.repo.iter_actions(states=(S.VERIFIED,))))
        log.info(logfmt(msg="reconciled journal after start", finished=len(out)))
        return out

    def _reconcile(self, record: ActionRecord, now: datetime) -> ActionRecord | None:
        ex = self.executor
        if record.state == S.APPLYING and record.action.kind in MESSAGE_KINDS:
            # The message may or may not have gone out; the outbox dedupes a second send.
            moved = ex.move(record, S.VERIFYING, (S.APPLYING,), "crash recovery", applied="sent")
            return ex.verify(moved, now) if moved else None
        if record.state == S.APPLYING:
            # The crash fell between the committed intent and the read-back: the write may
            # or may not have happened. Put the original back.
            return ex.restore(record, "crash recovery: interrupted while applying",
                              judged=False)
        if record.action.kind in MESSAGE_KINDS:
            return ex.verify(record, now)
        # Commit-confirmed (ARCHITECTURE safety principle 3): a change that was not confirmed
        # before the process died is not trusted, even inside its deadline. The window that
        # held its "after" samples died with the process, so put the original back now.
        return ex.restore(record, "crash recovery: not verified before the restart",
                          judged=False)

    def _operator_record(self, action_id: int) -> ActionRecord:
        """The journal row an operator command acts on: it must exist and be sealed."""
        record = self.repo.get_action(action_id)
        if record is None:
            raise HealerError(f"action {action_id} not found")
        why = self.seal.problem(record)
        if why is not None:
            raise HealerError(f"action {action_id} failed its seal check ({why}): not acted "
                              "on; `healer journal adopt` if the journal is genuine")
        return record

    def rollback(self, action_id: int, actor: str = LOCAL_ADMIN) -> ActionRecord:
        """Restore one change's original value (operator command); raises HealerError."""
        record = self._operator_record(action_id)
        if record.state not in LIVE_STATES:
            raise HealerError(f"action {action_id} is {record.state.value}: nothing to roll back")
        newer = [r for r in self.repo.iter_actions(states=LIVE_STATES, target=record.action.target)
                 if (r.id or 0) > action_id]
        if newer:
            raise HealerError(f"action {newer[-1].id} changed {record.action.target} later: "
                              "roll that back first")
        live = self._read_quietly(record)
        if record.state == S.VERIFIED and live not in (record.applied, record.original):
            moved = self.executor.supersede(record, str(live))
        else:
            moved = self.executor.restore(record, f"rollback requested by {actor}", actor=actor)
        if moved is None:
            raise HealerError(f"action {action_id}: rollback did not complete; see the journal")
        return moved

    def rollback_all(self, actor: str = LOCAL_ADMIN) -> list[ActionRecord]:
        """Roll back every change that is in place, newest first."""
        out = []
        for record in self.repo.iter_actions(states=LIVE_STATES):
            assert record.id is not None
            try:
                out.append(self.rollback(record.id, actor))
            except HealerError as exc:
                log.error(logfmt(msg="rollback failed", id=record.id, error=exc))
        return out

    def _read_quietly(self, record: ActionRecord) -> str | None:
        actuator = self._actuator(record.action)
        try:
            return actuator.read(record.action) if actuator else record.applied
        except ActuatorError:
            return None

    def persist(self, action_id: int, actor: str = LOCAL_ADMIN) -> ActionRecord:
        """Write a verified host sysctl into the drop-in file (an operator's decision)."""
        record = self._operator_record(action_id)
        action = record.action
        if not isinstance(action, SysctlWrite) or action.scope != "host":
            raise HealerError(f"action {action_id}: only host-scope sysctls can be persisted")
        if record.state != S.VERIFIED or record.applied is None:
            raise HealerError(f"action {action_id} is {record.state.value}, not verified")
        decision = self.gate.check_write(action, record.applied, when="persist")
        if decision.verdict != "allow":
            raise HealerError(f"action {action_id}: refused: {'; '.join(decision.reasons)}")
        dropin = self.executor.dropin
        try:
            dropin.add(action_id, action.key, record.applied, self.clock())
        except ValueError as exc:
            raise HealerError(f"action {action_id}: refused: {exc}") from exc
        except OSError as exc:
            raise HealerError(f"cannot write {dropin.path}: {exc}") from exc
        self.repo.add_audit(actor, "action.persisted", f"action:{action_id}",
                            {"file": str(dropin.path), "key": action.key, "value": record.applied})
        log.info(logfmt(msg=f"persisted {action.key} = {record.applied}", file=dropin.path,
                        by=actor))
        return record

    def watched_pids(self) -> set[int]:
        """Pids the process scan must keep: open incidents' ``pid:<n>`` scopes and the
        targets of open (proposed through verifying) actions; two indexed reads."""
        scopes = [i.scope for i in self.repo.iter_incidents(IncidentStatus.OPEN)]
        pids: set[int] = set()
        for record in self.repo.iter_actions(states=OPEN_STATES):
            scopes.append(record.action.scope)
            pid = getattr(record.action, "pid", None)  # ProcessRlimit, ProcessNice
            if isinstance(pid, int):
                pids.add(pid)
        for scope in scopes:
            kind, _, value = scope.partition(":")
            if kind == "pid" and value.isdigit():
                pids.add(int(value))
        return pids

    def read_sysctl(self, scope: str, key: str) -> str | None:
        """A sysctl's live value in a scope (for detectors and evidence); None if unreadable."""
        try:
            action = SysctlWrite(scope=scope, key=key, value="0")
            return self.actuators.for_action(action).read(action)
        except (ActuatorError, ValueError):
            return None
