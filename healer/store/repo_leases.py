"""Leases: which host may apply which remedy now, decided by guardrails.fleet.decide over
the fleet's state as PostgreSQL holds it.

A request is first decided on an unlocked read: a ``wait`` is answered from it and takes
no lock. A likely ``grant`` is decided again under ``pg_advisory_xact_lock`` on the
remedy, in the transaction that inserts the lease and moves the rollout, so two replicas
granting the same remedy at once see each other's leases and the caps hold. That lock is
only tried: when a wave opens, every waiting host's unlocked read says grant at once, and
queueing them on the lock made the last wait for all the others' transactions (a second
and more at a few hundred hosts) to be told, mostly, to wait. A host that finds it taken
is told ``busy`` at once and asks again shortly; a rollback still queues for it. A lease is
renewed with one conditional UPDATE; an expired one is reclaimed with
``SELECT ... FOR UPDATE SKIP LOCKED`` (a lease being renewed right now is skipped, not
waited for). Lock order is always the remedy's advisory lock, then lease rows.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from guardrails.fleet import (
    FAILED,
    FLEET_WIDE_WAITS,
    FleetDecision,
    FleetState,
    InFlight,
    LeaseRequest,
    Outcome,
    Remedy,
    Rollout,
    decide,
    ended,
    granted,
    lost,
    released,
)
from guardrails.policy import FleetPolicy
from healer.store.errors import NotFound
from healer.store.fleet_types import LeaseAnswer, LeaseAsk, LeaseGrant, LeaseRow, Release
from healer.store.repo_base import RepoBase, _insert, add_row, get_row, update_row
from healer.store.repo_events import advisory_key, emit, try_xact_lock, xact_lock
from healer.store.repo_hosts import FLEET_WIDE_PAUSED, bounded
from healer.store.tables import (
    AuditTable,
    BreakerTable,
    EventTable,
    FleetIncidentTable,
    FleetPauseTable,
    HostTable,
    IncidentTable,
    LeaseTable,
    RolloutTable,
)

LIVE, RELEASED, RECLAIMED = "live", "released", "reclaimed"
RECLAIM_BATCH = 100
TURN_AGAIN_SECONDS = 2.0  # a host told it is its turn is not told again sooner

# -- the fleet state decide reads, built once ---------------------------------------------
# A waiting host asks again every few seconds: building these per request cost more of a
# replica's interpreter than running them. Parameters: ``remedy``, ``host`` (the asking
# host), ``fingerprint``, and the window bounds ``reporting_since``, ``systemic_since`` and
# ``breaker_since`` (LeasesRepo._window).
_REMEDY: sa.BindParameter[str] = sa.bindparam("remedy")
_FP = IncidentTable.c.fleet_fingerprint == sa.bindparam("fingerprint")
_OPEN = IncidentTable.c.status == "open"
# (reporting hosts, hosts with the fingerprint open, hosts that opened it within the
# systemic window, its first report among open incidents)
COUNTS = (
    sa.select(sa.func.count()).select_from(HostTable)
    .where(HostTable.c.last_heartbeat_at >= sa.bindparam("reporting_since")).scalar_subquery(),
    sa.select(sa.func.count(sa.distinct(IncidentTable.c.host_id))).where(_FP, _OPEN)
    .scalar_subquery(),
    sa.select(sa.func.count(sa.distinct(IncidentTable.c.host_id)))
    .where(_FP, IncidentTable.c.first_seen >= sa.bindparam("systemic_since")).scalar_subquery(),
    sa.select(sa.func.min(IncidentTable.c.first_seen)).where(_FP, _OPEN).scalar_subquery())
FLEET_COUNTS = sa.select(*COUNTS)
_RESET = sa.select(BreakerTable.c.reset_at).where(BreakerTable.c.remedy == _REMEDY) \
    .scalar_subquery()
_BREAKER_SINCE: sa.BindParameter[datetime] = sa.bindparam("breaker_since")
# Leases of the remedy whose verification failed in the breaker window, since the breaker
# was last reset (a resume forgives what came before).
FAILED_LEASE = sa.and_(
    LeaseTable.c.remedy == _REMEDY, LeaseTable.c.outcome.in_(sorted(FAILED)),
    LeaseTable.c.released_at >= _BREAKER_SINCE,
    sa.or_(_RESET.is_(None), _RESET < _BREAKER_SINCE, LeaseTable.c.released_at > _RESET))
# Leases of the remedy held by hosts other than ``host``, reclaimed in the breaker window,
# whose outcome has not arrived.
UNSETTLED_LEASE = sa.and_(
    LeaseTable.c.remedy == _REMEDY, LeaseTable.c.state == RECLAIMED,
    LeaseTable.c.outcome.is_(None), LeaseTable.c.role != "rollback",
    LeaseTable.c.expires_at >= _BREAKER_SINCE, LeaseTable.c.host_id != sa.bindparam("host"))
FAILED_HOSTS = sa.select(LeaseTable.c.host_id).distinct().where(FAILED_LEASE)
UNSETTLED_HOSTS = sa.select(LeaseTable.c.host_id).distinct().where(UNSETTLED_LEASE)
FLEET_LISTS = sa.union_all(
    sa.select(sa.literal("flying"), LeaseTable.c.host_id, HostTable.c.labels)
    .outerjoin(HostTable, HostTable.c.host_id == LeaseTable.c.host_id)
    .where(LeaseTable.c.remedy == _REMEDY, LeaseTable.c.state == LIVE,
           LeaseTable.c.role != "rollback", LeaseTable.c.host_id != sa.bindparam("host")),
    sa.select(sa.literal("failed"), LeaseTable.c.host_id, sa.null()).where(FAILED_LEASE),
    sa.select(sa.literal("unsettled"), LeaseTable.c.host_id, sa.null()).where(UNSETTLED_LEASE))
# The hosts a fleet-wide wait is not the answer of, so it is shared with the others only
# (web.fleet.Holds): each holding a live lease of the remedy (of any role) would be handed
# its lease back, and each paused host is told its pause.
ASK_THEMSELVES = sa.union(
    sa.select(LeaseTable.c.host_id).where(LeaseTable.c.remedy == _REMEDY,
                                          LeaseTable.c.state == LIVE),
    sa.select(HostTable.c.host_id).where(HostTable.c.paused.is_(True)))
FLEET_SCALARS = sa.select(
    FLEET_WIDE_PAUSED,
    sa.exists().where(FleetPauseTable.c.target == _REMEDY),
    sa.select(HostTable.c.paused).where(HostTable.c.host_id == sa.bindparam("host"))
    .scalar_subquery(),
    *COUNTS,
    sa.exists().where(BreakerTable.c.remedy == _REMEDY, BreakerTable.c.tripped_at.is_not(None)),
    sa.exists().where(FleetIncidentTable.c.open_key == sa.bindparam("fingerprint")),
    sa.select(RolloutTable.c.state).where(RolloutTable.c.live_key == _REMEDY).scalar_subquery())


class LeaseLost(NotFound):
    """A renewal of a lease that expired, was reclaimed or released (409)."""

    def __init__(self, lease_id: int) -> None:
        super().__init__("live lease", lease_id)


# The answer to a host that finds its remedy's grant lock taken: ask again shortly.
BUSY = FleetDecision(verdict="wait", rule="F-busy", reason="busy", retry_after=0.5,
                     detail="another grant of this remedy is being decided; ask again")


def remedy_lock(remedy: str) -> int:
    """The advisory lock key that serialises grants and releases of one remedy."""
    return advisory_key(f"healer-remedy:{remedy}")


def _lease(r: sa.Row[Any]) -> LeaseRow:
    return LeaseRow(id=r.id, remedy=r.remedy, host_id=r.host_id, action_id=r.action_id,
                    epoch=r.epoch, role=r.role, wave=r.wave, state=r.state, outcome=r.outcome,
                    granted_at=r.granted_at, expires_at=r.expires_at, released_at=r.released_at)


def _grant(r: sa.Row[Any]) -> LeaseGrant:
    return LeaseGrant(lease_id=r.id, epoch=r.epoch, ttl_seconds=r.ttl_seconds, rule=r.rule)


def _again(r: sa.Row[Any]) -> LeaseAnswer:
    decision = FleetDecision(verdict="grant", rule=r.rule, role=r.role,
                             wave=r.wave, detail="the live lease this host already holds")
    return LeaseAnswer(decision=decision, grant=_grant(r))


def live_rollout(s: sa.Connection, remedy: str) -> tuple[sa.Row[Any] | None, Rollout | None]:
    """The remedy's running rollout: its row and its state."""
    row = s.execute(sa.select(RolloutTable).where(RolloutTable.c.live_key == remedy)).first()
    return row, None if row is None else Rollout.model_validate(row.state)


