"""``healer fleet sim``: set the fleet up, play the scenarios, judge them, tear it all down.

    report = simulate(SimConfig(agents=500, scenarios=SCENARIOS))

The run, on a clock that starts once every agent is up (``t0``):

- at once: a fleet-wide pause made in the database (as ``healer fleet pause`` makes it)
  and its resume; each agent's worker notes when its link saw each, to the millisecond;
- then the faults go on, all at the same moment, on disjoint hosts: ``storm`` (one
  incident on a fifth of the hosts: canary, then waves, under the in-flight cap),
  ``bad-fix`` (a fifth, whose fix makes the symptom worse: the breaker must trip),
  ``kill`` (a fifth; once its rollout is under way, the worker holding most of its leases
  is SIGKILLed and started again after 2 x TTL), ``systemic`` (35 % of the hosts at
  once: no automatic action, one fleet incident), and ``webhooks`` (the same
  Alertmanager payload delivered twice to each replica: one incident per host);
- it ends when every scenario has reached its end, or after ``seconds``.

Every figure comes from ground truth where there is one: the simulated actuators' logs
(every write, healer.sim.host), the agents' own journals (transition times), the control
plane's tables, and ``pg_stat_activity``.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from prometheus_client.parser import text_string_to_metric_families

from guardrails.fleet import Remedy, in_flight_cap
from guardrails.policy import FleetPolicy
from healer.errors import HealerError
from healer.models import ActionState
from healer.sim import AGENT_NICE, SCENARIOS, SECONDS
from healer.sim.agent import (
    JOURNAL,
    METRICS,
    SEEN,
    TICK_SECONDS,
    VERIFY_SECONDS,
    template_journal,
)
from healer.sim.host import METRIC, Fault, read_log
from healer.sim.plane import (
    MAX_CONNECTIONS,
    Replica,
    spawn_replica,
    wait_ready,
    write_playbooks,
    write_policy,
)
from healer.store.credentials import hash_token, new_token
from healer.store.engine import migrate, open_engine
from healer.store.pgserver import PgServer, find_bindir
from healer.store.repository import Repository
from healer.store.tables import (
    AuditTable,
    BreakerTable,
    FleetIncidentTable,
    HostTable,
    IncidentTable,
    LeaseTable,
    LlmAnswerTable,
)

MAX_WORKERS = 10
LEASE_TTL = 4.0
# The fleet policy of a short run: 4 s leases, waves of 10 %. The systemic hold is the
# shipped 30 s: it must outlast the spread of detection and delivery, and a shorter one
# let a canary start before the systemic rule had seen enough hosts (5 s at 100 agents;
# 10 s at 500 with every scenario at once on two saturated cores: 1-2 of 175 systemic
# hosts acted).
FLEET: dict[str, Any] = {
    "lease_ttl_seconds": LEASE_TTL, "systemic_hold_seconds": 30, "systemic_percent": 30,
    "systemic_min_hosts": 5, "systemic_window_seconds": 300, "wave_percent": 10,
    "wave_timeout_windows": 2, "in_flight_max": 10, "in_flight_percent": 10,
    "breaker_failures": 3, "reporting_seconds": 30,
}
# Each scenario's share of the hosts (disjoint), its playbook and the sysctl it raises.
SHARES = {"storm": 0.2, "bad-fix": 0.2, "kill": 0.2, "systemic": 0.35}
KEYS = {"storm": "net.core.somaxconn", "bad-fix": "net.ipv4.tcp_max_syn_backlog",
        "kill": "net.core.netdev_max_backlog", "systemic": "kernel.threads-max"}
FIX = "4096"
WEBHOOK_HOSTS = 3
FAULTS_AT = 6.0  # seconds after t0: after the pause went round
READY_TIMEOUT = 120.0
STOP_SECONDS = 30.0
SETTLE_SECONDS = 3.0
SAMPLE_DB_SECONDS = 0.5
PLAYBOOK = "sim-{}"


class SimError(HealerError):
    """The simulation could not run (not a goal that failed)."""


@dataclass(frozen=True)
class SimConfig:
    agents: int
    scenarios: tuple[str, ...] = SCENARIOS
    seconds: float = SECONDS
    database_url: str | None = None
    agent_nice: int = AGENT_NICE  # 0: the agents compete with the control plane as equals


@dataclass
class WorkerProc:
    index: int
    spec: Path
    out: Path
    nice: int = AGENT_NICE
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = (self.out / "worker.log").open("ab")
        self.proc = subprocess.Popen(
            ["nice", "-n", str(self.nice), "setpriv", "--pdeathsig", "SIGKILL",
             sys.executable, "-m", "healer.sim.agent", str(self.spec)], stdout=log, stderr=log)
        log.close()

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid  # nice and setpriv exec: the worker's own

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def terminate(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()

    def wait(self, timeout: float) -> None:
        """Wait for the process to end; SIGKILL it after ``timeout`` seconds."""
        if self.proc is None:
            return
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def stop_workers(workers: list[WorkerProc]) -> None:
    """SIGTERM every worker, then wait for each (they write their figures on the way)."""
    for w in workers:
        w.terminate()
    deadline = time.monotonic() + STOP_SECONDS
    for w in workers:
        w.wait(max(0.1, deadline - time.monotonic()))


@dataclass
class Host:
    host_id: str
    token: str
    url: str
    worker: int
    scenario: str = ""


@dataclass
class Fleet:
    """What a run set up, torn down by ``close`` in reverse order."""

    work: Path
    db_url: str = ""
    server: PgServer | None = None
    replicas: list[Replica] = field(default_factory=list)
    workers: list[WorkerProc] = field(default_factory=list)
    engine: sa.Engine | None = None
    nice_seen: list[int] = field(default_factory=list)  # the running workers' nice values

    def close(self) -> None:
        stop_workers(self.workers)
        for r in self.replicas:  # SIGTERM to all, then wait: they stop together
            if r.proc.poll() is None:
                r.proc.terminate()
        for r in self.replicas:
            r.stop()
        if self.engine is not None:
            self.engine.dispose()
        if self.server is not None:
            self.server.stop()
        shutil.rmtree(self.work, ignore_errors=True)


def simulate(config: SimConfig) -> dict[str, Any]:
    """Run the simulation; its report (figures, then per-goal booleans under ``goals``)."""
    work = Path(tempfile.mkdtemp(prefix="healer-sim-"))
    work.chmod(0o711)  # the service user reaches its replica's state dir inside
    fleet = Fleet(work)
    try:
        return _run(fleet, config)
    finally:
        fleet.close()


def _database(fleet: Fleet, config: SimConfig) -> str:
    if config.database_url:
        return config.database_url
    bindir = find_bindir()
    if bindir is None:
        raise SimError("no PostgreSQL found under /usr/lib/postgresql: install Debian's "
                       "postgresql, or set HEALER_DATABASE_URL")
    fleet.server = PgServer.start(bindir, {"max_connections": str(MAX_CONNECTIONS)})
    fleet.server.prefix = "sim"
    return fleet.server.create_database()


# Each replica keeps 24 connections open and opens no more: two replicas, their LISTEN
# connections and the simulation's own stay under max_connections (60). With the default
# pool (5 kept, 10 more opened and closed per checkout) the connection churn under load was
# the lease-claim tail: a 200-agent storm's p99 went from 2.3 s to 0.85 s with this pool.
REPLICA_POOL = 24


def _run(fleet: Fleet, config: SimConfig) -> dict[str, Any]:
    fleet.db_url = _database(fleet, config)
    fleet.engine = open_engine(fleet.db_url, pool_size=1, max_overflow=1)
    migrate(fleet.engine)
    repo = Repository(fleet.engine, "control-plane")
    policy = FleetPolicy.model_validate(FLEET)
    policy_file = write_policy(fleet.work / "policy.yaml", FLEET)
    library = write_playbooks(fleet.work / "playbooks",
                              {PLAYBOOK.format(s): key for s, key in KEYS.items()}, FIX,
                              METRIC, VERIFY_SECONDS)
    fleet.replicas = [spawn_replica(fleet.db_url, fleet.work,
                                    {"HEALER_POLICY_FILE": str(policy_file),
                                     "HEALER_PLAYBOOKS_DIR": str(library),
                                     "HEALER_DB_POOL_SIZE": str(REPLICA_POOL),
                                     "HEALER_DB_MAX_OVERFLOW": "0"})
                      for _ in range(2)]
    for replica in fleet.replicas:
        wait_ready(replica)
    hosts = _hosts(repo, config, [r.url for r in fleet.replicas])
    t0_file = fleet.work / "t0"
    template = template_journal(fleet.work / "template.db")
    fleet.workers = _workers(fleet.work, hosts, template, t0_file, config.agent_nice)
    sampler = ConnectionSampler(fleet.engine)
    with sampler.running():
        for w in fleet.workers:
            w.start()
        _wait_workers(fleet.workers)
        fleet.nice_seen = sorted({os.getpriority(os.PRIO_PROCESS, w.pid) for w in fleet.workers})
        _wait_heartbeats(fleet.engine, config.agents)
        t0 = time.time()
        t0_file.write_text(str(t0))
        timeline = Timeline(t0)
        _propagation(repo, fleet.workers, hosts, timeline)
        ingest, ingest_failed = _webhooks(repo, fleet.replicas, hosts, config, timeline)
        killed = _play(fleet, hosts, config, timeline, policy)
    stop_workers(fleet.workers)
    report = _report(fleet, hosts, config, policy, timeline, sampler, killed, ingest)
    report["webhook_deliveries_failed"] = ingest_failed
    report["goals"] = _goals(report, config, ingest)
    return report


def _hosts(repo: Repository, config: SimConfig, urls: list[str]) -> list[Host]:
    """``healer host add`` N times, the hosts split among scenarios and workers."""
    workers = min(MAX_WORKERS, config.agents)
    hosts = []
    for i in range(config.agents):
        host_id, token = f"sim-{i + 1:04d}", new_token()
        repo.add_host(host_id, token)
        hosts.append(Host(host_id, token, urls[i % len(urls)], i % workers))
    start = 0
    for name, share in SHARES.items():
        count = int(config.agents * share)
        if name in config.scenarios:
            for h in hosts[start:start + count]:
                h.scenario = name
        start += count
    return hosts


def _workers(work: Path, hosts: list[Host], template: Path, t0_file: Path,
             nice: int) -> list[WorkerProc]:
    hosts_dir = work / "hosts"
    hosts_dir.mkdir()
    out = []
    for index in range(max(h.worker for h in hosts) + 1):
        wdir = work / f"worker-{index}"
        wdir.mkdir()
        agents = [{"host_id": h.host_id, "url": h.url, "token": h.token,
                   "labels": {"rack": f"r{int(h.host_id[4:]) % 10}"},
                   "faults": _faults(h)} for h in hosts if h.worker == index]
        spec = wdir / "spec.json"
        spec.write_text(json.dumps({"out": str(wdir), "hosts_dir": str(hosts_dir),
                                    "template": str(template), "t0_file": str(t0_file),
                                    "agents": agents}))
        spec.chmod(0o600)  # it holds host tokens
        out.append(WorkerProc(index, spec, wdir, nice))
    return out


def _faults(host: Host) -> list[dict[str, Any]]:
    """The host's fault, as offsets from t0 (the worker adds t0 once it is known)."""
    if host.scenario not in KEYS:
        return []
    fault = Fault(scenario=host.scenario, playbook=PLAYBOOK.format(host.scenario),
                  key=KEYS[host.scenario], fix=FIX, at=FAULTS_AT,
                  bad=host.scenario == "bad-fix")
    return [fault.__dict__]


