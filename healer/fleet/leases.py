"""The lease client: the engine's ``FleetGate`` (healer.act.lease), spoken on its own thread.

    engine cycle                      lease thread
    answer(id) -> ask                 .
    request(record) ---------------->  POST /lease
    answer(id) -> asking              <- grant (arrival time kept, monotonic) | wait | error
    answer(id) -> go | wait
    applying(id)                      renew every RENEW_SECONDS while held
    release(id, outcome) ----------->  POST /release (retried until it is answered)

A grant counts only while it is younger than TTL/2 by this agent's own monotonic clock
(its arrival, or the last renewal's), so a change never starts on a lease the control
plane may already have reclaimed. A lease lost while its change is applying or verifying
ends nothing: the change finishes verifying (and rolls back on regression) and is reported.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from guardrails.fleet import target_name
from healer.act.lease import FleetAnswer, Outcome
from healer.fleet.state import FleetState, jittered
from healer.fleet.transport import (
    Backpressure,
    FleetError,
    Outdated,
    Refused,
    Transport,
    Unreachable,
)
from healer.fleet.wire import Grant, LeaseReply, Remedy
from healer.logs import logfmt
from healer.models import ActionRecord, Incident

log = logging.getLogger("healer.fleet")

RENEW_SECONDS = 5.0  # the protocol's renewal period (TTL 15 s by default)
UNREACHABLE_RETRY = 5.0  # a request that got no answer is asked again after this
OUTDATED_RETRY = 60.0  # a control plane refusing this version is asked again slowly
RELEASE_GIVE_UP = 600.0  # a release unanswered this long is dropped (reports tell the rest)
IDLE = 1.0
WAIT_SPREAD = 0.1  # a wait's retry_after is stretched by up to this fraction, at random
# Waits that end when a lease of the remedy ends, which the control plane's turn events say.
ROOM_REASONS = frozenset({"canary", "wave", "in_flight", "breaker", "busy"})

IncidentOf = Callable[[int], "Incident | None"]


@dataclass
class _Claim:
    """One change's dealings with the control plane."""

    body: dict[str, Any]
    remedy: Remedy
    phase: str = "queued"  # queued | sent | granted | waiting | failed | lost
    grant: Grant | None = None
    fresh_at: float = 0.0  # monotonic arrival of the grant or its last renewal
    renew_at: float = 0.0
    reason: str = ""
    rule: str = ""
    retry_at: float = 0.0
    applying: bool = False


@dataclass
class _Release:
    lease_id: int
    epoch: int
    outcome: Outcome
    give_up_at: float


