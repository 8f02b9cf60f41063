"""Three real agents, in three network namespaces, heal the same listen overflow through two
control-plane replicas on PostgreSQL, and the canary order holds.

Everything is real: each agent is a ``healer run --control-plane`` (root, with its
unprivileged ``healer serve`` child) acting on its own namespace's ``net.core.somaxconn``;
the replicas are two ``healer serve`` processes on one database; the fault is the chaos
suite's own (a reloading server whose accept queue overflows once somaxconn is 16). The
agents talk to different replicas, so a grant made by one must hold back a host asking the
other.

The canary order is checked on the agents' own journals (when each host first applied a
remedy) against the control plane's lease records (when the canary's lease came back
verified): no other host applies a remedy before its canary verified it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from chaos import netns
from chaos.daemon import clean_env
from chaos.faults import NetnsSysctl, Workload
from chaos.proc import python_module
from chaos.sandbox import Sandbox, free_port
from healer.store.engine import open_engine
from tests.pg import PgServer
from tests.serve import Replica, cli, fleet_policy, replicas
from tests.tools import dies_with_parent

pytestmark = [pytest.mark.timeout(420), pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("ip"),
    reason="needs root and iproute2: network namespaces, and agents that drop to `healer`")]

HOSTS = ("edge-a", "edge-b", "edge-c")
PLAYBOOK = "listen-backlog-too-small"
SOMAXCONN = "net.core.somaxconn"
REMEDY = f"{PLAYBOOK}:sysctl_write:{SOMAXCONN}"
PORT = "8080"
HEAL_TIMEOUT_S = 240.0


@dataclass
class Agent:
    host: str
    sandbox: Sandbox
    server: Workload
    proc: subprocess.Popen[bytes]
    log: Path
    env: dict[str, str]

    def actions(self) -> list[dict[str, Any]]:
        out = subprocess.run([sys.executable, "-m", "healer.cli.main", "actions", "--json",
                              "--limit", "1000"], env=self.env, capture_output=True, text=True,
                             timeout=60, check=False)
        assert out.returncode == 0, out.stderr[-1000:]
        records: list[dict[str, Any]] = json.loads(out.stdout)
        return records

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def policy_file() -> Iterator[Path]:
    """The shipped policy with a short systemic hold (three hosts never make a systemic
    failure: the minimum is five)."""
    with fleet_policy(systemic_hold_seconds=2) as path:
        yield path


@pytest.fixture
def db(pg_server: PgServer, pg_head_template: str) -> Iterator[str]:
    url = pg_server.create_database(pg_head_template)
    yield url
    pg_server.drop_database(url)


def _overflowing(host: str) -> tuple[Sandbox, Workload]:
    """A sandbox whose server overflows its accept queue (somaxconn 16 in its netns)."""
    sb = Sandbox.create(ttl=HEAL_TIMEOUT_S + 120)
    try:
        assert sb.ns is not None
        server = Workload(f"{host}-server", python_module(
            "chaos.workloads.slow_server", "--port", PORT, "--accept-rate", "1500"), ns=sb.ns)
        sb.add(server)
        sb.add(Workload(f"{host}-client", python_module(
            "chaos.workloads.burst_client", "--port", PORT, "--burst", "300", "--period", "1",
            "--hold", "0.3"), ns=sb.ns))
        sb.add(NetnsSysctl(sb.ns, SOMAXCONN, "16", ttl=HEAL_TIMEOUT_S + 60))
    except BaseException:
        sb.destroy()
        raise
    return sb, server


def _start_agent(host: str, token: str, replica: Replica, policy: Path) -> Agent:
    sb, server = _overflowing(host)
    env = clean_env({
        "HEALER_STATE_DIR": str(sb.state_dir), "HEALER_HOST_ID": host,
        "HEALER_HOST": "127.0.0.1",
        "HEALER_PORT": str(free_port()), "HEALER_MODE": "auto",
        "HEALER_INTERVAL_SECONDS": "0.5", "HEALER_KMSG_SOURCE": "none",
        "HEALER_GPU_BACKEND": "none", "HEALER_NETNS": sb.ns or "",
        "HEALER_CGROUP_ROOT": sb.cgroup_root or "", "HEALER_POLICY_FILE": str(policy),
        "HEALER_SYSCTL_DROPIN": str(sb.root / "90-healer.conf"),
        "HEALER_HOST_LABELS": f"rack={host}", "HEALER_LOG_LEVEL": "info"})
    log = sb.logs / "healer.log"
    with log.open("wb") as out:
        # An agent outlives no test run, even one killed by its timeout.
        proc = subprocess.Popen(dies_with_parent(
            [sys.executable, "-m", "healer.cli.main", "run", "--control-plane", replica.url,
             "--host-id", host]), env=env | {"HEALER_AGENT_TOKEN": token},
            stdout=out, stderr=subprocess.STDOUT)
    return Agent(host, sb, server, proc, log, env)


def _overflow_rate(agent: Agent) -> float:
    before = netns.netstat(agent.server.pid).get("TcpExt.ListenOverflows", 0)
    time.sleep(3.0)
    return (netns.netstat(agent.server.pid).get("TcpExt.ListenOverflows", 0) - before) / 3.0


def _first(record_sets: list[dict[str, Any]], state: str) -> datetime | None:
    times = [datetime.fromisoformat(t["at"]) for r in record_sets for t in r["transitions"]
             if t["state"] == state]
    return min(times, default=None)


def _somaxconn_records(agent: Agent) -> list[dict[str, Any]]:
    return [r for r in agent.actions() if r["action"].get("key") == SOMAXCONN]


def _healed(agents: list[Agent]) -> bool:
    for agent in agents:
        if agent.proc.poll() is not None:
            raise AssertionError(f"{agent.host}'s agent exited:\n{agent.tail()}")
    return all(any(r["state"] == "verified" for r in _somaxconn_records(a)) for a in agents)


def _leases(db: str) -> list[dict[str, Any]]:
    engine = open_engine(db, pool_size=1, max_overflow=0)
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.text(
                "SELECT remedy, host_id, role, outcome, granted_at, released_at FROM leases "
                "ORDER BY granted_at, id"))
            return [dict(r._mapping) for r in rows]
    finally:
        engine.dispose()


def test_three_agents_heal_one_listen_overflow_with_the_canary_verified_first(
        db: str, policy_file: Path) -> None:
    tokens = {h: cli(db, "host", "add", h).strip().splitlines()[-1] for h in HOSTS}
    agents: list[Agent] = []
    with replicas(db, 2, {"HEALER_POLICY_FILE": str(policy_file)}) as pair:
        try:
            for i, host in enumerate(HOSTS):
                agents.append(_start_agent(host, tokens[host], pair[i % 2], policy_file))
            deadline = time.monotonic() + HEAL_TIMEOUT_S
            while not _healed(agents):
                assert time.monotonic() < deadline, "\n\n".join(
                    f"{a.host}:\n{a.tail()}" for a in agents) + "\n" + pair[0].log_tail()
                time.sleep(2.0)

            # Healed for real: every namespace's server stopped overflowing.
            for agent in agents:
                assert int(netns.read_sysctl(agent.sandbox.ns or "", SOMAXCONN)) >= 4096
                assert _overflow_rate(agent) == 0.0, agent.host

            # The canary order, for the somaxconn remedy.
            leases = [row for row in _leases(db) if row["remedy"] == REMEDY]
            canary = leases[0]
            assert canary["role"] == "canary" and canary["outcome"] == "verified", leases
            assert {row["host_id"] for row in leases} == set(HOSTS)
            verified_at = canary["released_at"]
            for agent in agents:
                applied = _first(_somaxconn_records(agent), "applying")
                assert applied is not None, agent.host
                if agent.host != canary["host_id"]:
                    assert applied >= verified_at, (agent.host, applied, verified_at)
        finally:
            for agent in agents:
                agent.stop()
            for agent in agents:
                agent.sandbox.destroy()