def _wait_workers(workers: list[WorkerProc]) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while not all((w.out / "ready").exists() for w in workers):
        for w in workers:
            if w.proc is not None and w.proc.poll() is not None:
                raise SimError(f"worker {w.index} exited {w.proc.returncode}: "
                               f"{_tail(w.out / 'worker.log')}")
        if time.monotonic() > deadline:
            raise SimError("the agents did not start within "
                           f"{READY_TIMEOUT:.0f}s: the machine is too busy for this many")
        time.sleep(0.2)


def _wait_heartbeats(engine: sa.Engine, agents: int) -> None:
    """Until every agent's first heartbeat is in, then SETTLE_SECONDS for their start-up
    burst (reports, first long polls) to pass: the run measures a fleet that is up."""
    deadline = time.monotonic() + READY_TIMEOUT
    query = sa.select(sa.func.count()).select_from(HostTable).where(
        HostTable.c.last_heartbeat_at.is_not(None))
    while True:
        with engine.connect() as c:
            if int(c.execute(query).scalar() or 0) >= agents:
                break
        if time.monotonic() > deadline:
            raise SimError(f"not every agent reached the control plane within "
                           f"{READY_TIMEOUT:.0f}s: the machine is too busy for this many")
        time.sleep(0.5)
    time.sleep(SETTLE_SECONDS)


