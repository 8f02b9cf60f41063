"""What detection hands to incident tracking: fire and clear events."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from healer.models import Evidence


@dataclass(frozen=True)
class DetectEvent:
    """A playbook started or kept firing (``fire``) or stopped (``clear``) for one key."""

    kind: Literal["fire", "clear"]
    playbook_id: str
    scope: str
    severity: str
    evidence: Evidence
    count: int  # matching kernel-log records this cycle (1 for a metric-only firing)
    ts: float
    subject: str = ""  # what within the scope (a device; for unclassified: the template)
