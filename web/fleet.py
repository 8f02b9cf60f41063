"""What a control plane's app knows beyond a single host's: the fleet policy, the playbook
library (verify windows, alert playbooks), its own version, and the long-poll hub.

``create_app(..., fleet=FleetConfig(...))`` mounts the agent protocol and the alert
webhook; without it the app is a single host's dashboard, as before.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from importlib import metadata
from typing import TypeVar

from anyio import CapacityLimiter, to_thread
from cachetools import TTLCache

from guardrails.fleet import HOLD_RULE, FleetDecision, hold_wait
from guardrails.policy import FleetPolicy
from healer.store.fleet_types import LeaseAnswer
from playbooks.loader import Library
from web.events import EventHub

DEFAULT_VERIFY_WINDOW = 30.0  # playbooks.schema.Verify's default, for a remedy of no playbook
HEARTBEAT_SECONDS = 5.0
# A host token's lookup is kept this long: every agent request carries the token, and the
# lookup was a sixth of a replica's time at 500 agents. A revoked or expired token (or a
# removed host) is refused within this many seconds on every replica.
TOKEN_CACHE_SECONDS = 30.0
TOKEN_CACHE_SIZE = 100_000
Found = tuple[str, str | None] | None  # (role, bound host) of a usable token, or None
T = TypeVar("T")


@dataclass
class TokenCache:
    """Host-token lookups (by token hash), kept ``TOKEN_CACHE_SECONDS``; thread-safe."""

    seconds: float = TOKEN_CACHE_SECONDS
    _cache: TTLCache[str, Found] = field(init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self._cache = TTLCache(maxsize=TOKEN_CACHE_SIZE, ttl=self.seconds)

    def cached(self, token_hash: str) -> tuple[bool, Found]:
        """(True, the lookup) when it is kept; (False, None) when it must be loaded."""
        with self._lock:
            if token_hash in self._cache:
                return True, self._cache[token_hash]
        return False, None

    def lookup(self, token_hash: str, load: Callable[[str], Found]) -> Found:
        kept, found = self.cached(token_hash)
        if kept:
            return found
        found = load(token_hash)  # outside the lock: a database round trip
        if found is not None:  # an unknown token is asked again: it may be one just made
            with self._lock:
                self._cache[token_hash] = found
        return found


class LaneFull(Exception):
    """A lane's queue is full: the request is answered 429 with ``Retry-After``."""


@dataclass
class Lane:
    """One class of agent requests, with threads and a queue of its own (event loop only).

    Heartbeats and reports are many (one host, one heartbeat every 5 s) and may wait or be
    sent back with 429; lease answers are what a host's change waits on; the long polls'
    reads come in bursts when a broadcast wakes them all. Apart, a burst of one never
    queues the others behind it, and fewer threads contend for the interpreter at once.
    """

    name: str
    threads: int
    max_queued: int  # requests running or waiting here; more are answered 429
    _limiter: CapacityLimiter = field(init=False)
    queued: int = 0
    # (lane, "queued" | "running", seconds) of each request, or (lane, "shed", 0.0)
    observe: Callable[[str, str, float], None] = lambda lane, phase, seconds: None

    def __post_init__(self) -> None:
        self._limiter = CapacityLimiter(self.threads)

    async def run(self, call: Callable[[], T]) -> T:
        """``call()`` on one of this lane's threads; LaneFull when the queue is full."""
        if self.queued >= self.max_queued:
            self.observe(self.name, "shed", 0.0)
            raise LaneFull(self.name)
        self.queued += 1
        arrived = time.perf_counter()
        started = arrived

        def timed() -> T:
            nonlocal started
            started = time.perf_counter()
            return call()

        try:
            return await to_thread.run_sync(timed, limiter=self._limiter)
        finally:
            self.queued -= 1
            done = time.perf_counter()
            self.observe(self.name, "queued", started - arrived)
            self.observe(self.name, "running", done - started)


@dataclass
class Lanes:
    """The agent protocol's lanes; their threads stay within the simulation's pool (24).

    Heartbeats are the ones shed: a late one costs nothing. Reports are not queued behind
    them, nor shed as easily: the systemic rule counts hosts by their reports, and reports
    held back by a busy replica let a canary start on a storm it had not seen yet.

    A replica is one interpreter, and a thread past the few that keep the database busy
    only shares it thinner. Heartbeats and reports get one thread each: at a 500-host
    storm's onset, three each made the lease answers' p99 at the agents 0.77 s; one each,
    0.22 s, and the heartbeats and reports themselves waited less (0.9 s against 1.4 s,
    0.9 s against 2.0 s at p99)."""

    bulk: Lane = field(default_factory=lambda: Lane("heartbeats", threads=1, max_queued=256))
    report: Lane = field(default_factory=lambda: Lane("reports", threads=1, max_queued=4096))
    lease: Lane = field(default_factory=lambda: Lane("leases", threads=4, max_queued=1024))
    # a broadcast (a pause, a resume) wakes every long poll at once, each to read
    events: Lane = field(default_factory=lambda: Lane("events", threads=6, max_queued=4096))

    def observed(self, observe: Callable[[str, str, float], None]) -> Lanes:
        """These lanes, each reporting its requests' times to ``observe``."""
        for lane in (self.bulk, self.report, self.lease, self.events):
            lane.observe = observe
        return self


def own_version() -> str:
    """This control plane's version (the installed package's)."""
    return metadata.version("healer")


HOLDS_KEPT = 10_000  # (remedy, fingerprint) pairs in their systemic hold, per replica
HOLD_KEPT_UNTIL = 1.0  # seconds before a hold ends: from then on the database answers