def _tail(path: Path, lines: int = 5) -> str:
    return " | ".join(path.read_text(errors="replace").splitlines()[-lines:])


@dataclass
class Timeline:
    t0: float
    marks: dict[str, float] = field(default_factory=dict)

    def mark(self, name: str) -> None:
        self.marks[name] = time.time()

    def at(self, offset: float) -> None:
        """Sleep until ``offset`` seconds after t0."""
        time.sleep(max(0.0, self.t0 + offset - time.time()))


def _seen(workers: list[WorkerProc]) -> list[dict[str, Any]]:
    found = []
    for w in workers:
        path = w.out / SEEN
        if path.exists():
            found += [json.loads(line) for line in path.read_text().splitlines() if line]
    return found


def _propagation(repo: Repository, workers: list[WorkerProc], hosts: list[Host],
                 timeline: Timeline) -> None:
    """Pause the fleet, wait until every agent saw it (or 5 s), resume, the same."""
    for paused in (True, False):
        timeline.mark("pause" if paused else "resume")
        if paused:
            repo.fleet_pause(None, "fleet-sim", "propagation measurement")
        else:
            repo.fleet_resume(None, "fleet-sim")
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline:
            saw = {s["host"] for s in _seen(workers) if s["paused"] is paused}
            if len(saw) >= len(hosts):
                break
            time.sleep(0.05)


