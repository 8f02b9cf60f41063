"""The LLM job, and how the root agent takes up what it answered.

``diagnose_pending(repo, llm, library)`` finds the open incidents that want an LLM's answer
(``opinion.asks_llm``: unclassified ones, and those of playbooks that ask for a second
opinion), asks the LLM, and writes each answer to the store as a record of its incident.
It needs nothing but the store and the LLM client, so it runs anywhere: on the daemon's
pool today, in the unprivileged process tomorrow. All it remembers is in the store, shared
by every process and kept across restarts:

- the answer cache, by (fingerprint, model, prompt version): an unclassified incident's
  fingerprint is its message template, so a thousand variants of one driver error, and
  every later incident with that template, cost one call;
- one call in flight per fingerprint: a lease, taken in one atomic statement;
- at most ``diagnoses_per_hour`` diagnoses in any hour: that many slots, each held for an
  hour by the diagnosis that took it;
- failures: tried again after a backoff, at most ``len(retry_seconds) + 1`` tries within
  one token cap (``llm_max_tokens_per_incident``) for them all, then a failure record.

``take_up_answers`` is the root agent's side, on its cycle thread. It trusts nothing in a
record: the answer is validated again, the LLM's proposals are re-tagged against the
playbook's own diagnosis (``opinion.combine``), and each goes through the change engine and
the guard like any other proposal.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from healer.diagnose.base import DiagnoseContext, DiagnosisReport
from healer.diagnose.cache import ATTEMPT, BUDGET, CACHE, CLAIM, cache_key
from healer.diagnose.evidence import MAX_RELATED
from healer.diagnose.llm import LLMDiagnoser
from healer.diagnose.opinion import asking_playbooks
from healer.diagnose.schema import LLMResult
from healer.logs import logfmt
from healer.models import Incident, IncidentStatus
from healer.store.repository import Repository
from healer.store.tables import NAME_LEN
from healer.telemetry import Telemetry
from playbooks.loader import Library

log = logging.getLogger("healer.diagnose.pending")

HOUR = 3600.0
Outcome = Literal["asked", "cached", "failed", "busy", "waiting", "budget"]


@dataclass(frozen=True)
class LLMLimits:
    """How often and how hard the job asks (``Settings.llm_diagnoses_per_hour``)."""

    diagnoses_per_hour: int = 20
    # A diagnosis ends long before its lease does; a lease that runs out means its holder
    # died, and another process may ask again.
    claim_seconds: float = 900.0
    retry_seconds: tuple[float, ...] = (60.0, 900.0)  # waits after the 1st and 2nd failure
    cache_seconds: float = 30 * 86400.0  # an answer is reused for a month
    memory_seconds: float = 86400.0  # failures are remembered a day, then tried afresh
    batch: int = 50  # incidents looked at per run


class Attempts(BaseModel):
    """One fingerprint's failed tries so far (what the store keeps under ``ATTEMPT``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    tries: int = 0
    tokens: int = 0
    failure: str = ""
    next_at: float = 0.0  # epoch seconds before which it is not tried again


@dataclass
class PendingRun:
    """What one run of the job did, incident by incident."""

    asked: int = 0  # answered by a call to the LLM
    cached: int = 0  # answered from the cache
    failed: int = 0  # the LLM gave no answer this time
    busy: int = 0  # another process is asking about the same fingerprint
    waiting: int = 0  # backing off after a failure
    over_budget: bool = False  # the hour's diagnoses are spent: the run stopped

    def count(self, outcome: Outcome) -> None:
        if outcome == "budget":
            self.over_budget = True
        else:
            setattr(self, outcome, getattr(self, outcome) + 1)


def diagnose_pending(repo: Repository, llm: LLMDiagnoser, library: Library, *,
                     limits: LLMLimits | None = None,
                     context_for: Callable[[Incident], DiagnoseContext] | None = None,
                     telemetry: Telemetry | None = None,
                     fleet: bool = False) -> PendingRun:
    """Ask the LLM about every open incident that wants its answer and has none yet.

    ``fleet`` (a control plane): every host's incidents, and the cache, the claim and the
    failures keyed by the incident's fleet fingerprint, so one fingerprint costs one call
    however many hosts report it, across every replica."""
    limits = limits or LLMLimits()
    run = PendingRun()
    if llm.client.breaker.state == "open":
        return run  # no call could be made; the next run looks again
    model, version = llm.model[:NAME_LEN], llm.prompt_version
    waiting = repo.incidents_awaiting_llm(model, version, asking=asking_playbooks(library),
                                          known=set(library.ids), limit=limits.batch,
                                          every_host=fleet)
    if not waiting:
        return run
    open_now = repo.list_incidents(status=IncidentStatus.OPEN, limit=MAX_RELATED + 1)
    for incident in waiting:
        ctx = _context(incident, library, context_for, open_now)
        key = repo.fleet_fingerprint_of(incident.id or 0) if fleet else incident.fingerprint
        outcome = _answer(repo, llm, incident, key or incident.fingerprint, ctx, limits,
                          telemetry)
        run.count(outcome)
        if outcome in ("busy", "waiting", "budget") and telemetry is not None:
            telemetry.llm_deferred.labels("backoff" if outcome == "waiting" else outcome).inc()
        if outcome == "budget":
            # The job runs every few seconds: say it once an hour, not on every run.
            if repo.kv_claim(CLAIM, "budget-warning", secrets.token_hex(8), HOUR):
                log.warning(logfmt(msg="llm budget spent: diagnoses wait for the next hour",
                               per_hour=limits.diagnoses_per_hour))
            break
    return run


