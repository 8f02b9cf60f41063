"""Pure functions over the daemon's API JSON (shapes in ARCHITECTURE.md)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

APPLIED_STATES = frozenset(
    {"applying", "verifying", "verified", "rolled_back", "rollback_failed", "superseded"}
)
DEFAULT_OUTCOME_ORDER = ("rolled_back", "verified", "escalated")

# The action's own "new value" field per kind (catalog: guardrails/actions.py).
_NEW_FIELD = {
    "sysctl_write": "value",
    "cgroup_limit": "value",
    "process_rlimit": "soft",
    "process_nice": "nice",
    "gpu_power_limit": "watts",
    "gpu_compute_mode": "mode",
    "gpu_mps_thread_percentage": "percent",
    "gpu_timeslice": "level",
    "notify": "message",
    "escalate": "message",
}


def parse_ts(value: Any) -> float | None:
    """Epoch seconds from an ISO 8601 timestamp (or a number), None when unparseable."""
    if isinstance(value, int | float):
        return float(value)
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def action_key(a: dict[str, Any]) -> str:
    """What the action changes within its scope, as the catalog's ``key_name`` spells it."""
    kind = a.get("kind", "")
    if kind == "sysctl_write":
        return str(a.get("key", ""))
    if kind == "cgroup_limit":
        return f"{a.get('path')}:{a.get('knob')}"
    if kind == "process_rlimit":
        return f"{a.get('pid')}:{a.get('resource')}"
    if kind == "process_nice":
        return f"{a.get('pid')}:nice"
    if kind == "gpu_mps_thread_percentage":
        return f"{a.get('index')}:mps:{a.get('client')}"
    if kind.startswith("gpu_"):
        return f"{a.get('index')}:{kind.removeprefix('gpu_')}"
    return str(kind)


def summarize_action(rec: dict[str, Any]) -> dict[str, Any]:
    """An action record as ``{kind, scope, key, old, new, verdict, reasons, state}``."""
    a = rec.get("action") or {}
    d = rec.get("decision") or {}
    kind = a.get("kind", "")
    new = rec.get("applied")
    if new is None:
        new = a.get(_NEW_FIELD.get(kind, ""))
        if kind == "gpu_locked_clocks":
            new = f"{a.get('min_mhz')}-{a.get('max_mhz')}"
    ver = rec.get("verification") or {}
    step = ver.get("step") or {}
    return {
        "id": rec.get("id"),
        "kind": kind,
        "scope": a.get("scope"),
        "key": action_key(a),
        "old": rec.get("original"),
        "new": new,
        "verdict": d.get("verdict"),
        "reasons": list(d.get("reasons") or []),
        "state": rec.get("state"),
        "provenance": rec.get("provenance"),
        # the verification's verdict (fixed | insufficient | regressed) and its numbers
        "outcome": (ver.get("result") or {}).get("verdict"),
        "numbers": (ver.get("result") or {}).get("numbers") or {},
        "step": step.get("number"),
        "ceiling": step.get("ceiling"),
        "applied_at": ver.get("applied_at"),
        "stop": (ver.get("stop") or {}).get("reason"),
        "stop_steps": list((ver.get("stop") or {}).get("steps") or []),
    }


def steps_of(actions: Sequence[dict[str, Any]], key: str | None = None) -> list[dict[str, Any]]:
    """Convergence steps (on one knob, ``action_key``, when given), oldest first, as a
    report shows them: step number, old -> new, state, the verification's verdict, ceiling."""
    return [
        {k: a[k] for k in ("step", "id", "key", "old", "new", "state", "outcome", "ceiling")}
        for a in actions
        if a["step"] is not None and key in (None, a["key"])
    ]


def stopped(actions: Sequence[dict[str, Any]], key: str | None = None) -> str | None:
    """Why a convergence (on ``key``, when given) stopped and asked a person ("steps",
    "ceiling"), if one did."""
    ids = {a["id"] for a in actions if key in (None, a["key"])}
    return next((a["stop"] for a in reversed(actions)
                 if a["stop"] and (key is None or ids & set(a["stop_steps"]))), None)


def outcome_of(
    actions: Sequence[dict[str, Any]], order: Sequence[str] = DEFAULT_OUTCOME_ORDER
) -> str:
    """verified | rolled_back | escalated | none, by the scenario's priority order."""
    states = {a["state"] for a in actions}
    found = {
        "rolled_back": bool(states & {"rolled_back", "rollback_failed"}),
        "verified": "verified" in states,
        "escalated": any(
            a["kind"] == "escalate"
            or a["state"] == "awaiting_approval"
            or a["verdict"] == "needs_approval"
            for a in actions
        ),
    }
    return next((o for o in order if found[o]), "none")


def root_cause_of(inc: dict[str, Any]) -> str:
    """The diagnosis' root cause when there is one, else the playbook that fired."""
    diag = inc.get("diagnosis") or {}
    return str(diag.get("root_cause") or inc.get("playbook") or "unknown")


def matching(
    incidents: Iterable[dict[str, Any]], ids: Iterable[str], scope_prefixes: Sequence[str] = ()
) -> list[dict[str, Any]]:
    """Incidents whose playbook is in ids (and scope starts with a prefix, when given)."""
    wanted = set(ids)
    return [
        i
        for i in incidents
        if i.get("playbook") in wanted
        and (not scope_prefixes or str(i.get("scope", "")).startswith(tuple(scope_prefixes)))
    ]


def first_seen(incidents: Iterable[dict[str, Any]]) -> float | None:
    """The earliest first_seen among incidents, as epoch seconds."""
    times = [t for t in (parse_ts(i.get("first_seen")) for i in incidents) if t is not None]
    return min(times) if times else None


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0..100) by linear interpolation; None for no values."""
    xs = sorted(values)
    if not xs:
        return None
    pos = (len(xs) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)