@dataclass
class LeaseClient:
    """``FleetGate`` over HTTP; ``incident_of`` reads an incident (its fleet fingerprint)."""

    transport: Transport
    host_id: str
    state: FleetState
    incident_of: IncidentOf
    monotonic: Callable[[], float] = time.monotonic
    renew_seconds: float = RENEW_SECONDS
    _claims: dict[int, _Claim] = field(default_factory=dict)
    _remedies: dict[int, Remedy] = field(default_factory=dict)  # kept between claims
    _releases: deque[_Release] = field(default_factory=deque)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _blocked_until: float = 0.0  # Retry-After of the last 429/503
    wake: Callable[[], None] = lambda: None  # the worker's, once it runs

    # -- the engine's side (the cycle thread; never blocks) -------------------------------
    def answer(self, action_id: int) -> FleetAnswer:
        """What the fleet says about applying change ``action_id`` now."""
        now = self.monotonic()
        with self._lock:
            claim = self._claims.get(action_id)
            remedy = self._remedies.get(action_id)
            held = "paused" if self.state.paused else (
                "breaker" if remedy is not None and self.state.breaker_open(remedy) else "")
            if held:  # no change starts; a grant held for one goes back to the fleet
                if claim is not None:
                    self._drop(action_id, claim, "abandoned")
                return FleetAnswer(wait=held)
            if claim is None:
                return FleetAnswer(ask=True)
            if claim.phase in ("queued", "sent"):
                return FleetAnswer(wait="asking")
            if claim.phase == "granted" and claim.grant is not None:
                if now - claim.fresh_at < claim.grant.ttl_seconds / 2:
                    return FleetAnswer(go=True, rule=claim.grant.rule)
                return FleetAnswer(wait="renewing", rule=claim.grant.rule)
            if now < claim.retry_at:
                return FleetAnswer(wait=claim.reason, rule=claim.rule)
            del self._claims[action_id]  # the wait is over: guard it again, then ask again
            return FleetAnswer(ask=True)

    def request(self, record: ActionRecord) -> None:
        """Queue a lease request for ``record``'s remedy."""
        assert record.id is not None
        incident = self.incident_of(record.incident_id) if record.incident_id else None
        target = target_name(record.action)
        assert target is not None, "only changes that write the host are leased"
        remedy = Remedy(playbook=incident.playbook if incident else "",
                        kind=record.action.kind, target=target)
        fingerprint = (incident.fleet_fingerprint if incident else
                       f"{remedy.kind}|{remedy.target}")
        body = {"host_id": self.host_id, "action_id": record.id,
                "incident_fingerprint": fingerprint, "remedy": remedy.model_dump(),
                "renew": None}
        with self._lock:
            self._claims[record.id] = _Claim(body=body, remedy=remedy)
            self._remedies[record.id] = remedy
        self.wake()

    def turn(self, remedy: Remedy) -> None:
        """The control plane says a lease of ``remedy`` ended: a change waiting for room
        (behind the canary, a wave, the in-flight cap) asks again on the next cycle instead
        of at its ``retry_after``. A pause is not ended; a tripped breaker ends the rollout,
        and no turn comes for it."""
        with self._lock:
            for claim in self._claims.values():
                if claim.phase == "waiting" and claim.remedy == remedy \
                        and claim.reason in ROOM_REASONS:
                    claim.retry_at = 0.0

    def ready(self) -> bool:
        """Whether some change's wait is over (its turn came, or its retry time passed):
        the engine's next cycle asks again (a cycle run early need not wait for it)."""
        now = self.monotonic()
        with self._lock:
            return any(c.phase in ("waiting", "failed") and now >= c.retry_at
                       for c in self._claims.values())

    def applying(self, action_id: int) -> None:
        """The change is being applied: its lease is renewed until released."""
        with self._lock:
            claim = self._claims.get(action_id)
            if claim is not None:
                claim.applying = True

    def release(self, action_id: int, outcome: Outcome) -> None:
        """Forget the change; hand a lease it held back with ``outcome``."""
        with self._lock:
            self._remedies.pop(action_id, None)
            claim = self._claims.get(action_id)
            if claim is not None:
                self._drop(action_id, claim, outcome)

    def _drop(self, action_id: int, claim: _Claim, outcome: Outcome) -> None:
        """Forget a claim, queueing the release of its grant (called with the lock held)."""
        del self._claims[action_id]
        if claim.grant is not None:
            self._releases.append(_Release(claim.grant.lease_id, claim.grant.epoch, outcome,
                                           self.monotonic() + RELEASE_GIVE_UP))
            self.wake()

    def held(self) -> int:
        """Leases held now (granted, being renewed)."""
        with self._lock:
            return sum(1 for c in self._claims.values() if c.phase == "granted")

    # -- the lease thread -------------------------------------------------------------
    def step(self) -> float:
        """Send what is due: new requests, renewals, releases; seconds until more is due."""
        now = self.monotonic()
        if now < self._blocked_until:
            return self._blocked_until - now
        if (job := self._next_request(now)) is not None:
            self._ask(*job)
            return 0.0
        if (rel := self._next_release()) is not None:
            self._release(rel)
            return 0.0
        return self._next_due(now)

    def _next_request(self, now: float) -> tuple[int, dict[str, Any], bool] | None:
        """(action id, body, renewal?) of the first request due."""
        with self._lock:
            for action_id, claim in self._claims.items():
                if claim.phase == "queued":
                    claim.phase = "sent"
                    return action_id, claim.body, False
            for action_id, claim in self._claims.items():
                if claim.phase == "granted" and claim.grant and now >= claim.renew_at:
                    claim.renew_at = now + self._period(claim.grant)
                    renew = {"lease_id": claim.grant.lease_id, "epoch": claim.grant.epoch}
                    return action_id, {**claim.body, "renew": renew}, True
        return None

    def _next_release(self) -> _Release | None:
        with self._lock:
            return self._releases.popleft() if self._releases else None

    def _next_due(self, now: float) -> float:
        with self._lock:
            due = [c.renew_at for c in self._claims.values() if c.phase == "granted"]
        return min([IDLE, *(max(0.0, d - now) for d in due)])

    def _ask(self, action_id: int, body: dict[str, Any], renewal: bool) -> None:
        try:
            raw = self.transport.call("POST", "lease", body,
                                      metric="renew" if renewal else "lease")
            self.state.answered()
            reply = LeaseReply.model_validate(raw)
        except FleetError as exc:
            self._failed(action_id, exc, renewal)
            return
        except ValidationError:
            reply = LeaseReply()
        if reply.grant is None and reply.wait is None:
            self._failed(action_id, Refused(200, "a lease answer with neither a grant nor a "
                                                 "wait"), renewal)
            return
        with self._lock:
            self._take(action_id, body, renewal, reply)

    def _take(self, action_id: int, body: dict[str, Any], renewal: bool,
              reply: LeaseReply) -> None:
        """Apply a lease answer to its claim (called with the lock held)."""
        now = self.monotonic()
        claim = self._claims.get(action_id)
        renewed = body["renew"]["lease_id"] if renewal else None
        if claim is None or (renewal and (claim.grant is None
                                          or claim.grant.lease_id != renewed)):
            if reply.grant is not None:  # the claim went meanwhile: hand back what came
                self._releases.append(_Release(reply.grant.lease_id, reply.grant.epoch,
                                               "abandoned", now + RELEASE_GIVE_UP))
            return
        if reply.grant is not None:
            claim.phase, claim.grant, claim.fresh_at = "granted", reply.grant, now
            claim.renew_at = now + self._period(reply.grant)
        elif reply.wait is not None and renewal:
            self._lost(action_id, claim, f"renewal answered wait ({reply.wait.reason})")
        elif reply.wait is not None:
            claim.phase, claim.grant = "waiting", None
            claim.reason, claim.rule = reply.wait.reason, reply.wait.rule
            # never sooner than told, and spread: the hosts held by one rule (a systemic
            # hold, a canary) are told the same time, and would all ask at once
            wait = max(0.5, reply.wait.retry_after)
            claim.retry_at = now + wait + random.uniform(0, WAIT_SPREAD * wait)

    def _period(self, grant: Grant) -> float:
        """Seconds between renewals: the protocol's 5 s, or TTL/3 when that is shorter."""
        return min(self.renew_seconds, grant.ttl_seconds / 3)

    def _failed(self, action_id: int, exc: FleetError, renewal: bool) -> None:
        now = self.monotonic()
        if isinstance(exc, Unreachable):
            self.state.unanswered()
        else:  # it answered: busy, outdated or refusing
            self.state.answered()
        if isinstance(exc, Backpressure):
            self._hold_back(exc)
        with self._lock:
            claim = self._claims.get(action_id)
            if claim is None:
                return
            if isinstance(exc, Refused) and exc.status == 409 and renewal:
                self._lost(action_id, claim, exc.detail)
                return
            if renewal:
                return  # the grant ages; it stops counting at TTL/2, the next renewal retries
            reason, retry = self._wait_for(exc)
            claim.phase, claim.reason, claim.rule = "failed", reason, ""
            claim.retry_at = now + retry
        log.info(logfmt(msg="lease request failed", id=action_id, error=exc))

    def _wait_for(self, exc: FleetError) -> tuple[str, float]:
        if isinstance(exc, Backpressure):
            return "backpressure", max(0.5, self._blocked_until - self.monotonic())
        if isinstance(exc, Outdated):
            return "outdated", OUTDATED_RETRY
        if isinstance(exc, Refused):
            return "refused", OUTDATED_RETRY
        return "unreachable", UNREACHABLE_RETRY

    def _lost(self, action_id: int, claim: _Claim, why: str) -> None:
        """A renewal said the lease is gone (called with the lock held)."""
        if claim.applying:
            claim.phase, claim.grant = "lost", None
            log.warning(logfmt(msg="fleet lease lost while the change is in place: it "
                               "finishes verifying and is reported", id=action_id, why=why))
        else:
            del self._claims[action_id]
            log.info(logfmt(msg="fleet lease lost before use", id=action_id, why=why))

    def _release(self, rel: _Release) -> None:
        body = {"host_id": self.host_id, "lease_id": rel.lease_id, "epoch": rel.epoch,
                "outcome": rel.outcome}
        try:
            self.transport.call("POST", "release", body)
            self.state.answered()
        except Refused as exc:  # expired or reclaimed: nothing left to hand back
            self.state.answered()
            log.info(logfmt(msg="release refused", lease=rel.lease_id, error=exc))
        except FleetError as exc:
            if isinstance(exc, Unreachable):
                self.state.unanswered()
            else:
                self.state.answered()
            self._hold_back(exc)
            if self.monotonic() < rel.give_up_at:
                with self._lock:
                    self._releases.append(rel)

    def _hold_back(self, exc: FleetError) -> None:
        """No lease traffic for a while: Retry-After, or a pause fit for the failure."""
        wait = (exc.retry_after if isinstance(exc, Backpressure) else
                OUTDATED_RETRY if isinstance(exc, Outdated) else UNREACHABLE_RETRY)
        self._blocked_until = self.monotonic() + jittered(wait, 0.2)