def save_rollout(s: sa.Connection, row: sa.Row[Any] | None, rollout: Rollout | None,
                 now: datetime) -> None:
    """Store ``rollout`` (a new row when it is new); an ended one frees the remedy."""
    if rollout is None:
        return
    values = {"state": rollout.model_dump(mode="json"), "updated_at": now,
              "ended_at": rollout.ended_at,
              "live_key": rollout.remedy.key if rollout.ended_at is None else None}
    if row is None:
        s.execute(sa.insert(RolloutTable).values(
            remedy=rollout.remedy.key, fingerprint=bounded(rollout.fingerprint),
            started_at=rollout.started_at, **values))
    else:
        update_row(s, RolloutTable, row.id, **values)


class LeasesRepo(RepoBase):
    """Grants, renewals, releases and reclaims of remedy leases."""

    def lease(self, ask: LeaseAsk, policy: FleetPolicy, verify_window: float) -> LeaseAnswer:
        """Decide ``ask`` (not a renewal): a grant with its lease, or a wait."""
        req = LeaseRequest(host_id=ask.host_id, remedy=ask.remedy,
                           fingerprint=bounded(ask.incident_fingerprint), purpose=ask.purpose)
        with self._tx(write=False) as s:
            held = self._held(s, ask)
            if held is not None:
                return _again(held)
            first = self._decide(s, req, policy, verify_window)
            themselves = (frozenset(s.scalars(ASK_THEMSELVES, {"remedy": ask.remedy.key}))
                          if first.reason in FLEET_WIDE_WAITS else None)
        if not first.granted:
            self._record_wait(first, req, policy)
            return LeaseAnswer(decision=first, ask_themselves=themselves)
        with self._tx() as s:
            key = remedy_lock(ask.remedy.key)
            if ask.purpose == "rollback":
                xact_lock(s, key)  # a rollback never waits on the fleet: it queues for it
            elif not try_xact_lock(s, key):
                return LeaseAnswer(decision=BUSY)
            held = self._held(s, ask)
            if held is not None:
                return _again(held)
            decision = self._decide(s, req, policy, verify_window)
            if not decision.granted:
                return LeaseAnswer(decision=decision)
            return LeaseAnswer(decision=decision,
                               grant=_grant(self._insert(s, ask, req, decision, policy)))

    def _held(self, s: sa.Connection, ask: LeaseAsk) -> sa.Row[Any] | None:
        return s.execute(sa.select(LeaseTable).where(
            LeaseTable.c.live_key == f"{ask.remedy.key}|{ask.host_id}")).first()

    def _decide(self, s: sa.Connection, req: LeaseRequest, policy: FleetPolicy,
                verify_window: float) -> FleetDecision:
        now = self.now()
        return decide(self.fleet_state(s, req, policy, verify_window, now), req, policy, now)

    def _insert(self, s: sa.Connection, ask: LeaseAsk, req: LeaseRequest, decision: FleetDecision,
                policy: FleetPolicy) -> sa.Row[Any]:
        now, remedy = self.now(), ask.remedy.key
        epoch = int(s.scalar(sa.select(sa.func.max(LeaseTable.c.epoch))
                             .where(LeaseTable.c.remedy == remedy)) or 0) + 1
        ttl = policy.lease_ttl_seconds
        row = add_row(s, LeaseTable, remedy=remedy, host_id=ask.host_id,
                      action_id=ask.action_id, fingerprint=req.fingerprint, epoch=epoch,
                      rule=decision.rule, role=decision.role or "wave", wave=decision.wave,
                      state=LIVE, live_key=f"{remedy}|{ask.host_id}", ttl_seconds=ttl,
                      granted_at=now, renewed_at=now, expires_at=now + timedelta(seconds=ttl))
        if decision.role != "rollback":
            rollout_row, rollout = live_rollout(s, remedy)
            save_rollout(s, rollout_row, granted(rollout, decision, req, now), now)
        self._audit(s, ask.host_id, "lease.granted", f"remedy:{remedy}",
                    {"host": ask.host_id, "rule": decision.rule, "role": decision.role,
                     "wave": decision.wave, "epoch": epoch})
        return row

    def _record_wait(self, decision: FleetDecision, req: LeaseRequest,
                     policy: FleetPolicy) -> None:
        """A wait that found the systemic rule or the breaker newly true opens the fleet
        incident or trips the breaker (idempotent: replicas may race to do it)."""
        if decision.systemic_fires:
            with self._tx() as s:
                open_systemic(s, req.fingerprint, self.fleet_counts(s, req.fingerprint, policy),
                              self.now(), self.host_id)
        if decision.breaker_trips:
            with self._tx() as s:
                xact_lock(s, remedy_lock(req.remedy.key))
                trip(s, req.remedy, self.failed_hosts(s, req.remedy.key, policy), self.now(),
                     self.host_id)

    # -- the state decide reads -----------------------------------------------------------
    def _window(self, policy: FleetPolicy, **params: Any) -> dict[str, Any]:
        """``params`` and the window bounds the fleet reads take, as of now."""
        now = self.now()
        return params | {
            "reporting_since": now - timedelta(seconds=policy.reporting_seconds),
            "systemic_since": now - timedelta(seconds=policy.systemic_window_seconds),
            "breaker_since": now - timedelta(seconds=policy.breaker_window_seconds)}

    def fleet_counts(self, s: sa.Connection, fingerprint: str,
                     policy: FleetPolicy) -> tuple[int, int, int, datetime | None]:
        """The four ``COUNTS``: one round trip."""
        reporting, affected, recent, first = tuple(
            s.execute(FLEET_COUNTS, self._window(policy, fingerprint=fingerprint)).one())
        return int(reporting or 0), int(affected or 0), int(recent or 0), first

    def failed_hosts(self, s: sa.Connection, remedy: str, policy: FleetPolicy) -> frozenset[str]:
        """Distinct hosts whose verification of ``remedy`` failed (``FAILED_LEASE``)."""
        return frozenset(s.scalars(FAILED_HOSTS, self._window(policy, remedy=remedy)))

    def unsettled_hosts(self, s: sa.Connection, remedy: str, policy: FleetPolicy,
                        exclude: str) -> frozenset[str]:
        """Distinct hosts with a lease reclaimed and no outcome yet (``UNSETTLED_LEASE``)."""
        return frozenset(s.scalars(UNSETTLED_HOSTS,
                                   self._window(policy, remedy=remedy, host=exclude)))

    def fleet_state(self, s: sa.Connection, req: LeaseRequest, policy: FleetPolicy,
                    verify_window: float, now: datetime) -> FleetState:
        """Everything ``decide`` needs about ``req``, read in ``s`` in two round trips (a
        waiting host asks again every few seconds: this is the control plane's hottest
        read): the three host lists in one statement, then the scalars in another. In that
        order: under READ COMMITTED each statement sees its own snapshot, and a grant commits
        its lease and its rollout together, so a lease seen flying comes with its rollout."""
        params = self._window(policy, remedy=req.remedy.key, host=req.host_id,
                              fingerprint=req.fingerprint)
        flying: list[InFlight] = []
        failed: set[str] = set()
        unsettled: set[str] = set()
        for kind, host_id, labels in s.execute(FLEET_LISTS, params):
            if kind == "flying":
                flying.append(InFlight(host_id=host_id, labels={
                    str(k): str(v) for k, v in (labels or {}).items()}))
            else:
                (failed if kind == "failed" else unsettled).add(host_id)
        (fleet_paused, remedy_paused, host_paused, reporting, affected, recent, first,
         breaker_open, systemic_open, rollout) = s.execute(FLEET_SCALARS, params).one()
        return FleetState(
            paused=bool(fleet_paused), remedy_paused=bool(remedy_paused),
            host_paused=bool(host_paused), reporting_hosts=int(reporting or 0),
            affected_hosts=int(affected or 0), recent_hosts=int(recent or 0), first_seen=first,
            systemic_open=bool(systemic_open), in_flight=tuple(flying),
            failed_hosts=frozenset(failed), unsettled_hosts=frozenset(unsettled),
            breaker_open=bool(breaker_open),
            rollout=None if rollout is None else Rollout.model_validate(rollout),
            verify_window_seconds=verify_window)

    # -- renew, release, reclaim ----------------------------------------------------------
    def renew(self, host_id: str, lease_id: int, epoch: int) -> LeaseAnswer:
        """Extend a live lease by its TTL; LeaseLost when it is gone or has expired."""
        now = self.now()
        with self._tx() as s:
            row = s.execute(sa.select(LeaseTable).where(
                LeaseTable.c.id == lease_id, LeaseTable.c.host_id == host_id,
                LeaseTable.c.epoch == epoch, LeaseTable.c.state == LIVE,
                LeaseTable.c.expires_at > now).with_for_update()).first()
            if row is None:
                raise LeaseLost(lease_id)
            update_row(s, LeaseTable, row.id, renewed_at=now,
                       expires_at=now + timedelta(seconds=row.ttl_seconds))
            return _again(row)

    def release(self, body: Release, policy: FleetPolicy) -> None:
        """Record how a lease ended; a failure counts toward the remedy's breaker, which
        trips at K. Idempotent; a release after a reclaim still records the outcome."""
        with self._tx(write=False) as s:
            remedy = s.scalar(sa.select(LeaseTable.c.remedy).where(
                LeaseTable.c.id == body.lease_id, LeaseTable.c.host_id == body.host_id,
                LeaseTable.c.epoch == body.epoch))
        if remedy is None:
            raise NotFound("lease", body.lease_id)
        now = self.now()
        with self._tx() as s:
            xact_lock(s, remedy_lock(remedy))
            row = s.execute(sa.select(LeaseTable).where(LeaseTable.c.id == body.lease_id)
                            .with_for_update()).one()
            if row.outcome is not None:
                return  # a replay
            was_live = row.state == LIVE
            # Written before the breaker counts failures below, which must see this one.
            row = update_row(s, LeaseTable, row.id, outcome=body.outcome, released_at=now,
                             live_key=None, state=RELEASED if was_live else row.state)
            self._audit(s, body.host_id, "lease.released", f"remedy:{remedy}",
                        {"host": body.host_id, "outcome": body.outcome, "lease": row.id})
            if row.role == "rollback":
                return
            # After a reclaim too: a lost canary's late outcome is what its rollout waits for.
            self._moved(s, remedy, row, body.outcome, policy, now)
            if body.outcome in FAILED:
                failed = self.failed_hosts(s, remedy, policy)
                if len(failed) >= policy.breaker_failures:
                    trip(s, Remedy.parse(remedy), failed, now, self.host_id)

    def _moved(self, s: sa.Connection, remedy: str, lease: sa.Row[Any], outcome: Outcome | None,
               policy: FleetPolicy, now: datetime) -> None:
        """The remedy's rollout after ``lease`` ended: with ``outcome``, or reclaimed with
        none yet (None). A lease from an earlier rollout of the remedy changes nothing."""
        rollout_row, rollout = live_rollout(s, remedy)
        if rollout is None or lease.granted_at < rollout.started_at:
            return
        moved = lost(rollout, lease.host_id, now) if outcome is None \
            else released(rollout, lease.host_id, outcome)
        save_rollout(s, rollout_row, moved, now)
        if moved.ended_at is None:
            self._wake_waiters(s, moved, policy, now)

    def _wake_waiters(self, s: sa.Connection, rollout: Rollout, policy: FleetPolicy,
                      now: datetime) -> None:
        """A lease ended: there may be room. Tell the reporting hosts with the rollout's
        fingerprint open that have had no lease in it that it is their turn to ask, as many
        as could be in flight at once: those never told first, then those told longest
        ago, the longest affected first; none told in the last TURN_AGAIN_SECONDS. So
        waiting hosts need not ask every second or two, and a host that no longer asks
        (its own guard said no) does not keep the others from their turn. One that misses
        its turn (a lost NOTIFY, a restarted replica) asks again by itself (RETRY_ROOM)."""
        host = IncidentTable.c.host_id
        taken = sa.select(LeaseTable.c.host_id).where(
            LeaseTable.c.remedy == rollout.remedy.key,
            LeaseTable.c.granted_at >= rollout.started_at)
        reporting = sa.select(HostTable.c.host_id).where(
            HostTable.c.last_heartbeat_at >= now - timedelta(seconds=policy.reporting_seconds))
        told = (sa.select(sa.func.max(EventTable.c.created_at))
                .where(EventTable.c.host_id == host, EventTable.c.type == "turn",
                       EventTable.c.created_at >= rollout.started_at)
                .scalar_subquery())
        again = now - timedelta(seconds=TURN_AGAIN_SECONDS)
        hosts = s.scalars(
            sa.select(host)
            .where(IncidentTable.c.fleet_fingerprint == rollout.fingerprint,
                   IncidentTable.c.status == "open", host.in_(reporting), host.not_in(taken),
                   sa.or_(told.is_(None), told < again))
            .group_by(host)
            .order_by(told.is_not(None), told, sa.func.min(IncidentTable.c.first_seen), host)
            .limit(turns(policy))).all()
        event = {"type": "turn", "remedy": rollout.remedy.model_dump()}
        for woken in hosts:
            emit(s, "turn", event, woken, now)

    def reclaim_expired(self, policy: FleetPolicy) -> list[LeaseRow]:
        """Reclaim leases whose holder stopped renewing (a dead or cut-off agent). Its
        change may still be on trial (a cut-off agent finishes verifying and reports later):
        a lost canary is replaced only when its outcome says so or its wave timeout passed."""
        now = self.now()
        with self._tx(write=False) as s:
            due = s.execute(sa.select(LeaseTable.c.id, LeaseTable.c.remedy).where(
                LeaseTable.c.state == LIVE, LeaseTable.c.expires_at <= now)
                .order_by(LeaseTable.c.expires_at).limit(RECLAIM_BATCH)).all()
        done: list[LeaseRow] = []
        for lease_id, remedy in due:
            with self._tx() as s:
                xact_lock(s, remedy_lock(remedy))
                row = s.execute(sa.select(LeaseTable).where(
                    LeaseTable.c.id == lease_id, LeaseTable.c.state == LIVE,
                    LeaseTable.c.expires_at <= now).with_for_update(skip_locked=True)).first()
                if row is None:
                    continue  # renewed, released or reclaimed by another replica meanwhile
                row = update_row(s, LeaseTable, row.id, state=RECLAIMED, live_key=None)
                if row.role != "rollback":
                    self._moved(s, remedy, row, None, policy, now)
                self._audit(s, "healer", "lease.reclaimed", f"remedy:{remedy}",
                            {"host": row.host_id, "lease": row.id,
                             "late_seconds": (now - row.expires_at).total_seconds()})
                done.append(_lease(row))
        return done

    def live_leases(self) -> list[LeaseRow]:
        """Every live lease, oldest first (the fleet view)."""
        q = sa.select(LeaseTable).where(LeaseTable.c.state == LIVE).order_by(LeaseTable.c.id)
        with self._tx(write=False) as s:
            return [_lease(r) for r in s.execute(q)]


