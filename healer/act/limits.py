"""Which playbook remedy a proposal came from: its ``max_per_incident`` cap and its
``converge`` plan.

A ``Proposal`` carries no remedy index, so the remedy is found by what it changes: the
action kind, and the fields that name the knob within the scope (sysctl ``key``, cgroup
``knob``, rlimit ``resource``). A template field holding a ``{placeholder}`` matches any
value. An LLM proposal that matches a capped remedy is capped too: the cap is about the
change, not about who suggested it.
"""

from __future__ import annotations

from guardrails.actions import Action
from playbooks.schema import ActionTemplate, Converge, Playbook, Remedy

KNOB_FIELDS = ("key", "knob", "resource")


def _matches(template: ActionTemplate, action: Action) -> bool:
    if template.kind != action.kind:
        return False
    fields, own = template.fields, action.model_dump()
    for name in KNOB_FIELDS:
        wanted = fields.get(name)
        fixed = isinstance(wanted, str) and "{" not in wanted
        if fixed and str(own.get(name, wanted)) != wanted:
            return False
    return True


def remedies_for(playbook: Playbook | None, action: Action) -> list[Remedy]:
    """The playbook's remedies whose action template matches ``action``."""
    if playbook is None:
        return []
    return [r for r in playbook.remedies if _matches(r.action, action)]


def max_per_incident_for(playbook: Playbook | None, action: Action) -> int | None:
    """The smallest ``max_per_incident`` of the playbook's remedies that match ``action``."""
    caps = [r.max_per_incident for r in remedies_for(playbook, action)
            if r.max_per_incident is not None]
    return min(caps) if caps else None


def converge_for(playbook: Playbook | None, action: Action) -> Converge | None:
    """The ``converge`` plan of the first matching remedy that has one."""
    return next((r.converge for r in remedies_for(playbook, action) if r.converge), None)