def _context(incident: Incident, library: Library,
             context_for: Callable[[Incident], DiagnoseContext] | None,
             open_now: list[Incident]) -> DiagnoseContext:
    ctx = context_for(incident) if context_for is not None else DiagnoseContext(
        playbook=library.get(incident.playbook))
    related = tuple(f"{i.playbook} {i.scope}" + (f" [{i.subject}]" if i.subject else "")
                    for i in open_now if i.id != incident.id)
    return replace(ctx, related=related[:MAX_RELATED], root_causes=library.ids)


def _answer(repo: Repository, llm: LLMDiagnoser, incident: Incident, fingerprint: str,
            ctx: DiagnoseContext, limits: LLMLimits, telemetry: Telemetry | None) -> Outcome:
    """One incident: from the cache, or one call under the fingerprint's lease."""
    assert incident.id is not None
    model, version = llm.model[:NAME_LEN], llm.prompt_version
    key = cache_key(fingerprint, model, version)
    if _from_cache(repo, incident.id, key, model, version, telemetry):
        return "cached"
    attempts = _attempts(repo, key)
    budget = llm.max_tokens_per_incident - attempts.tokens
    if attempts.tries > len(limits.retry_seconds) or budget <= 0:  # given up on it
        repo.add_llm_answer(incident.id, model, version, answer=None, cached=True,
                            failure=attempts.failure or "token_budget")
        return "failed"
    if attempts.next_at > repo.now().timestamp():
        return "waiting"
    holder = secrets.token_hex(8)
    if not repo.kv_claim(CLAIM, key, holder, limits.claim_seconds):
        return "busy"
    try:
        if _from_cache(repo, incident.id, key, model, version, telemetry):
            return "cached"  # answered by another process while this one waited
        if not _take_slot(repo, limits.diagnoses_per_hour, holder):
            return "budget"
        report = llm.diagnose_detailed(incident, ctx, token_budget=budget)
        return _keep(repo, incident.id, key, model, version, report, attempts, limits)
    finally:
        repo.kv_release(CLAIM, key, holder)


def _from_cache(repo: Repository, incident_id: int, key: str, model: str, version: str,
                telemetry: Telemetry | None) -> bool:
    stored = repo.kv_get(CACHE, key)
    if stored is None:
        return False
    try:
        result = LLMResult.model_validate_json(stored)
    except ValidationError:  # written by another version, or tampered with: ask again
        repo.kv_delete(CACHE, key)
        return False
    repo.add_llm_answer(incident_id, model, version, answer=result.model_dump(mode="json"),
                        failure=None, cached=True)
    if telemetry is not None:
        telemetry.llm_cache_hits.inc()
    return True


def _attempts(repo: Repository, key: str) -> Attempts:
    stored = repo.kv_get(ATTEMPT, key)
    if stored is None:
        return Attempts()
    try:
        return Attempts.model_validate_json(stored)
    except ValidationError:
        return Attempts()


def _take_slot(repo: Repository, per_hour: int, holder: str) -> bool:
    """Hold one of the hour's ``per_hour`` slots for an hour; False when all are held."""
    held = set(repo.kv_live(BUDGET))
    if len(held) >= per_hour:
        return False
    return any(repo.kv_claim(BUDGET, f"slot-{n}", holder, HOUR)
               for n in range(per_hour) if f"slot-{n}" not in held)


def _keep(repo: Repository, incident_id: int, key: str, model: str, version: str,
          report: DiagnosisReport, attempts: Attempts, limits: LLMLimits) -> Outcome:
    """Store what one call gave: an answer (cached), or a failure to try again later."""
    tokens = report.tokens_in + report.tokens_out
    if report.result is not None:
        repo.kv_put(CACHE, key, report.result.model_dump_json(), ttl_seconds=limits.cache_seconds)
        repo.kv_delete(ATTEMPT, key)
        repo.add_llm_answer(incident_id, model, version,
                            answer=report.result.model_dump(mode="json"), failure=None,
                            cached=False, calls=report.calls, tokens=tokens)
        return "asked"
    failure = report.failure or "unknown"
    if failure == "circuit_open":
        return "waiting"  # no request was made: not a try
    waits = limits.retry_seconds
    wait = waits[attempts.tries] if attempts.tries < len(waits) else 0.0
    failed = Attempts(tries=attempts.tries + 1, tokens=attempts.tokens + tokens,
                      failure=failure, next_at=repo.now().timestamp() + wait)
    repo.kv_put(ATTEMPT, key, failed.model_dump_json(), ttl_seconds=limits.memory_seconds)
    log.warning(logfmt(msg="llm gave no diagnosis", incident=incident_id, reason=failure,
                   tries=failed.tries))
    if failed.tries > len(waits):
        repo.add_llm_answer(incident_id, model, version, answer=None, failure=failure,
                            cached=False, calls=report.calls, tokens=tokens)
    return "failed"