def turns(policy: FleetPolicy) -> int:
    """How many waiting hosts a lease's end wakes: as many as could be in flight at once
    (the in-flight cap, and the breaker's K counts the hosts in flight)."""
    return max(1, min(policy.in_flight_max, policy.breaker_failures))


def trip(s: sa.Connection, remedy: Remedy, failed: frozenset[str], now: datetime,
         audit_host: str) -> bool:
    """Open ``remedy``'s breaker (under its lock), end its rollout and tell every agent;
    False when it was open already."""
    row = get_row(s, BreakerTable, remedy.key)
    if row is not None and row.tripped_at is not None:
        return False
    values = {"tripped_at": now, "failures": len(failed), "paged_at": None}
    if row is None:
        s.execute(sa.insert(BreakerTable).values(remedy=remedy.key, **values))
    else:
        update_row(s, BreakerTable, remedy.key, **values)
    rollout_row, rollout = live_rollout(s, remedy.key)
    if rollout is not None:
        save_rollout(s, rollout_row, ended(rollout, "breaker", now), now)
    emit(s, "breaker", {"type": "breaker", "remedy": remedy.model_dump(), "open": True}, None,
         now)
    s.execute(sa.insert(AuditTable).values(
        host_id=audit_host, at=now, actor="healer", event="fleet.breaker_tripped",
        subject=f"remedy:{remedy.key}", detail={"failed_hosts": sorted(failed)}))
    return True


def open_systemic(s: sa.Connection, fingerprint: str, counts: tuple[int, int, int, datetime | None],
                  now: datetime, audit_host: str) -> bool:
    """Open the one systemic fleet incident of ``fingerprint``; False when one is open
    (replicas may race to open it: the unique ``open_key`` lets one win)."""
    reporting, _, recent, _ = counts
    stmt = _insert(s.dialect.name, FleetIncidentTable).on_conflict_do_nothing(
        index_elements=["open_key"])
    inserted = s.execute(stmt.returning(FleetIncidentTable.c.id), {
        "kind": "systemic", "fingerprint": fingerprint, "status": "open",
        "open_key": fingerprint, "hosts": recent, "reporting": reporting, "opened_at": now,
        "resolved_at": None, "resolved_by": None, "paged_at": None}).first()
    if inserted is not None:
        s.execute(sa.insert(AuditTable).values(
            host_id=audit_host, at=now, actor="healer", event="fleet.systemic_opened",
            subject=f"fleet-incident:{inserted[0]}",
            detail={"fingerprint": fingerprint, "hosts": recent, "reporting": reporting}))
    return inserted is not None
