"""One simulated agent, and the worker process that runs many of them.

An agent is what ``healer run --control-plane`` builds, minus the collectors, actuators and
detector: its own SQLite journal, a real ``ChangeEngine`` with the shipped guard policy,
a real ``JournalSeal`` (key dir beside the journal), a real ``FleetLink`` (outbox, lease
client, events long poll, heartbeats over HTTP). Each tick it drains the link, samples its
simulated host into a real ``MetricWindow``, opens the incident a detector would open
when the fault shows (so the journal reports it), proposes the playbook's remedy and steps
the engine. Incidents are driven directly rather than through the detector and pipeline:
500 agents must fit on two cores.

A worker (``python -m healer.sim.agent SPEC``) runs its agents on one tick thread, and
watches the kill switch closely so the time a pause takes to arrive is measured to the
millisecond. It writes what it saw to files in its out dir and stops on SIGTERM. A
worker killed with SIGKILL and started again rebuilds every agent from the same journal
and key, and reconciles it first (``reconcile_on_start``), as ``healer run`` does.
"""

from __future__ import annotations

import json
import logging
import shutil
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect
from sqlalchemy.util import LRUCache

from guardrails import load_policy
from guardrails.actions import SysctlWrite
from guardrails.policy import Policy
from healer import heap
from healer.act.base import ActuatorRegistry
from healer.act.engine import OPEN_STATES, ChangeEngine
from healer.act.persist import DropIn
from healer.act.seal import JournalSeal
from healer.fleet.config import FleetConfig
from healer.fleet.link import FleetLink
from healer.logs import logfmt, setup_logging
from healer.models import (
    ActionState,
    Incident,
    IncidentStatus,
    Proposal,
    Sample,
    VerifySpec,
)
from healer.sim.host import METRIC, Fault, SimActuator, SimHost
from healer.store.engine import migrate, open_engine
from healer.store.repository import Repository
from healer.telemetry import Telemetry
from healer.window import MetricWindow

log = logging.getLogger("healer.sim")

TICK_SECONDS = 0.5  # an agent with a change in flight: verifying needs the samples
IDLE_TICK_SECONDS = 2.0  # the others (waiting, or healthy): the CPU is shared by hundreds
VERIFY_SECONDS = 2.0  # the verify window the issue asks for
REPROPOSE_SECONDS = 5.0  # a fault still on after its change ended is proposed again
# An incident whose change is open is looked at again when a cycle moved one of its
# changes, or after this long (a change moves only in the engine's cycle, which says so).
LOOK_SECONDS = 10.0
WATCH_SECONDS = 0.01  # how often the kill switch is looked at, for the propagation figure
SPEC = VerifySpec(metric=METRIC, direction="to_zero", window_seconds=VERIFY_SECONDS,
                  settle_seconds=0.5, min_samples=3)
JOURNAL = "journal.db"
SEEN = "seen.jsonl"  # what the worker saw: kill-switch changes, per agent
METRICS = "lease_buckets.json"  # the agents' lease-request histograms, summed


class SharedCompiledSQL:
    """One compiled-SQL cache for every agent in a worker (SQLAlchemy's ``compiled_cache``
    execution option).

    Each agent has its own journal, so its own engine, and SQLAlchemy keys compiled SQL by
    the engine's dialect object: 50 agents compiled the same 22 statements 50 times, at
    their first incident, all in the same second. That burst, not the agents' steady work,
    took a worker's core at the faults' onset (57 % of its time at 500 agents), which a
    real agent, alone on its host, pays once. Here the dialect in a key is replaced by what
    makes its SQL: its class, the SQLite version it found and its parameter style, which
    every agent of a worker shares. A key of another shape is kept as it is."""

    def __init__(self, capacity: int = 1000) -> None:
        self._cache: LRUCache[Any, Any] = LRUCache(capacity)

    @staticmethod
    def _key(key: Any) -> Any:
        if isinstance(key, tuple) and key and isinstance(key[0], Dialect):
            d = key[0]
            return (type(d), d.server_version_info, d.paramstyle, *key[1:])
        return key

    def get(self, key: Any, default: Any = None) -> Any:
        return self._cache.get(self._key(key), default)

    def __setitem__(self, key: Any, value: Any) -> None:
        self._cache[self._key(key)] = value

    def __len__(self) -> int:
        return len(self._cache)

    def engine(self, journal: Path) -> sa.Engine:
        """An agent's journal engine, compiling into this cache."""
        return open_engine(f"sqlite:///{journal}", pool_size=1, max_overflow=2) \
            .execution_options(compiled_cache=self)


