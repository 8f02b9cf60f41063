"""What the change engine asks of a fleet before it writes the host (docs/fleet-protocol.md).

In a fleet, every change that writes the host (not ``notify``/``escalate``) needs a lease
from the control plane. The engine never waits on the network: it asks ``FleetGate`` what
the fleet client's threads last learned (healer.fleet.leases implements it) and moves on.
The grant is necessary, never sufficient: the local guard re-checks at apply time as always.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

from healer.models import ActionRecord

# How a fleet-gated change ended, as the control plane's ``/release`` takes it.
Outcome = Literal["verified", "rolled_back", "rollback_failed", "superseded", "denied",
                  "abandoned"]


@dataclass(frozen=True)
class FleetAnswer:
    """Where a change stands with the fleet: ``go`` (a grant younger than TTL/2 is held),
    ``ask`` (nothing held or pending: guard it, then ``FleetGate.request``), or a wait."""

    go: bool = False
    ask: bool = False
    # The control plane's reason (canary, wave, in_flight, breaker, systemic, hold, paused),
    # or what the agent knows without asking: "asking" (a request is out), "unreachable",
    # "outdated" (it refuses this agent's version), "paused" or "breaker" (its events said so).
    wait: str = ""
    rule: str = ""  # the fleet rule behind it (F-canary, ...)

    @property
    def detail(self) -> str:
        """One line for the journal and the log."""
        rule = f" (rule {self.rule})" if self.rule else ""
        return f"fleet: waiting ({self.wait}){rule}"


class FleetGate(Protocol):
    """The lease client as the engine sees it; every method returns at once."""

    def answer(self, action_id: int) -> FleetAnswer:
        """What the fleet says about applying change ``action_id`` now."""
        ...

    def request(self, record: ActionRecord) -> None:
        """Ask the control plane for a lease on ``record``'s remedy (the guard allowed it)."""
        ...

    def applying(self, action_id: int) -> None:
        """The change is being applied: keep its lease renewed until it is released."""
        ...

    def release(self, action_id: int, outcome: Outcome) -> None:
        """The change ended (or was given up): hand its lease back with the outcome."""
        ...
