"""The journal's cost of one change at a fault's onset, per agent.

At a fault's onset an agent opens its incident, proposes the remedy, checks it with the
guard, applies it and starts verifying: every step a sealed, commit-confirmed journal
write with its report queued for the fleet. This times that path (the real repository,
change engine, seal and guard, with the simulation's actuator) for ``--agents`` agents,
each on its own SQLite journal in one process, as a simulation worker runs them.

The peer, measured in the same run on the same journals: as many bare write transactions
(``BEGIN IMMEDIATE; COMMIT`` on the driver's connection, durable as the journal's are) as
the onset made. Their ratio is what the journal's Python costs above its commits.
Figures are CPU time, medians over ``--repeats`` runs on fresh journals.
Usage: ``python bench/journal_onset.py [--agents N] [--repeats N] [--json]``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from guardrails import load_policy
from guardrails.actions import SysctlWrite
from guardrails.policy import Policy
from healer.act.base import ActuatorRegistry
from healer.act.engine import OPEN_STATES, ChangeEngine
from healer.act.persist import DropIn
from healer.act.seal import JournalSeal
from healer.models import ActionState, Incident, Proposal, Sample
from healer.sim.agent import SPEC, SharedCompiledSQL, template_journal
from healer.sim.host import METRIC, Fault, SimActuator, SimHost
from healer.store.repository import Repository
from healer.window import MetricWindow

KEY, FIX = "net.core.somaxconn", "4096"


class Agent:
    def __init__(self, root: Path, template: Path, policy: Policy,
                 compiled: SharedCompiledSQL) -> None:
        root.mkdir()
        self.journal = root / "journal.db"
        shutil.copyfile(template, self.journal)
        self.host = SimHost(root.name, root, [Fault("storm", "sim-storm", KEY, FIX, 0.0)])
        self.host.start_clock(time.time() - 1)
        self.repo = Repository(compiled.engine(self.journal), root.name)
        self.repo.set_fleet_reporting(True)  # the reports are queued, as in a fleet
        self.window = MetricWindow(60.0, 0.5)
        self.engine = ChangeEngine(self.repo, ActuatorRegistry([SimActuator(self.host)]),
                                   policy, root=True, window=self.window,
                                   dropin=DropIn(root / "90-healer.conf"),
                                   seal=JournalSeal.open(self.repo, root / "key"))
        self.begins = 0
        sa.event.listen(self.repo.engine, "begin", self._begun)

    def _begun(self, _conn: sa.Connection) -> None:
        self.begins += 1

    def onset(self) -> None:
        now = time.time()
        when = datetime.fromtimestamp(now, UTC)
        incident = self.repo.open_incident(Incident(
            host_id=self.host.host_id, playbook="sim-storm", scope="host", first_seen=when,
            last_seen=when))
        assert incident.id is not None
        self.repo.incident_activity(incident.id, OPEN_STATES)
        self.engine.propose(incident, Proposal(
            action=SysctlWrite(scope="host", key=KEY, value=FIX), provenance="playbook",
            in_playbook=True, rationale="storm"), SPEC)
        self.window.append(Sample(ts=now, metrics={METRIC: self.host.symptom(now)}))
        self.engine.step()
        self.repo.has_actions((ActionState.APPLYING, ActionState.VERIFYING))

    def bare_transactions(self, count: int) -> None:
        conn = sqlite3.connect(self.journal, isolation_level=None)
        try:
            conn.execute("PRAGMA synchronous=FULL")
            for _ in range(count):
                conn.execute("BEGIN IMMEDIATE")
                conn.execute("COMMIT")
        finally:
            conn.close()


def run_once(agents: int, policy: Policy) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        template = template_journal(Path(tmp) / "template.db")
        compiled = SharedCompiledSQL()
        fleet = [Agent(Path(tmp) / f"h{i:03d}", template, policy, compiled)
                 for i in range(agents)]
        fleet[0].onset()  # compiles the statements: a worker's first agent pays that once
        started = time.process_time()
        for agent in fleet[1:]:
            agent.onset()
        journal = (time.process_time() - started) / (agents - 1)
        states = {r.state for a in fleet for r in a.repo.list_actions()}
        if states != {ActionState.VERIFYING}:
            raise SystemExit(f"the onset did not reach verifying: {sorted(states)}")
        transactions = fleet[1].begins
        started = time.process_time()
        for agent in fleet[1:]:
            agent.bare_transactions(transactions)
        bare = (time.process_time() - started) / (agents - 1)
        for agent in fleet:
            agent.repo.engine.dispose()
    return {"journal_ms": journal * 1000, "bare_ms": bare * 1000,
            "transactions": float(transactions)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--agents", type=int, default=60)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    if args.agents < 2 or args.repeats < 1:
        print("error: --agents must be at least 2 and --repeats at least 1", file=sys.stderr)
        return 2
    policy = load_policy()
    runs = [run_once(args.agents, policy) for _ in range(args.repeats)]
    out: dict[str, Any] = {
        key: statistics.median(r[key] for r in runs)
        for key in ("journal_ms", "bare_ms", "transactions")}
    out["ratio"] = out["journal_ms"] / out["bare_ms"] if out["bare_ms"] else float("inf")
    out.update(agents=args.agents, repeats=args.repeats)
    if args.json:
        print(json.dumps(out))
        return 0
    print(f"one change's onset, per agent ({args.agents} agents, median of {args.repeats}):")
    print(f"  the journal's path        {out['journal_ms']:6.2f} ms CPU, "
          f"{out['transactions']:.0f} transactions")
    print(f"  bare write transactions   {out['bare_ms']:6.2f} ms CPU, as many")
    print(f"  ratio                     {out['ratio']:6.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