def template_journal(path: Path) -> Path:
    """A migrated, empty journal, copied for each agent (alembic once, not 500 times)."""
    engine = open_engine(f"sqlite:///{path}")
    migrate(engine)
    engine.dispose()
    return path


@dataclass
class AgentSpec:
    host_id: str
    url: str
    token: str = field(repr=False)
    labels: dict[str, str]
    faults: list[Fault]


class SimAgent:
    """One host's agent: journal, engine, link and simulated host."""

    def __init__(self, spec: AgentSpec, root: Path, template: Path, policy: Policy,
                 compiled: SharedCompiledSQL) -> None:
        root.mkdir(parents=True, exist_ok=True)
        journal = root / JOURNAL
        if not journal.exists():
            shutil.copyfile(template, journal)
        self.spec, self.host = spec, SimHost(spec.host_id, root, spec.faults)
        self.repo = Repository(compiled.engine(journal), spec.host_id)
        self.telemetry = Telemetry()
        self.window = MetricWindow(60.0, TICK_SECONDS)
        self.link = FleetLink(FleetConfig(url=spec.url, host_id=spec.host_id, token=spec.token,
                                          labels=spec.labels), self.repo,
                              telemetry=self.telemetry)
        self.engine = ChangeEngine(self.repo, ActuatorRegistry([SimActuator(self.host)]),
                                   policy, root=True, window=self.window,
                                   dropin=DropIn(root / "90-healer.conf"),
                                   seal=JournalSeal.open(self.repo, root / "key"),
                                   fleet=self.link.leases)
        self._incidents: dict[str, Incident] = {}  # playbook -> this host's open incident
        self._proposed: dict[str, float] = {}
        self._next = 0.0  # when the next cycle is due while no grant is held
        # a change applying or verifying after the last cycle; True at first, since crash
        # recovery may have left one verifying
        self._busy = True
        self._moved: set[int] = set()  # incidents whose changes the last cycle moved
        self._open_seen: dict[int, float] = {}  # incident -> when a look found a change open

    def start(self) -> None:
        """Recover what a kill left behind, then join the fleet (as Daemon.start does)."""
        self.repo.set_fleet_reporting(True)
        self.engine.reconcile_on_start()
        for incident in self.repo.iter_incidents(IncidentStatus.OPEN):
            self._incidents[incident.playbook] = incident
        self.link.start()

    def stop(self) -> None:
        self.link.stop()

    def due(self, now: float) -> bool:
        """Whether this agent's cycle runs now: every tick while it holds a grant, has a
        change in flight (a lease lost under load leaves it verifying) or may ask again (its
        turn came), every IDLE_TICK_SECONDS otherwise."""
        leases = self.link.leases
        if now < self._next and not self._busy and not leases.held() and not leases.ready():
            return False
        self._next = now + IDLE_TICK_SECONDS
        return True

    def tick(self, now: float) -> None:
        self.link.drain()
        self.window.append(Sample(ts=now, metrics={METRIC: self.host.symptom(now)}))
        for fault in self.host.active(now):
            self._handle(fault, now)
        changed = self.engine.step()
        self._moved = {r.incident_id for r in changed if r.incident_id is not None}
        if changed or self._busy:  # nothing else starts or ends a change's trial
            self._busy = self.repo.has_actions((ActionState.APPLYING, ActionState.VERIFYING))

    def _handle(self, fault: Fault, now: float) -> None:
        incident = self._incidents.get(fault.playbook)
        if incident is None:
            if int(self.host.value(fault.key)) >= int(fault.fix) and not fault.bad:
                return  # healed
            when = datetime.fromtimestamp(now, UTC)
            incident = self.repo.open_incident(Incident(
                host_id=self.spec.host_id, playbook=fault.playbook, scope="host",
                first_seen=when, last_seen=when))
            self._incidents[fault.playbook] = incident
        assert incident.id is not None
        seen = self._open_seen.get(incident.id)
        if seen is not None and incident.id not in self._moved and now - seen < LOOK_SECONDS:
            return  # its change is still open: nothing moved it
        # the probe the pipeline makes before it diagnoses again: the last change verified
        # (the incident ends), or one is still open (it waits)
        activity = self.repo.incident_activity(incident.id, OPEN_STATES)
        self._open_seen.pop(incident.id, None)
        if activity.last_state == ActionState.VERIFIED:
            self.repo.update_incident(incident.model_copy(update={
                "status": IncidentStatus.RESOLVED,
                "last_seen": datetime.fromtimestamp(now, UTC)}))
            del self._incidents[fault.playbook]
            return
        if activity.live:
            self._open_seen[incident.id] = now
            return
        if now - self._proposed.get(fault.playbook, float("-inf")) < REPROPOSE_SECONDS:
            return
        self._proposed[fault.playbook] = now
        action = SysctlWrite(scope="host", key=fault.key, value=fault.fix)
        self.engine.propose(incident, Proposal(action=action, provenance="playbook",
                                               in_playbook=True, rationale=fault.scenario),
                            SPEC)