@dataclass
class Holds:
    """Systemic holds this replica has answered, answered again from memory until they end;
    and, for a burst of asks, the one answer the first of them got.

    When a fault hits a fleet, every host that has it asks for the same remedy within a
    few seconds of the others, and each is told to wait out the hold: nothing of that
    remedy starts until ``systemic_hold_seconds`` after the fingerprint's first report.
    That wait is time's alone, so a replica that has read it once answers the rest of the
    burst with it (event loop only: no thread, no database), until a second before it
    ends. A kept wait grants nothing, so it is safe by construction. What it may cost, for
    at most the rest of the hold: a pause, an open breaker or a systemic fleet incident
    reads as the hold (each a wait too; the fleet jobs open the incident and trip the
    breaker every tick), and a rollout of the same remedy started meanwhile under another
    fingerprint is joined when the hold ends. A rollback is never answered from here.

    The burst comes before any answer does, though: every ask that arrives while the
    pair's first is still at the database would queue for the database too. ``ask`` has
    them wait for that first answer instead, on the event loop, once. When it was the hold,
    they are answered from memory. When it was a fleet-wide wait (the systemic rule, the
    breaker: guardrails.fleet.FLEET_WIDE_WAITS), they are answered with it, read at most
    one database round trip before their own would have been, unless the wait is not their
    host's answer: a host holding a live lease of the remedy (the database hands that
    back) or a paused one (told its pause) asks itself. Otherwise each asks the database
    itself."""

    _until: TTLCache[tuple[str, str], datetime] = field(
        default_factory=lambda: TTLCache(maxsize=HOLDS_KEPT, ttl=3600))
    _asking: dict[tuple[str, str], asyncio.Future[LeaseAnswer | None]] = field(
        default_factory=dict)

    async def ask(self, remedy: str, fingerprint: str, host: str, purpose: str,
                  policy: FleetPolicy, clock: Callable[[], datetime],
                  database: Callable[[], Awaitable[LeaseAnswer]]) -> LeaseAnswer:
        """A kept hold's wait, the burst's shared wait, or what ``database()`` answers
        (kept when it is the hold). Only one ask per pair is at the database at a time
        unless the first's answer was neither; a rollback always goes there."""
        held = self.answer(remedy, fingerprint, purpose, policy, clock())
        if held is not None:
            return LeaseAnswer(decision=held)
        if purpose == "rollback":
            return await database()
        key = (remedy, fingerprint)
        first = self._asking.get(key)
        if first is not None:
            shared = await asyncio.shield(first)
            held = self.answer(remedy, fingerprint, purpose, policy, clock())
            if held is not None:
                return LeaseAnswer(decision=held)
            if shared is not None and shared.ask_themselves is not None \
                    and host not in shared.ask_themselves:
                return LeaseAnswer(decision=shared.decision)
            return await self._asked(key, clock, database)
        future = self._asking[key] = asyncio.get_running_loop().create_future()
        answer = None
        try:
            answer = await self._asked(key, clock, database)
            return answer
        finally:
            if self._asking.get(key) is future:
                del self._asking[key]
            future.set_result(answer)

    async def _asked(self, key: tuple[str, str], clock: Callable[[], datetime],
                     database: Callable[[], Awaitable[LeaseAnswer]]) -> LeaseAnswer:
        asked = clock()
        answer = await database()
        self.keep(*key, answer.decision, asked)
        return answer

    def answer(self, remedy: str, fingerprint: str, purpose: str, policy: FleetPolicy,
               now: datetime) -> FleetDecision | None:
        """The hold's wait, as of ``now``, when this replica holds one for the pair."""
        if purpose == "rollback":
            return None
        until = self._until.get((remedy, fingerprint))
        if until is None:
            return None
        left = (until - now).total_seconds()
        if left < HOLD_KEPT_UNTIL:
            self._until.pop((remedy, fingerprint), None)
            return None
        return hold_wait(left, policy)

    def keep(self, remedy: str, fingerprint: str, decision: FleetDecision,
             asked: datetime) -> None:
        """Remember ``decision`` when it is the hold; ``asked``: the time before it was
        made, so the kept hold ends no later than the one the database read."""
        if decision.rule == HOLD_RULE and decision.retry_after > HOLD_KEPT_UNTIL:
            self._until[(remedy, fingerprint)] = asked + timedelta(
                seconds=decision.retry_after)


@dataclass
class FleetConfig:
    policy: FleetPolicy
    library: Library
    hub: EventHub
    version: str
    tokens: TokenCache = field(default_factory=TokenCache)
    lanes: Lanes = field(default_factory=Lanes)
    holds: Holds = field(default_factory=Holds)

    def verify_window(self, playbook: str) -> float:
        """The verify window of ``playbook``'s remedies (waves time out after a multiple)."""
        pb = self.library.get(playbook)
        if pb is None or pb.verify is None:
            return DEFAULT_VERIFY_WINDOW
        return pb.verify.window_seconds


def version_problem(theirs: str | None, ours: str) -> str | None:
    """Why an agent of version ``theirs`` may not talk to this control plane (the same
    major, a minor within one either way); None when it may."""
    if not theirs:
        return "send X-Healer-Agent-Version: MAJOR.MINOR.PATCH"
    try:
        major, minor = (int(p) for p in theirs.split(".")[:2])
        own_major, own_minor = (int(p) for p in ours.split(".")[:2])
    except ValueError:
        return f"X-Healer-Agent-Version {theirs[:40]!r} is not MAJOR.MINOR.PATCH"
    if major != own_major or abs(minor - own_minor) > 1:
        return (f"agent version {theirs[:40]} cannot talk to control plane {ours}: the major "
                "version must match and the minor be within one; upgrade the older side")
    return None
