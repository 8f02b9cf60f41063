"""View models for the HTML pages: diffs of what would change, and incident timelines.

Untrusted text (kernel messages, process names, LLM explanations) is passed through as
plain strings; the templates' autoescaping renders it inert.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from guardrails.actions import Action
from healer.models import ActionRecord, Incident, Opinion, Sample, Stop
from healer.store.repository import Repository
from web.approvals import record_status
from web.charts import verification_chart
from web.schemas import ApprovalOut, utc

# Fields that say *what* is changed (shown as the key), not *to what*.
_IDENTITY = ("kind", "scope", "key", "path", "knob", "pid", "start_time", "index", "resource",
             "client")


def proposed_value(action: Action) -> str:
    """The new value(s) an action sets, as text."""
    data = action.model_dump(mode="json")
    values = {k: v for k, v in data.items() if k not in _IDENTITY}
    if len(values) == 1:
        return str(next(iter(values.values())))
    return ", ".join(f"{k}={v}" for k, v in values.items())


def _gpu_current(action: Action, incident: Incident | None, latest: Sample | None) -> str | None:
    index = getattr(action, "index", None)
    gpus = list(incident.evidence.gpus) if incident else []
    gpus += list(latest.gpus) if latest else []
    for gpu in gpus:
        if gpu.index != index:
            continue
        if action.kind == "gpu_power_limit" and "power_limit_watts" in gpu.metrics:
            return f"{gpu.metrics['power_limit_watts']:g}"
        if action.kind == "gpu_compute_mode" and gpu.compute_mode:
            return gpu.compute_mode
    return None


def current_value(record: ActionRecord, incident: Incident | None,
                  latest: Sample | None) -> str | None:
    """Best knowledge of the value before the change: read-back original, else evidence."""
    if record.original is not None:
        return record.original
    action = record.action
    tunables = incident.evidence.tunables if incident else {}
    for key in (getattr(action, "key", None), action.key_name, action.target):
        if key and key in tunables:
            return tunables[key]
    if action.kind == "process_rlimit" and incident is not None:
        for proc in incident.evidence.processes:
            if proc.pid == action.pid and action.resource == "nofile":
                return None if proc.nofile_soft is None else str(proc.nofile_soft)
    return _gpu_current(action, incident, latest)


@dataclass(frozen=True)
class ProposalView:
    record: ActionRecord
    incident: Incident | None
    target: str
    current: str | None
    proposed: str
    approval: ApprovalOut


def proposal_view(repo: Repository, record: ActionRecord, incident: Incident | None,
                  latest: Sample | None, ttl: float) -> ProposalView:
    """What the approvals inbox shows for one record."""
    return ProposalView(record, incident, f"{record.action.kind} {record.action.key_name}",
                        current_value(record, incident, latest), proposed_value(record.action),
                        record_status(repo, record, ttl))


@dataclass(frozen=True)
class StepView:
    """One step of a convergence as the dashboard lists it."""

    number: int
    record: ActionRecord
    value: str  # what the step set (read back), else what it proposes
    why: str  # the verdict's first reason, the rollback's, or the guard's


@dataclass(frozen=True)
class ConvergenceView:
    """A remedy stepped on one target: its steps, where the ceiling is, why it stopped."""

    target: str
    steps: list[StepView]
    allowed: int
    ceiling: float | None
    stop: Stop | None = None
    escalation: ActionRecord | None = None

    @property
    def value(self) -> float | None:
        """The newest step's value as a number, for the gauge against the ceiling."""
        try:
            return float(self.steps[-1].value)
        except ValueError:
            return None


def _step_view(record: ActionRecord) -> StepView:
    ver = record.verification
    assert ver is not None and ver.step is not None
    why = ver.rollback_reason or (ver.result.reasons[0] if ver.result and ver.result.reasons
                                  else "; ".join(record.decision.reasons))
    return StepView(ver.step.number, record, record.applied or proposed_value(record.action), why)