def _webhooks(repo: Repository, replicas: list[Replica], hosts: list[Host], config: SimConfig,
              timeline: Timeline) -> tuple[list[str], int]:
    """The same Alertmanager payload, twice to each replica: (the hosts it named, the
    deliveries that failed)."""
    if "webhooks" not in config.scenarios:
        return [], 0
    token = new_token()
    repo.add_token("fleet-sim-ingest", hash_token(token), "ingest")
    named = [h.host_id for h in hosts if not h.scenario][:WEBHOOK_HOSTS] or \
        [h.host_id for h in hosts][:WEBHOOK_HOSTS]
    starts = datetime.now(UTC).isoformat()
    alerts = [{"status": "firing", "startsAt": starts, "fingerprint": f"simfp{i:04d}",
               "labels": {"alertname": "SimDiskFull", "host": host, "severity": "warning"},
               "annotations": {"summary": "simulated"}} for i, host in enumerate(named)]
    body = json.dumps({"version": "4", "status": "firing", "alerts": alerts}).encode()
    failed = 0
    for _ in range(2):
        for replica in replicas:
            request = urllib.request.Request(
                f"{replica.url}/api/v1/alerts/alertmanager", data=body, method="POST",
                headers={"Authorization": f"Bearer {token}",
                         "Content-Type": "application/json"})
            try:  # a delivery that fails is counted; Alertmanager would retry it
                with urllib.request.urlopen(request, timeout=30) as answer:
                    failed += answer.status != 200
            except (urllib.error.URLError, OSError):
                failed += 1
    timeline.mark("webhooks")
    return named, failed


@dataclass
class Killed:
    worker: int = -1
    at: float = 0.0
    leases: list[int] = field(default_factory=list)  # live on its hosts when it died


def _live(engine: sa.Engine, remedy: str) -> list[tuple[int, str]]:
    with engine.connect() as c:
        return [(r.id, r.host_id) for r in c.execute(
            sa.select(LeaseTable.c.id, LeaseTable.c.host_id).where(
                LeaseTable.c.remedy == remedy, LeaseTable.c.state == "live"))]


def _remedy(scenario: str) -> str:
    return Remedy(playbook=PLAYBOOK.format(scenario), kind="sysctl_write",
                  target=KEYS[scenario]).key


def _play(fleet: Fleet, hosts: list[Host], config: SimConfig, timeline: Timeline,
          policy: FleetPolicy) -> Killed:
    """Wait for the scenarios to play out; kill a worker on the way (``kill``)."""
    assert fleet.engine is not None
    engine, killed = fleet.engine, Killed()
    by_host = {h.host_id: h for h in hosts}
    deadline = timeline.t0 + config.seconds
    restart_at = math.inf
    while time.time() < deadline:
        if "kill" in config.scenarios and killed.worker < 0:
            live = _live(engine, _remedy("kill"))
            # Mid-action: leases are live, and past the canary when the waves are narrow.
            if live and (len(live) >= 2 or _healed(fleet.work, hosts, "kill") > 0):
                counts: dict[int, list[int]] = {}
                for lease_id, host in live:
                    counts.setdefault(by_host[host].worker, []).append(lease_id)
                worker, leases = max(counts.items(), key=lambda kv: len(kv[1]))
                fleet.workers[worker].kill()
                killed = Killed(worker, time.time(), leases)
                restart_at = time.monotonic() + 2 * policy.lease_ttl_seconds + 1
        if time.monotonic() >= restart_at:
            fleet.workers[killed.worker].start()
            restart_at = math.inf
        if restart_at == math.inf and _done(fleet, hosts, config, timeline, killed):
            break
        time.sleep(0.25)
    timeline.mark("end")
    return killed


