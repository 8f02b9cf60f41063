"""The diagnoser protocol, its context and the detailed report behind a ``Diagnosis``."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from healer.diagnose.schema import LLMResult
from healer.diagnose.tools import ToolBox
from healer.models import Diagnosis, Incident

# The stable root-cause ids (COMMON contract); "unknown" when nothing fits.
KNOWN_ROOT_CAUSES: tuple[str, ...] = (
    "listen-backlog-too-small", "syn-backlog-overflow", "conntrack-table-full",
    "file-table-exhausted", "fd-limit-too-low", "pid-exhaustion", "pids-limit-too-low",
    "memory-pressure-oom", "cgroup-memory-limit-too-low", "memory-leak", "writeback-stall",
    "cpu-contention", "hung-task", "soft-lockup",
    "gpu-xid-app-fault", "gpu-xid-ecc-contained", "gpu-xid-fell-off-bus",
    "gpu-xid-ecc-uncontained", "gpu-xid-row-remap", "gpu-xid-driver-firmware",
    "gpu-xid-nvlink", "gpu-xid-hw-other", "gpu-ecc-dbe", "gpu-thermal-throttling",
    "gpu-memory-leak", "gpu-unfair-sharing",
    "block-io-error", "filesystem-error", "nvme-controller-error", "hw-corrected-errors",
    "hw-uncorrected-error", "nic-link-down", "nic-tx-timeout", "kernel-oops", "rcu-stall",
    "hard-lockup", "page-allocation-failure", "segfault-storm", "gpu-xid-other",
    "gpu-nvswitch-sxid",
)
UNKNOWN = "unknown"


@dataclass(frozen=True)
class DiagnoseContext:
    """What a diagnoser may look at besides the incident.

    ``playbook`` is the ``playbooks`` model that fired (None when none did); ``facts``
    are the current values remedies are computed from (tunables, limits, peaks);
    ``tools`` are the read-only investigation tools bound to this host's sources; ``host``
    is the host's context (``evidence.host_context``) and ``related`` its other open
    incidents, both shown to an LLM.
    """

    playbook: Any = None
    facts: Mapping[str, Any] = field(default_factory=dict)
    tools: ToolBox | None = None
    clock: Callable[[], float] = time.time
    root_causes: tuple[str, ...] = KNOWN_ROOT_CAUSES
    host: Mapping[str, str] = field(default_factory=dict)
    related: tuple[str, ...] = ()


@dataclass
class DiagnosisReport:
    """A diagnosis plus what it cost and what was dropped (eval and the UI read this)."""

    diagnosis: Diagnosis
    llm_used: bool = False
    cache_hit: bool = False
    calls: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    latency_seconds: float = 0.0
    unsafe_proposals: int = 0  # made by the model and dropped: not catalog actions
    failure: str | None = None  # why the LLM gave no answer (reason label), if it did not
    result: LLMResult | None = None  # the LLM's validated answer, when it gave one


@runtime_checkable
class Diagnoser(Protocol):
    """Turns an incident into a root cause and proposals; never raises for a bad answer."""

    def diagnose(self, incident: Incident, ctx: DiagnoseContext) -> Diagnosis: ...


def unknown(explanation: str, source: str = "playbook") -> Diagnosis:
    """The answer when nothing fits."""
    return Diagnosis(root_cause=UNKNOWN, explanation=explanation, confidence=0.0,
                     source="llm" if source == "llm" else "playbook")
