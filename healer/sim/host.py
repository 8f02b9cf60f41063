"""A simulated host: the one thing a simulated agent writes (sysctl values kept in a file)
and the one metric its verifier reads, with an append-only log of every write.

The log is the simulation's ground truth: one JSON line per apply or rollback (host,
remedy key, value, wall time), appended and flushed before the write is reported back,
so a worker killed with SIGKILL loses nothing that happened. The values live in a file
replaced atomically, so a restarted agent reads what its host really holds.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from guardrails.actions import Action, SysctlWrite
from guardrails.decision import Decision
from healer.act.base import require_allow, require_original
from healer.errors import ActuatorError
from healer.models import ActionRecord

METRIC = "sim.errors"  # the symptom the verifier reads: 0 is healthy
BAD = 10.0  # errors per second while the fault is on
ORIGINAL = "128"  # where a simulated sysctl starts (those in ORIGINALS aside)
ORIGINALS = {"kernel.threads-max": "1024"}  # the policy's floor for it
LOG = "actuator.log"
VALUES = "values.json"


@dataclass(frozen=True)
class Fault:
    """One fault a host gets at wall time ``at``: fixed when ``key`` reaches ``fix``; a
    ``bad`` fix makes the symptom worse instead."""

    scenario: str
    playbook: str
    key: str
    fix: str
    at: float
    bad: bool = False

    @classmethod
    def of(cls, raw: dict[str, Any]) -> Fault:
        return cls(**raw)


def read_log(host_dir: Path) -> list[dict[str, Any]]:
    """A host's writes, oldest first."""
    path = host_dir / LOG
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


class SimHost:
    """The host's sysctls (a file) and its symptom (from its faults and those values)."""

    def __init__(self, host_id: str, root: Path, faults: list[Fault]) -> None:
        self.host_id, self.root, self.faults = host_id, root, faults
        self._started = False  # fault times are offsets until start_clock
        root.mkdir(parents=True, exist_ok=True)
        path = root / VALUES
        self.values: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}

    def start_clock(self, t0: float) -> None:
        """The faults' times were offsets from the run's start: make them wall times."""
        self.faults = [replace(f, at=t0 + f.at) for f in self.faults]
        self._started = True

    def value(self, key: str) -> str:
        return self.values.get(key, ORIGINALS.get(key, ORIGINAL))

    def active(self, now: float) -> list[Fault]:
        return [f for f in self.faults if self._started and f.at <= now]

    def symptom(self, now: float) -> float:
        """Errors per second now: the sum over the faults that are on."""
        total = 0.0
        for fault in self.active(now):
            fixed = int(self.value(fault.key)) >= int(fault.fix)
            total += (2 * BAD if fault.bad else 0.0) if fixed else BAD
        return total

    def write(self, key: str, value: str, op: str, action_id: int | None) -> None:
        """Log the write (ground truth first), then make it."""
        line = {"host": self.host_id, "remedy": key, "op": op, "value": value,
                "action_id": action_id, "t": time.time()}
        with (self.root / LOG).open("a") as fh:
            fh.write(json.dumps(line) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        self.values[key] = value
        tmp = self.root / f"{VALUES}.tmp"
        tmp.write_text(json.dumps(self.values))
        os.replace(tmp, self.root / VALUES)


class SimActuator:
    """The ``sysctl_write`` actuator of a simulated host (healer.act.base.Actuator)."""

    kinds: tuple[str, ...] = ("sysctl_write",)

    def __init__(self, host: SimHost) -> None:
        self.host = host

    def _key(self, action: Action) -> str:
        if not isinstance(action, SysctlWrite):
            raise ActuatorError(action.scope, action.target, "not a sysctl")
        return action.key

    def read(self, action: Action) -> str | None:
        return self.host.value(self._key(action))

    def in_action_units(self, action: Action, value: str) -> str:
        return value

    def facts(self, action: Action) -> dict[str, float]:
        return {}

    def apply(self, action: Action, decision: Decision) -> str:
        require_allow(action, decision)
        assert isinstance(action, SysctlWrite)
        self.host.write(action.key, action.value, "apply", None)
        return action.value

    def restore(self, record: ActionRecord) -> str:
        original = require_original(record)
        self.host.write(self._key(record.action), original, "rollback", record.id)
        return original