def _done(fleet: Fleet, hosts: list[Host], config: SimConfig, timeline: Timeline,
          killed: Killed) -> bool:
    """Every scenario reached its end."""
    assert fleet.engine is not None
    if time.time() < timeline.t0 + FAULTS_AT + 2 * FLEET["systemic_hold_seconds"]:
        return False  # the systemic rule gets its time
    if "kill" in config.scenarios and killed.worker < 0:
        return False
    for name in ("storm", "kill"):
        if name in config.scenarios and _unhealed(fleet.work, hosts, name, killed):
            return False
    if "bad-fix" in config.scenarios:
        with fleet.engine.connect() as c:
            tripped = c.execute(sa.select(BreakerTable.c.tripped_at).where(
                BreakerTable.c.remedy == _remedy("bad-fix"))).scalar()
        if tripped is None or _live(fleet.engine, _remedy("bad-fix")):
            return False
    return True


def _count(hosts: list[Host], scenario: str) -> int:
    return sum(1 for h in hosts if h.scenario == scenario)


def _healed(work: Path, hosts: list[Host], scenario: str) -> int:
    """Hosts of ``scenario`` whose sysctl now holds the fix (their value file)."""
    return sum(1 for h in hosts if h.scenario == scenario and _fixed(work, h))


def _fixed(work: Path, host: Host) -> bool:
    path = work / "hosts" / host.host_id / "values.json"
    return path.exists() and json.loads(path.read_text()).get(KEYS[host.scenario]) == FIX


def _unhealed(work: Path, hosts: list[Host], scenario: str, killed: Killed) -> list[str]:
    """Hosts of ``scenario`` without the fix, but those whose change the kill interrupted:
    their crash recovery rolled it back, and the guard's cooldown then keeps them from the
    same change for a while, by design."""
    return [h.host_id for h in hosts if h.scenario == scenario and not _fixed(work, h)
            and not _recovered(work, h, killed)]


def _recovered(work: Path, host: Host, killed: Killed) -> bool:
    """The host's agent was killed and rolled a change back when it started again."""
    return host.worker == killed.worker and any(
        line["op"] == "rollback" and line["t"] >= killed.at
        for line in read_log(work / "hosts" / host.host_id))


class ConnectionSampler:
    """``pg_stat_activity``'s client backends, sampled on a thread through the run."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine, self.peak, self.samples = engine, 0, 0
        self._stop = threading.Event()

    @contextlib.contextmanager
    def running(self) -> Iterator[None]:
        thread = threading.Thread(target=self._run, name="sim-pg-sampler", daemon=True)
        thread.start()
        try:
            yield
        finally:
            self._stop.set()
            thread.join()

    def _run(self) -> None:
        query = sa.text("SELECT count(*) FROM pg_stat_activity "
                        "WHERE backend_type = 'client backend'")
        with self.engine.connect() as c:
            while not self._stop.wait(SAMPLE_DB_SECONDS):
                self.peak = max(self.peak, int(c.execute(query).scalar() or 0))
                self.samples += 1
                c.commit()


# -- the report --------------------------------------------------------------------------
def _p99(values: list[float]) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(0.99 * len(ordered)) - 1)]


def histogram_quantile(q: float, buckets: dict[str, float]) -> float | None:
    """The q-quantile of cumulative ``le`` buckets, interpolated linearly within the bucket
    it falls in, as Prometheus' histogram_quantile does."""
    edges = sorted(((math.inf if le == "+Inf" else float(le)), n) for le, n in buckets.items())
    if not edges or edges[-1][1] == 0:
        return None
    rank, lower, below = q * edges[-1][1], 0.0, 0.0
    for upper, count in edges:
        if count >= rank:
            if math.isinf(upper):
                return lower
            return lower + (upper - lower) * (rank - below) / max(count - below, 1e-9)
        lower, below = upper, count
    return lower


def _lease_buckets(workers: list[WorkerProc]) -> dict[str, float]:
    total: dict[str, float] = {}
    for w in workers:
        path = w.out / METRICS
        if path.exists():
            for le, n in json.loads(path.read_text()).items():
                total[le] = total.get(le, 0.0) + n
    return total


