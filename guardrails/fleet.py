"""The fleet's guardrails: may this host start this remedy now? One pure function decides.

``decide(state, request, policy, now)`` returns a ``FleetDecision``, a value with its rule
id, the way ``check`` returns a ``Decision``: no I/O, no clock of its own, never raises
for a "no". The control plane reads ``FleetState`` from PostgreSQL inside the transaction
that grants (healer.store.repo_leases) and records what the decision changes
(``granted``, ``released``); the same functions drive the property tests.

The rules, in the order they are checked (the first that holds answers):

    F-rollback   a rollback is never held back
    F-paused     the kill switch: fleet-wide, this remedy, or this host
    F-breaker    the remedy's breaker is open, or failures + in flight reach K
    F-systemic   one fingerprint on too many hosts at once: nobody waits it out alone
    F-hold       a rollout starts no sooner than the hold after the first report
    F-canary     while the canary verifies, every other host waits for it (for a canary
                 whose lease was reclaimed before its outcome came: its wave timeout)
    F-breaker    failures + hosts in flight + hosts reclaimed without an outcome reach K
    F-in-flight  the count, share and failure-domain caps on hosts applying at once
    F-canary     the first host to get this far is the canary
    F-wave       then waves of ceil(wave_percent) of the hosts affected, one after another

A *remedy* is (playbook, action kind, target name): the sysctl key, the cgroup knob, the
rlimit resource or the GPU setting, never the value. A *fleet fingerprint* names the same
trouble on many hosts: (playbook, scope kind), an unclassified incident's template, or
an alert's name and labels without the per-host ones.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from guardrails.actions import (
    ACTION_KINDS,
    Action,
    CgroupLimit,
    ProcessNice,
    ProcessRlimit,
    SysctlWrite,
)
from guardrails.policy import FleetPolicy

Purpose = Literal["apply", "rollback"]
# ``busy`` is the store's, not decide's: another grant of the remedy is being decided.
WaitReason = Literal["canary", "wave", "in_flight", "breaker", "systemic", "hold", "paused",
                     "busy"]
Outcome = Literal["verified", "rolled_back", "rollback_failed", "superseded", "denied",
                  "abandoned"]
OUTCOMES: tuple[Outcome, ...] = ("verified", "rolled_back", "rollback_failed", "superseded",
                                 "denied", "abandoned")
# Outcomes that count toward a remedy's breaker: the change made things worse (and was
# undone), or could not even be undone.
FAILED: frozenset[str] = frozenset({"rolled_back", "rollback_failed"})
UNGATED_KINDS = frozenset({"notify", "escalate"})  # they change nothing on the host
# Labels that name the host itself, left out of an alert's fleet fingerprint: with them,
# no two hosts would ever share one (our rules copy the scrape's `host` label onto alerts).
PER_HOST_LABELS = frozenset({"instance", "host"})
_GPU_SETTINGS = {"gpu_power_limit": "power_limit", "gpu_locked_clocks": "locked_clocks",
                 "gpu_compute_mode": "compute_mode",
                 "gpu_mps_thread_percentage": "mps_thread_percentage",
                 "gpu_timeslice": "timeslice"}
RETRY_SOON = 2.0  # seconds: a wait that may end any moment (the pause, the busy lock)
RETRY_LATER = 10.0  # seconds: a wait that ends only when a person acts
# A wait for room (the canary, a wave, the in-flight cap): it ends when a lease ends, and
# the control plane then tells the affected hosts, in order, that it is their turn (a "turn"
# event), so a host asks again by itself only this rarely, in case no turn reaches it.
RETRY_ROOM = 10.0
HOLD_RULE = "F-hold"  # the systemic hold: a wait that only time ends (hold_wait)
# Waits that ``decide`` reaches from the fleet's state alone, before anything of the asking
# host but its pause (a wait too): the systemic rule and the breaker. Whatever one host is
# told with such a wait, every other host asking at the same moment is told the same,
# unless it holds a live lease of the remedy (the store hands that lease back) or is
# paused (it is told its pause).
FLEET_WIDE_WAITS: frozenset[str] = frozenset({"systemic", "breaker"})


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Remedy(_Frozen):
    """What a rollout rolls out: (playbook, action kind, target name), never a value."""

    playbook: str = Field(max_length=200, pattern=r"^[^:\s]*$")  # "": an operator's change
    kind: str = Field(min_length=1, max_length=64, pattern=r"^[a-z_]+$")
    target: str = Field(min_length=1, max_length=256, pattern=r"^\S+$")

    @field_validator("kind")
    @classmethod
    def _gated(cls, v: str) -> str:
        if v not in ACTION_KINDS or v in UNGATED_KINDS:
            raise ValueError(f"{v!r} is not an action kind that writes a host")
        return v

    @property
    def key(self) -> str:
        """``playbook:kind:target``: how the store, the CLI and the dashboard name it."""
        return f"{self.playbook}:{self.kind}:{self.target}"

    @classmethod
    def parse(cls, key: str) -> Remedy:
        """The remedy ``key`` names; ValueError when it is not ``playbook:kind:target``."""
        playbook, _, rest = key.partition(":")
        kind, _, target = rest.partition(":")
        return cls(playbook=playbook, kind=kind, target=target)


def target_name(action: Action) -> str | None:
    """The name of what ``action`` changes, without the value; None for notify/escalate."""
    if isinstance(action, SysctlWrite):
        return action.key
    if isinstance(action, CgroupLimit):
        return action.knob
    if isinstance(action, ProcessRlimit):
        return action.resource
    if isinstance(action, ProcessNice):
        return "nice"
    return _GPU_SETTINGS.get(action.kind)  # None: notify, escalate


def remedy_of(playbook: str, action: Action) -> Remedy | None:
    """The fleet-gated remedy ``action`` is an instance of; None when it writes nothing."""
    target = target_name(action)
    return None if target is None else Remedy(playbook=playbook, kind=action.kind,
                                              target=target)


def fleet_fingerprint(playbook: str, scope: str, subject: str = "") -> str:
    """An incident's fleet fingerprint: ``unclassified|<template>`` for an unclassified
    one, else ``<playbook>|<scope kind>`` (host, netns, cgroup, pid, gpu)."""
    if playbook == "unclassified":
        return f"unclassified|{subject}"
    return f"{playbook}|{scope.partition(':')[0]}"


def alert_fingerprint(alertname: str, labels: Mapping[str, str]) -> str:
    """An alert's fleet fingerprint, ``Name{label="value",...}`` in label order, without
    the per-host labels (PER_HOST_LABELS) and ``alertname`` itself."""
    kept = sorted((k, v) for k, v in labels.items()
                  if k not in PER_HOST_LABELS and k != "alertname")
    inner = ",".join(f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in kept)
    return f"{alertname}{{{inner}}}"


class InFlight(_Frozen):
    """A host holding a live lease of the remedy: applying or verifying."""

    host_id: str
    labels: dict[str, str] = Field(default_factory=dict)


class Rollout(_Frozen):
    """One remedy's way through the fleet: the canary, then waves (kept by the store as
    JSON; changed only by ``granted`` and ``released``)."""

    remedy: Remedy
    fingerprint: str
    started_at: datetime
    canary: str | None = None  # None: none yet, or it failed and the next host is one
    canary_verified: bool = False
    # The canary's lease was reclaimed before its outcome arrived: a cut-off agent finishes
    # verifying and reports later, so its change may still be on trial. Others wait for
    # that outcome, as for a wave, up to ``wave_timeout_windows`` verify windows.
    canary_lost_at: datetime | None = None
    wave: int = 0  # 0 while the canary is out; then 1, 2, ...
    wave_size: int = 0
    wave_started_at: datetime | None = None
    wave_hosts: tuple[str, ...] = ()
    wave_verified: tuple[str, ...] = ()
    ended_at: datetime | None = None
    end_reason: str | None = None  # "quiet" (no host has the incident) or "breaker"


class FleetState(_Frozen):
    """What the control plane knows when a host asks, read in the granting transaction."""

    paused: bool = False  # the fleet-wide kill switch
    remedy_paused: bool = False
    host_paused: bool = False
    reporting_hosts: int = Field(default=0, ge=0)  # heartbeat within reporting_seconds
    affected_hosts: int = Field(default=0, ge=0)  # hosts with the fingerprint open now
    recent_hosts: int = Field(default=0, ge=0)  # hosts whose incident opened in the window
    first_seen: datetime | None = None  # the fingerprint's first report (open incidents)
    systemic_open: bool = False  # a systemic fleet incident is open for the fingerprint
    in_flight: tuple[InFlight, ...] = ()  # other hosts with a live lease of the remedy
    failed_hosts: frozenset[str] = frozenset()  # failed verifications in the breaker window
    # hosts whose lease was reclaimed with no outcome yet, in the breaker window: a
    # partitioned agent finishes verifying and reports later, so its change may be in place
    # and may be failing; the breaker counts it until the outcome arrives
    unsettled_hosts: frozenset[str] = frozenset()
    breaker_open: bool = False  # tripped, and not resumed since
    rollout: Rollout | None = None  # the remedy's rollout, ended or not
    verify_window_seconds: float = Field(default=30.0, gt=0)


class LeaseRequest(_Frozen):
    host_id: str
    labels: dict[str, str] = Field(default_factory=dict)
    remedy: Remedy
    fingerprint: str
    purpose: Purpose = "apply"


Verdict = Literal["grant", "wait"]
Role = Literal["canary", "wave", "rollback"]


class FleetDecision(_Frozen):
    """``grant`` (with the host's role) or ``wait`` (with why and when to ask again)."""

    verdict: Verdict
    rule: str
    detail: str
    reason: WaitReason | None = None
    retry_after: float = 0.0
    role: Role | None = None
    wave: int = 0  # the wave a grant joins (0: the canary)
    new_wave_size: int | None = None  # set when this grant starts a wave
    systemic_fires: bool = False  # the systemic rule holds now and no fleet incident is open
    breaker_trips: bool = False  # failures reached K now and the breaker is still closed

    @property
    def granted(self) -> bool:
        return self.verdict == "grant"


def _wait(reason: WaitReason, rule: str, detail: str, retry: float, *,
          systemic_fires: bool = False, breaker_trips: bool = False) -> FleetDecision:
    return FleetDecision(verdict="wait", rule=rule, detail=detail, reason=reason,
                         retry_after=round(max(retry, 0.5), 3), systemic_fires=systemic_fires,
                         breaker_trips=breaker_trips)


def _grant(role: Role, rule: str, detail: str, *, wave: int = 0,
           new_wave_size: int | None = None) -> FleetDecision:
    return FleetDecision(verdict="grant", rule=rule, detail=detail, role=role, wave=wave,
                         new_wave_size=new_wave_size)


def systemic(state: FleetState, policy: FleetPolicy) -> bool:
    """Whether the systemic rule holds: at least ``systemic_percent`` of the reporting hosts,
    and at least ``systemic_min_hosts``, reported the fingerprint within the window."""
    share = state.recent_hosts * 100.0 >= policy.systemic_percent * state.reporting_hosts
    return (state.reporting_hosts > 0 and share
            and state.recent_hosts >= policy.systemic_min_hosts)


def in_flight_cap(reporting_hosts: int, policy: FleetPolicy) -> int:
    """How many hosts may apply or verify one remedy at once (at least one)."""
    share = math.floor(policy.in_flight_percent * reporting_hosts / 100.0)
    return max(1, min(policy.in_flight_max, share))


def wave_size(affected_hosts: int, policy: FleetPolicy) -> int:
    """ceil(wave_percent) of the hosts affected, at least one."""
    return max(1, math.ceil(policy.wave_percent * affected_hosts / 100.0))


def decide(state: FleetState, request: LeaseRequest, policy: FleetPolicy,
           now: datetime) -> FleetDecision:
    """May ``request.host_id`` start ``request.remedy`` now? Pure and total."""
    if request.purpose == "rollback":
        return _grant("rollback", "F-rollback", "a rollback is never held back")
    if state.paused or state.remedy_paused or state.host_paused:
        what = "the fleet" if state.paused else "this remedy" if state.remedy_paused \
            else "this host"
        return _wait("paused", "F-paused", f"automation is paused for {what}", RETRY_SOON)
    failures = len(state.failed_hosts)
    if state.breaker_open or failures >= policy.breaker_failures:
        return _wait("breaker", "F-breaker",
                     f"the breaker is open: {failures} failed verification(s) in the window; "
                     f"`healer fleet resume {request.remedy.key}` closes it", RETRY_LATER,
                     breaker_trips=not state.breaker_open)
    if state.systemic_open or systemic(state, policy):
        return _wait("systemic", "F-systemic",
                     f"{state.recent_hosts} of {state.reporting_hosts} reporting hosts have "
                     f"{request.fingerprint}: a fleet incident, not a host's to heal alone",
                     RETRY_LATER, systemic_fires=not state.systemic_open)
    rollout = state.rollout if state.rollout is not None and state.rollout.ended_at is None \
        else None
    if rollout is None:
        held = _hold_left(state, policy, now)
        if held > 0:
            return hold_wait(held, policy)
    elif not rollout.canary_verified and rollout.canary not in (None, request.host_id) \
            and not canary_given_up(rollout, state.verify_window_seconds, policy, now):
        lost = " (its lease was reclaimed; waiting for its outcome)" \
            if rollout.canary_lost_at is not None else ""
        return _wait("canary", "F-canary", f"waiting for the canary {rollout.canary} to "
                     f"verify{lost}",
                     _room_retry(rollout.canary_lost_at, state, policy, now))
    in_flight = len(state.in_flight)
    unsettled = len(state.unsettled_hosts - state.failed_hosts)
    if failures + in_flight + unsettled >= policy.breaker_failures:
        return _wait("breaker", "F-breaker", f"{failures} failed + {in_flight} in flight + "
                     f"{unsettled} reclaimed without an outcome reach the breaker's "
                     f"{policy.breaker_failures}", RETRY_ROOM)
    capped = _capped(state, request, policy)
    if capped is not None:
        return capped
    return _stage(state, request, rollout, policy, now)


def hold_wait(left: float, policy: FleetPolicy) -> FleetDecision:
    """Wait out the systemic hold: ``left`` seconds of it still to run."""
    return _wait("hold", HOLD_RULE, f"the fingerprint was first reported "
                 f"{policy.systemic_hold_seconds - left:.0f} s ago; rollouts start after "
                 f"{policy.systemic_hold_seconds:g} s", left)


def _hold_left(state: FleetState, policy: FleetPolicy, now: datetime) -> float:
    """Seconds of the systemic hold still to run; all of it when nobody reported yet."""
    if state.first_seen is None:
        return policy.systemic_hold_seconds
    return policy.systemic_hold_seconds - (now - state.first_seen).total_seconds()


def _capped(state: FleetState, request: LeaseRequest,
            policy: FleetPolicy) -> FleetDecision | None:
    cap = in_flight_cap(state.reporting_hosts, policy)
    if len(state.in_flight) >= cap:
        return _wait("in_flight", "F-in-flight",
                     f"{len(state.in_flight)} host(s) in flight, the cap is {cap}", RETRY_ROOM)
    for label, most in sorted(policy.in_flight_per_label.items()):
        mine = request.labels.get(label, "")  # unlabelled hosts share one domain
        sharing = sum(1 for h in state.in_flight if h.labels.get(label, "") == mine)
        if sharing >= most:
            return _wait("in_flight", "F-in-flight",
                         f"{sharing} host(s) with {label}={mine!r} in flight, the cap is "
                         f"{most}", RETRY_ROOM)
    return None


def _stage(state: FleetState, request: LeaseRequest, rollout: Rollout | None,
           policy: FleetPolicy, now: datetime) -> FleetDecision:
    """The canary, then waves."""
    host = request.host_id
    if rollout is None or (rollout.canary is None and not rollout.canary_verified):
        return _grant("canary", "F-canary", "the first host to apply: the canary")
    if not rollout.canary_verified:  # ``decide`` answered every other host already
        if rollout.canary == host:
            return _grant("canary", "F-canary", "the canary, asking again")
        return _grant("canary", "F-canary", f"the canary {rollout.canary} was lost with no "
                      "outcome for its wave timeout: this host is the canary now")
    if host in rollout.wave_hosts:
        return _grant("wave", "F-wave", f"a member of wave {rollout.wave}, asking again",
                      wave=rollout.wave)
    if wave_open(rollout, state.verify_window_seconds, policy, now):
        if len(rollout.wave_hosts) < rollout.wave_size:
            return _grant("wave", "F-wave", f"joins wave {rollout.wave} "
                          f"({len(rollout.wave_hosts) + 1} of {rollout.wave_size})",
                          wave=rollout.wave)
        return _wait("wave", "F-wave", f"wave {rollout.wave} has not verified yet",
                     _room_retry(rollout.wave_started_at, state, policy, now))
    size = wave_size(state.affected_hosts, policy)
    return _grant("wave", "F-wave", f"starts wave {rollout.wave + 1} of {size} host(s)",
                  wave=rollout.wave + 1, new_wave_size=size)


def _room_retry(since: datetime | None, state: FleetState, policy: FleetPolicy,
                now: datetime) -> float:
    """When a host waiting for a wave (or a lost canary) asks again by itself: no turn
    comes when the wave times out, so no later than that."""
    if since is None:
        return RETRY_ROOM
    left = wave_timeout(state.verify_window_seconds, policy) - (now - since).total_seconds()
    return min(RETRY_ROOM, left)


def wave_timeout(verify_window_seconds: float, policy: FleetPolicy) -> float:
    """Seconds a wave (or a canary lost without an outcome) is waited for."""
    return policy.wave_timeout_windows * verify_window_seconds


def canary_given_up(rollout: Rollout, verify_window_seconds: float, policy: FleetPolicy,
                    now: datetime) -> bool:
    """Whether a canary lost without an outcome has been waited for long enough: as long
    as a wave would be."""
    if rollout.canary_lost_at is None:
        return False
    return (now - rollout.canary_lost_at).total_seconds() >= wave_timeout(
        verify_window_seconds, policy)


def wave_open(rollout: Rollout, verify_window_seconds: float, policy: FleetPolicy,
              now: datetime) -> bool:
    """Whether the current wave still takes or waits for hosts: not every member verified,
    or it is not full, and it has not timed out."""
    if rollout.wave == 0 or rollout.wave_started_at is None:
        return False
    full = len(rollout.wave_hosts) >= rollout.wave_size
    if full and set(rollout.wave_hosts) <= set(rollout.wave_verified):
        return False
    return (now - rollout.wave_started_at).total_seconds() < wave_timeout(
        verify_window_seconds, policy)


def granted(rollout: Rollout | None, decision: FleetDecision, request: LeaseRequest,
            now: datetime) -> Rollout | None:
    """The rollout after ``decision`` granted ``request`` (a rollback changes nothing)."""
    host = request.host_id
    if decision.role == "canary":
        if rollout is None or rollout.ended_at is not None:
            return Rollout(remedy=request.remedy, fingerprint=request.fingerprint,
                           started_at=now, canary=host)
        return rollout.model_copy(update={"canary": host, "canary_lost_at": None})
    if decision.role != "wave" or rollout is None:
        return rollout
    if decision.new_wave_size is not None:
        return rollout.model_copy(update={
            "wave": decision.wave, "wave_size": decision.new_wave_size,
            "wave_started_at": now, "wave_hosts": (host,), "wave_verified": ()})
    if host in rollout.wave_hosts:
        return rollout
    return rollout.model_copy(update={"wave_hosts": (*rollout.wave_hosts, host)})


def released(rollout: Rollout, host: str, outcome: Outcome) -> Rollout:
    """The rollout after ``host`` released its lease with ``outcome``."""
    if host == rollout.canary and not rollout.canary_verified:
        if outcome == "verified":
            return rollout.model_copy(update={"canary_verified": True, "canary_lost_at": None})
        # the next host is the canary
        return rollout.model_copy(update={"canary": None, "canary_lost_at": None})
    if outcome == "verified" and host in rollout.wave_hosts \
            and host not in rollout.wave_verified:
        return rollout.model_copy(update={"wave_verified": (*rollout.wave_verified, host)})
    return rollout


def lost(rollout: Rollout, host: str, now: datetime) -> Rollout:
    """The rollout after ``host``'s lease was reclaimed with no outcome. A lost canary keeps
    its role until its outcome arrives (``released``) or its wave timeout passes; a wave
    member stays unverified, and the wave times out as usual."""
    if host == rollout.canary and not rollout.canary_verified \
            and rollout.canary_lost_at is None:
        return rollout.model_copy(update={"canary_lost_at": now})
    return rollout


def ended(rollout: Rollout, reason: str, now: datetime) -> Rollout:
    """The rollout, ended (the breaker tripped, or its incident went quiet)."""
    return rollout.model_copy(update={"ended_at": now, "end_reason": reason})
