"""When an incident that keeps firing is diagnosed again (a pure decision)."""

from __future__ import annotations

from datetime import datetime

from guardrails.policy import DEFAULT_COOLDOWN_SECONDS
from healer.models import ActionState
from healer.store.rows import IncidentActivity

REDIAGNOSE_SECONDS = DEFAULT_COOLDOWN_SECONDS  # Settings.rediagnose_seconds' default
# Outcomes after which a still-firing incident is diagnosed again. Not denied, rejected,
# expired, superseded or rollback_failed: the guard, a person or an admin already answered,
# and asking again every interval would only repeat the question.
RETRY_AFTER = frozenset({ActionState.ROLLED_BACK})


def rediagnosis_due(now: datetime, interval: float, *, diagnosed: bool,
                    last_diagnosis: datetime | None, activity: IncidentActivity) -> bool:
    """Whether an open incident that keeps firing (no diagnosis pending) is diagnosed again.

    Never while one of its changes is live (proposed through verifying), nor within
    ``interval`` of the last diagnosis. Then: yes if it has no diagnosis (never landed, or
    failed); else only if its last change was rolled back ``interval`` or more ago, so the
    guard's cooldown on that target has run out too.
    """
    if activity.live:
        return False
    if last_diagnosis is not None and (now - last_diagnosis).total_seconds() < interval:
        return False
    if not diagnosed:
        return True
    if activity.last_state not in RETRY_AFTER or activity.last_change is None:
        return False
    return (now - activity.last_change).total_seconds() >= interval