def lane_p99_ms(replicas: list[Replica]) -> dict[str, dict[str, float | None]]:
    """Per lane of agent requests, the p99 of the time queued and running, from every
    replica's ``healer_agent_request_seconds`` histogram: where a slow claim spent it."""
    buckets: dict[tuple[str, str], dict[str, float]] = {}
    for replica in replicas:
        with urllib.request.urlopen(f"{replica.url}/metrics", timeout=10) as answer:
            text = answer.read().decode()
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name != "healer_agent_request_seconds_bucket":
                    continue
                key = (sample.labels["lane"], sample.labels["phase"])
                le = sample.labels["le"]
                into = buckets.setdefault(key, {})
                into[le] = into.get(le, 0.0) + sample.value
    out: dict[str, dict[str, float | None]] = {}
    for (lane, phase), counts in sorted(buckets.items()):
        p99 = histogram_quantile(0.99, counts)
        out.setdefault(lane, {})[phase] = None if p99 is None else round(p99 * 1000, 1)
    return out


def _writes(work: Path, hosts: list[Host]) -> dict[str, list[dict[str, Any]]]:
    return {h.host_id: read_log(work / "hosts" / h.host_id) for h in hosts}


def double_executions(writes: dict[str, list[dict[str, Any]]]) -> int:
    """Applies of a remedy on a host that follow an apply of it with no rollback between
    (each simulated host has one fault per remedy: one incident)."""
    doubles = 0
    for lines in writes.values():
        applied: dict[str, bool] = {}
        for line in lines:
            if line["op"] == "apply":
                doubles += applied.get(line["remedy"], False)
                applied[line["remedy"]] = True
            else:
                applied[line["remedy"]] = False
    return doubles


ENDED = {ActionState.VERIFIED, ActionState.ROLLED_BACK, ActionState.ROLLBACK_FAILED,
         ActionState.SUPERSEDED}


@dataclass
class Journals:
    """What the agents' journals say: per sysctl key, (applying at, ended at, host) of
    every change, the hosts that waited in ``waiting_canary``, and those the rollout held
    back (in ``waiting_canary``, or told to wait for the canary, a wave or room in
    flight)."""

    spans: dict[str, list[tuple[float, float, str]]] = field(default_factory=dict)
    waited_canary: dict[str, set[str]] = field(default_factory=dict)
    waited_rollout: dict[str, set[str]] = field(default_factory=dict)


# The waits a rollout's staging gives: behind the canary, for a wave, for room under the
# in-flight caps (the breaker's K counts the hosts in flight too; a storm's good fix never
# trips it, so for its hosts "breaker" is that bound).
ROLLOUT_WAITS = frozenset({"canary", "wave", "in_flight", "breaker"})


def _journals(work: Path, hosts: list[Host], killed: Killed) -> Journals:
    """Read every agent's journal; a change on a killed worker's host ends, as far as in
    flight goes, when its agent died."""
    out = Journals()
    for h in hosts:
        path = work / "hosts" / h.host_id / JOURNAL
        if not h.scenario or not path.exists():
            continue
        engine = open_engine(f"sqlite:///{path}", pool_size=1, max_overflow=0)
        try:
            repo = Repository(engine, h.host_id)
            records = list(repo.iter_actions())
            moves = repo.transitions([r.id for r in records if r.id is not None])
            waits = {a.subject for a in repo.list_audit(limit=10_000)
                     if a.event == "action.fleet_wait" and a.detail.get("reason")
                     in ROLLOUT_WAITS}
        finally:
            engine.dispose()
        for record in records:
            steps = moves.get(record.id or 0, [])
            key = getattr(record.action, "key", "")
            if any(t.state == ActionState.WAITING_CANARY for t in steps):
                out.waited_canary.setdefault(key, set()).add(h.host_id)
                out.waited_rollout.setdefault(key, set()).add(h.host_id)
            if f"action:{record.id}" in waits:
                out.waited_rollout.setdefault(key, set()).add(h.host_id)
            start = next((t.at.timestamp() for t in steps if t.state == ActionState.APPLYING),
                         None)
            if start is None:
                continue
            end = next((t.at.timestamp() for t in steps if t.state in ENDED), math.inf)
            if h.worker == killed.worker and start < killed.at:
                end = min(end, killed.at)
            out.spans.setdefault(key, []).append((start, end, h.host_id))
    return out


def max_overlap(intervals: list[tuple[float, float, str]]) -> int:
    events = sorted([(s, 1) for s, _, _ in intervals] + [(e, -1) for _, e, _ in intervals],
                    key=lambda ev: (ev[0], ev[1]))
    now = peak = 0
    for _, step in events:
        now += step
        peak = max(peak, now)
    return peak


def canary_violations(spans: list[tuple[float, float, str]]) -> int:
    """Changes that started before the first one (the canary) ended."""
    if not spans:
        return 0
    first = min(spans)
    return sum(1 for s in spans if s is not first and s[0] < first[1])


