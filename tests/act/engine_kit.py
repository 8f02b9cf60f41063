"""Shared pieces for engine tests: a recording notifier and an engine over a real netns."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from guardrails import load_policy
from guardrails.actions import SysctlWrite
from healer.act.base import ActuatorRegistry
from healer.act.engine import ChangeEngine
from healer.act.persist import DropIn
from healer.act.seal import JournalSeal
from healer.act.sysctl import SysctlActuator
from healer.models import ActionRecord, Proposal
from healer.store.repository import Repository
from healer.verify import GuardSpec, VerifySpec

from .conftest import Clock, Window

OVERFLOWS = "net.tcp.listen_overflows_total"
PSI = "psi.cpu.some_avg10"
SPEC = VerifySpec(metric=OVERFLOWS, direction="to_zero", window_seconds=5, settle_seconds=1,
                  guards=(GuardSpec(metric=PSI, max_regression_percent=50),))


@dataclass
class Notes:
    """Records what the engine would tell people."""

    events: list[tuple[str, int | None, str]] = field(default_factory=list)

    def action(self, event: str, record: ActionRecord, *, detail: str = "",
               severity: str | None = None) -> int:
        self.events.append((str(event), record.id, detail))
        return 1

    def escalation(self, subject: str, message: str, *, incident_id: int | None = None,
                   action_id: int | None = None) -> int:
        self.events.append(("escalation", action_id, message))
        return 1

    def names(self) -> list[str]:
        return [e for e, _, _ in self.events]


def make_engine(repo: Repository, clock: Clock, window: Window, tmp: Path,
                notes: Notes | None = None, **kw: object) -> ChangeEngine:
    """An engine as the daemon builds it; engines made with the same ``tmp`` share the
    journal key (a restart), as the daemon's do across restarts."""
    kw.setdefault("root", True)
    kw.setdefault("seal", JournalSeal.open(repo, tmp / "agent"))
    return ChangeEngine(repo, ActuatorRegistry([SysctlActuator()]), load_policy(),
                        window=window, clock=clock, notifier=notes,
                        dropin=DropIn(tmp / "90-healer.conf"), **kw)  # type: ignore[arg-type]


def somaxconn(netns: str, value: str) -> Proposal:
    action = SysctlWrite(scope=f"netns:{netns}", key="net.core.somaxconn", value=value)
    return Proposal(action=action, provenance="playbook", in_playbook=True,
                    rationale="listen overflows")


def feed(window: Window, clock: Clock, seconds: int, *, overflow_rate: float, psi: float,
         start_total: float = 0.0) -> float:
    """Append one point per second for ``seconds`` (advancing the clock); returns the counter."""
    total = start_total
    for _ in range(seconds):
        clock.advance(1)
        total += overflow_rate
        window.add(OVERFLOWS, clock.now, total)
        window.add(PSI, clock.now, psi)
    return total
