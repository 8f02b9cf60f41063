"""Which playbook remedy a proposal came from, for its ``max_per_incident`` cap.

A ``Proposal`` carries no remedy index, so the remedy is found by what it changes: the
action kind, and the fields that name the knob within the scope (sysctl ``key``, cgroup
``knob``, rlimit ``resource``). A template field holding a ``{placeholder}`` matches any
value. An LLM proposal that matches a capped remedy is capped too: the cap is about the
change, not about who suggested it.
"""

from __future__ import annotations

from typing import Any

from guardrails.actions import Action

KNOB_FIELDS = ("key", "knob", "resource")


def _matches(template: Any, action: Action) -> bool:
    if getattr(template, "kind", None) != action.kind:
        return False
    fields = getattr(template, "fields", {}) or {}
    for name in KNOB_FIELDS:
        wanted = fields.get(name)
        fixed = isinstance(wanted, str) and "{" not in wanted
        if fixed and str(getattr(action, name, wanted)) != wanted:
            return False
    return True


def max_per_incident_for(playbook: Any, action: Action) -> int | None:
    """The smallest ``max_per_incident`` of the playbook's remedies that match ``action``."""
    caps = [r.max_per_incident for r in getattr(playbook, "remedies", ()) or ()
            if getattr(r, "max_per_incident", None) is not None and _matches(r.action, action)]
    return min(caps) if caps else None