def _reclaim(engine: sa.Engine, killed: Killed) -> list[float]:
    """Seconds from the kill until each lease its agents held was reclaimed (the control
    plane's audit record of it; inf: never), or handed back by the restarted agent."""
    if not killed.leases:
        return []
    with engine.connect() as c:
        audits = c.execute(sa.select(AuditTable.c.at, AuditTable.c.detail).where(
            AuditTable.c.event == "lease.reclaimed")).all()
        released = dict(c.execute(sa.select(LeaseTable.c.id, LeaseTable.c.released_at).where(
            LeaseTable.c.id.in_(killed.leases), LeaseTable.c.released_at.is_not(None))).all())
    reclaimed = {int(d.get("lease", 0)): at for at, d in audits}
    ended = {i: reclaimed.get(i) or released.get(i) for i in killed.leases}
    return [(at.timestamp() - killed.at) if at is not None else math.inf
            for at in ended.values()]


def _cp_counts(engine: sa.Engine, webhook_hosts: list[str]) -> dict[str, Any]:
    systemic = f"{PLAYBOOK.format('systemic')}|host"
    with engine.connect() as c:
        fleet_incidents = c.execute(sa.select(sa.func.count()).select_from(
            FleetIncidentTable).where(FleetIncidentTable.c.fingerprint == systemic)).scalar()
        llm = c.execute(sa.select(sa.func.count()).select_from(LlmAnswerTable)).scalar()
        prints = c.execute(sa.select(sa.func.count(sa.distinct(
            IncidentTable.c.fleet_fingerprint)))).scalar()
        alerts = c.execute(sa.select(IncidentTable.c.host_id, sa.func.count()).where(
            IncidentTable.c.host_id.in_(webhook_hosts), IncidentTable.c.subject.like(
                "%SimDiskFull%")).group_by(IncidentTable.c.host_id)).all()
    return {"systemic_fleet_incidents": int(fleet_incidents or 0), "llm_calls": int(llm or 0),
            "distinct_fingerprints": int(prints or 0),
            "webhook_incidents": {h: n for h, n in alerts}}


def _propagation_ms(seen: list[dict[str, Any]], timeline: Timeline, agents: int
                    ) -> tuple[float | None, int]:
    """p99 over agents of the time a pause and a resume took to reach each; how many of
    those 2 x N arrivals never came."""
    delays = []
    for paused, mark in ((True, "pause"), (False, "resume")):
        first: dict[str, float] = {}
        start = timeline.marks[mark]
        for s in seen:
            if s["paused"] is paused and s["t"] >= start:
                first.setdefault(s["host"], s["t"])
        delays += [(t - start) * 1000 for t in first.values()]
    p99 = _p99(delays)
    return (round(p99, 1) if p99 is not None else None), 2 * agents - len(delays)


