"""The crash test's victim: a change engine on a real netns sysctl and a real SQLite journal.

    python -m tests.act.crash_driver DB NETNS POLICY --pause-at POINT [--regress] [--finish]

On start it does what the daemon does: ``reconcile_on_start``; it then prints one JSON
line ``{"reconciled": [...], "live": ...}``. Unless ``--finish``, it proposes a raise of
net.core.somaxconn and steps the engine, feeding a synthetic metric window, until the
parent SIGKILLs it; at the checkpoint named by ``--pause-at`` it prints ``at:<point>``
and sleeps, so the parent kills it exactly there. With ``--finish`` it steps until no
change is in flight and prints ``{"final": [...], "live": ..., "integrity": ...}``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from guardrails import load_policy
from guardrails.actions import SysctlWrite
from healer.act.base import ActuatorRegistry
from healer.act.engine import ChangeEngine
from healer.act.seal import JournalSeal
from healer.act.sysctl import SysctlActuator
from healer.models import ActionRecord, ActionState, Proposal
from healer.store.engine import migrate, open_engine
from healer.store.repository import Repository
from healer.verify import GuardSpec, VerifySpec

OVERFLOWS, PSI = "net.tcp.listen_overflows_total", "psi.cpu.some_avg10"
SPEC = VerifySpec(metric=OVERFLOWS, direction="to_zero", window_seconds=0.6, settle_seconds=0.1,
                  min_samples=2, guards=(GuardSpec(metric=PSI, max_regression_percent=50),))
IN_FLIGHT = (ActionState.APPROVED, ActionState.APPLYING, ActionState.VERIFYING)


class Window:
    """A synthetic metric window: a flat overflow counter, and PSI that may regress."""

    def __init__(self) -> None:
        self.points: dict[str, list[tuple[float, float]]] = {OVERFLOWS: [], PSI: []}

    def tick(self, now: float, psi: float) -> None:
        self.points[OVERFLOWS].append((now, 100.0))
        self.points[PSI].append((now, psi))

    def series(self, name: str, seconds: float) -> list[tuple[float, float]]:
        points = self.points.get(name, [])
        return [(t, v) for t, v in points if t >= points[-1][0] - seconds] if points else []


def _row(r: ActionRecord) -> dict[str, object]:
    return {"id": r.id, "state": r.state.value, "original": r.original, "applied": r.applied}


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("db")
    p.add_argument("netns")
    p.add_argument("policy")
    p.add_argument("--pause-at", default="")
    p.add_argument("--regress", action="store_true")
    p.add_argument("--finish", action="store_true")
    args = p.parse_args()

    def checkpoint(point: str) -> None:
        if point == args.pause_at:
            print(f"at:{point}", flush=True)
            time.sleep(30)  # the parent kills us here

    engine_db = open_engine(f"sqlite:///{args.db}")
    migrate(engine_db)
    repo = Repository(engine_db, "crash-host")
    window = Window()
    sysctl = SysctlActuator()
    engine = ChangeEngine(repo, ActuatorRegistry([sysctl]), load_policy(args.policy),
                          window=window, root=True, checkpoint=checkpoint,
                          seal=JournalSeal.open(repo, Path(args.db).parent / "agent"))
    action = SysctlWrite(scope=f"netns:{args.netns}", key="net.core.somaxconn", value="0")

    def live() -> str | None:
        return sysctl.read(action)

    reconciled = engine.reconcile_on_start()
    print(json.dumps({"reconciled": [_row(r) for r in reconciled], "live": live()}), flush=True)
    start = time.time()
    for i in range(20):  # a second of history before anything is applied
        window.tick(start - 1 + i * 0.05, 1.0)
    proposed = False
    while True:
        now = time.time()
        verifying = repo.list_actions(states=(ActionState.VERIFYING,))
        window.tick(now, 50.0 if args.regress and verifying else 1.0)
        engine.step()
        settled = not repo.list_actions(states=IN_FLIGHT)
        if settled and args.finish:
            break
        if settled and not proposed:  # what the last run left is finished: change again
            value = str(int(live() or "128") + 7)
            engine.propose(None, Proposal(action=action.model_copy(update={"value": value}),
                                          provenance="playbook", in_playbook=True), SPEC)
            proposed = True
        if now - start > 10:
            print("driver: nothing settled within 10 s", file=sys.stderr)
            return 1
        time.sleep(0.05)
    final = [_row(r) for r in repo.list_actions(limit=1000)]
    print(json.dumps({"final": final, "live": live(), "integrity": repo.integrity_check(),
                      "at": datetime.now(UTC).isoformat()}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