def convergences(records: list[ActionRecord]) -> list[ConvergenceView]:
    """The convergences among ``records``, each with its steps oldest first."""
    steps: dict[str, list[ActionRecord]] = {}
    for record in sorted(records, key=lambda r: r.id or 0):
        if record.convergence is not None:
            steps.setdefault(record.convergence, []).append(record)
    stops = [r for r in records if r.verification and r.verification.stop]
    out = []
    for chain in steps.values():
        last = chain[-1]
        assert last.verification is not None and last.verification.step is not None
        ids = {r.id for r in chain}
        esc = next((r for r in stops if r.verification and r.verification.stop
                    and ids & set(r.verification.stop.steps)), None)
        out.append(ConvergenceView(
            last.action.target, [_step_view(r) for r in chain], last.verification.step.allowed,
            last.verification.step.ceiling, esc.verification.stop if esc and esc.verification
            else None, esc))
    return out


@dataclass
class TimelineEntry:
    at: datetime
    kind: str  # detection | evidence | diagnosis | opinion | action | transition | resolved
    title: str
    details: list[tuple[str, str]] = field(default_factory=list)
    record: ActionRecord | None = None
    proposal: ProposalView | None = None
    chart: dict[str, Any] | None = None


def _action_entries(repo: Repository, incident: Incident, latest: Sample | None, ttl: float,
                    now: datetime) -> list[TimelineEntry]:
    entries = []
    for record in repo.list_actions(incident_id=incident.id, limit=200, every_host=True):
        view = proposal_view(repo, record, incident, latest, ttl)
        entries.append(TimelineEntry(utc(record.created_at), "action",
                                     f"Proposal #{record.id}: {view.target}", record=record,
                                     proposal=view,
                                     chart=verification_chart(repo, record, incident, now)))
        for row in repo.list_audit(subject=f"action:{record.id}"):
            if row.event == "action.transition":
                d = row.detail
                entries.append(TimelineEntry(
                    utc(row.at), "transition",
                    f"#{record.id} {d.get('from')} → {d.get('to')} by {row.actor}",
                    [("comment", str(d.get("comment", "")))] if d.get("comment") else []))
    return entries


def _opinion_entry(incident: Incident, o: Opinion) -> TimelineEntry:
    """The LLM's second opinion, beside the diagnosis it never replaces."""
    if o.failure:
        title = f"Second opinion: none (the LLM gave no answer: {o.failure})"
    else:
        stance = "agrees" if o.agrees else "disagrees; the playbook's diagnosis stands"
        title = (f"Second opinion (LLM {o.model}): {o.root_cause}, confidence "
                 f"{o.confidence:.0%} ({stance})")
    details = [("explanation", o.explanation)] if o.explanation and not o.failure else []
    return TimelineEntry(utc(incident.first_seen), "opinion", title, details)


def incident_timeline(repo: Repository, incident: Incident, latest: Sample | None, ttl: float,
                      now: datetime) -> list[TimelineEntry]:
    """Detection, evidence, diagnosis, proposals and state changes, oldest first."""
    ev = incident.evidence
    entries = [TimelineEntry(utc(incident.first_seen), "detection",
                             f"Detected {incident.playbook} in {incident.scope}",
                             [(k, f"{v:g}") for k, v in ev.signals.items()])]
    details = [("kernel log", line) for line in ev.kmsg]
    details += [(f"tunable {k}", v) for k, v in ev.tunables.items()]
    details += [(f"capture {k}", v) for k, v in ev.captures.items()]
    details += [(f"process {p.pid}", f"{p.name} cpu={p.cpu_percent:g}% rss={p.rss_bytes}")
                for p in ev.processes]
    details += [(f"gpu {g.index}", f"{g.name} ok={g.ok} throttle={','.join(g.throttle_reasons)}")
                for g in ev.gpus]
    if details:
        entries.append(TimelineEntry(utc(incident.first_seen), "evidence", "Evidence", details))
    diag = incident.diagnosis
    if diag is not None:
        entries.append(TimelineEntry(
            utc(incident.first_seen), "diagnosis",
            f"Diagnosis: {diag.root_cause} ({diag.source}, confidence {diag.confidence:.0%})",
            [("explanation", diag.explanation)] if diag.explanation else []))
        if diag.second_opinion is not None:
            entries.append(_opinion_entry(incident, diag.second_opinion))
    entries += _action_entries(repo, incident, latest, ttl, now)
    if incident.status.value == "resolved":
        entries.append(TimelineEntry(utc(incident.last_seen), "resolved", "Resolved"))
    order = {"detection": 0, "evidence": 1, "diagnosis": 2, "opinion": 3}
    entries.sort(key=lambda e: (e.at, order.get(e.kind, 4)))
    return entries