def _report(fleet: Fleet, hosts: list[Host], config: SimConfig, policy: FleetPolicy,
            timeline: Timeline, sampler: ConnectionSampler, killed: Killed,
            webhook_hosts: list[str]) -> dict[str, Any]:
    assert fleet.engine is not None
    writes = _writes(fleet.work, hosts)
    journals = _journals(fleet.work, hosts, killed)
    spans = journals.spans
    cap = in_flight_cap(config.agents, policy)
    in_flight = {key: max_overlap(v) for key, v in spans.items()}
    touched = {h for h, lines in writes.items()
               if any(x["remedy"] == KEYS["bad-fix"] and x["op"] == "apply" for x in lines)}
    reclaim = _reclaim(fleet.engine, killed)
    buckets = _lease_buckets(fleet.workers)
    claim = histogram_quantile(0.99, buckets)
    propagation, unseen = _propagation_ms(_seen(fleet.workers), timeline, config.agents)
    cp = _cp_counts(fleet.engine, webhook_hosts)
    systemic_actions = sum(1 for lines in writes.values() for x in lines
                           if x["remedy"] == KEYS["systemic"] and x["op"] == "apply")
    k = policy.breaker_failures
    report: dict[str, Any] = {
        "agents": config.agents, "workers": len(fleet.workers),
        "scenarios": list(config.scenarios),
        "seconds": round(timeline.marks["end"] - timeline.t0, 1),
        "double_executions": double_executions(writes),
        "max_in_flight": max(in_flight.values(), default=0), "in_flight_cap": cap,
        "max_in_flight_by_remedy": in_flight,
        "canary_violations": canary_violations(spans.get(KEYS["storm"], [])),
        "storm_hosts": _count(hosts, "storm"),
        "storm_hosts_healed": _healed(fleet.work, hosts, "storm"),
        "storm_hosts_unhealed": _unhealed(fleet.work, hosts, "storm", killed),
        "storm_hosts_waited_canary": len(journals.waited_canary.get(KEYS["storm"], ())),
        "storm_hosts_waited_rollout": len(journals.waited_rollout.get(KEYS["storm"], ())),
        "kill_hosts": _count(hosts, "kill"),
        "kill_hosts_healed": _healed(fleet.work, hosts, "kill"),
        "kill_hosts_unhealed": _unhealed(fleet.work, hosts, "kill", killed),
        "bad_fix_hosts": _count(hosts, "bad-fix"),
        "bad_fix_hosts_touched": len(touched), "canary_plus_k": 1 + k,
        "systemic_hosts": _count(hosts, "systemic"),
        "systemic_auto_actions": systemic_actions,
        "systemic_fleet_incidents": cp["systemic_fleet_incidents"],
        "killed_worker": killed.worker if killed.worker >= 0 else None,
        "killed_agents": sum(1 for h in hosts if h.worker == killed.worker),
        "leases_live_at_kill": len(killed.leases),
        "reclaim_seconds_max": (round(max(reclaim), 2) if reclaim else None),
        "lease_ttl_seconds": policy.lease_ttl_seconds,
        "claim_p99_ms": round(claim * 1000, 1) if claim is not None else None,
        "claim_histogram": dict(sorted(buckets.items(), key=lambda kv: float(kv[0]))),
        "control_plane_p99_ms": lane_p99_ms(fleet.replicas),
        "approval_propagation_p99_ms": propagation,
        "approval_propagation_missed": unseen,
        "llm_calls": cp["llm_calls"], "llm_configured": False,
        "distinct_fingerprints": cp["distinct_fingerprints"],
        "webhook_incidents": cp["webhook_incidents"],
        "db_connections_peak": sampler.peak, "db_connection_samples": sampler.samples,
        "max_connections": MAX_CONNECTIONS, "tick_seconds": TICK_SECONDS,
        "agent_nice": fleet.nice_seen,
    }
    return report


def _goals(r: dict[str, Any], config: SimConfig, webhook_hosts: list[str]) -> dict[str, bool]:
    on = set(config.scenarios)
    claim, prop, reclaim = (r["claim_p99_ms"], r["approval_propagation_p99_ms"],
                            r["reclaim_seconds_max"])
    goals = {
        "no_double_executions": r["double_executions"] == 0,
        "in_flight_within_cap": r["max_in_flight"] <= r["in_flight_cap"]
        and r["canary_violations"] == 0,
        "bad_fix_within_canary_plus_k": r["bad_fix_hosts_touched"] <= r["canary_plus_k"],
        "systemic_no_auto_actions": r["systemic_auto_actions"] == 0,
        "systemic_one_fleet_incident": r["systemic_fleet_incidents"] == 1,
        "reclaim_within_2ttl": reclaim is not None and reclaim <= 2 * r["lease_ttl_seconds"],
        "claim_p99_under_100ms": claim is not None and claim < 100,
        "approval_propagation_p99_under_1s": prop is not None and prop < 1000
        and r["approval_propagation_missed"] == 0,
        "llm_calls_within_fingerprints": r["llm_calls"] <= r["distinct_fingerprints"],
        "db_connections_under_60": r["db_connections_peak"] < MAX_CONNECTIONS,
        "storm_healed": r["storm_hosts_unhealed"] == [] and r["storm_hosts_healed"] > 0,
        "kill_healed": r["kill_hosts_unhealed"] == [] and r["kill_hosts_healed"] > 0,
        "webhooks_one_incident_each": sorted(r["webhook_incidents"].items())
        == [(h, 1) for h in sorted(webhook_hosts)] and r["webhook_deliveries_failed"] == 0,
    }
    needs = {"bad_fix_within_canary_plus_k": "bad-fix", "systemic_no_auto_actions": "systemic",
             "systemic_one_fleet_incident": "systemic", "reclaim_within_2ttl": "kill",
             "storm_healed": "storm", "kill_healed": "kill",
             "webhooks_one_incident_each": "webhooks",
             "claim_p99_under_100ms": "", "in_flight_within_cap": ""}
    return {g: ok for g, ok in goals.items() if needs.get(g, "") in on or not needs.get(g)}


def exit_status(report: dict[str, Any]) -> int:
    """0 when every goal judged holds, 1 otherwise."""
    return 0 if all(report["goals"].values()) else 1