class Watch:
    """The kill switch as each agent sees it, looked at every WATCH_SECONDS."""

    def __init__(self, agents: list[SimAgent], out: Path) -> None:
        self.agents, self.out = agents, out
        self._last = {a.spec.host_id: a.link.state.paused for a in agents}

    def look(self) -> None:
        lines = []
        for agent in self.agents:
            paused = agent.link.state.paused
            if paused != self._last[agent.spec.host_id]:
                self._last[agent.spec.host_id] = paused
                lines.append(json.dumps({"host": agent.spec.host_id, "paused": paused,
                                         "t": time.time()}))
        if lines:
            with self.out.open("a") as fh:
                fh.write("\n".join(lines) + "\n")


def lease_buckets(agents: list[SimAgent]) -> dict[str, float]:
    """The agents' ``healer_fleet_request_seconds{endpoint="lease"}`` buckets, summed."""
    total: dict[str, float] = {}
    for agent in agents:
        for metric in agent.telemetry.agent_registry.collect():
            for s in metric.samples:
                if (s.name == "healer_fleet_request_seconds_bucket"
                        and s.labels.get("endpoint") == "lease"):
                    le = s.labels["le"]
                    total[le] = total.get(le, 0.0) + s.value
    return total


def run_worker(spec_path: Path) -> int:
    """Run the agents ``spec_path`` names until SIGTERM."""
    spec = json.loads(spec_path.read_text())
    out = Path(spec["out"])
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    policy, compiled = load_policy(), SharedCompiledSQL()
    agents = [SimAgent(AgentSpec(a["host_id"], a["url"], a["token"], a["labels"],
                                 [Fault.of(f) for f in a["faults"]]),
                       Path(spec["hosts_dir"]) / a["host_id"], Path(spec["template"]), policy,
                       compiled)
              for a in spec["agents"]]
    for agent in agents:
        agent.start()
    heap.settle()  # as healer run does once started: the agents stay
    t0_file, t0 = Path(spec["t0_file"]), None
    watch = Watch(agents, out / SEEN)
    watcher = threading.Thread(target=_watch, args=(watch, stop), daemon=True)
    watcher.start()
    (out / "ready").write_text(str(time.time()))
    try:
        while not stop.is_set():
            started = time.monotonic()
            if t0 is None and t0_file.exists():  # the run's clock started: faults go on
                t0 = float(t0_file.read_text())
                for agent in agents:
                    agent.host.start_clock(t0)
            for agent in agents:
                if agent.due(time.time()):
                    _guarded(agent, time.time())
            stop.wait(max(0.0, TICK_SECONDS - (time.monotonic() - started)))
    finally:
        (out / METRICS).write_text(json.dumps(lease_buckets(agents)))
        for agent in agents:
            agent.stop()
    return 0


def _guarded(agent: SimAgent, now: float) -> None:
    try:
        agent.tick(now)
    except Exception:  # one agent's failure is logged; the others go on
        log.exception(logfmt(msg="agent cycle failed", host=agent.spec.host_id))


def _watch(watch: Watch, stop: threading.Event) -> None:
    while not stop.wait(WATCH_SECONDS):
        watch.look()



if __name__ == "__main__":
    setup_logging("warning")
    sys.exit(run_worker(Path(sys.argv[1])))
