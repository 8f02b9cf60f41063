"""Resolve a playbook's verify block for one incident and action into a concrete VerifySpec.

Playbook metric names may hold ``{label}`` placeholders (``gpu.{index}.temperature_celsius``);
they are filled from the incident's scope and captures and the action's own fields.
"""

from __future__ import annotations

from typing import Any

from guardrails.actions import Action
from healer.models import Incident
from healer.verify.spec import VerifySpec, spec_from_playbook

_SCOPE_LABELS = {"gpu": "index", "pid": "pid", "cgroup": "cgroup", "netns": "netns"}


def labels_for(incident: Incident | None, action: Action) -> dict[str, str]:
    """Placeholder values: the action's fields win over the incident's scope and captures."""
    labels: dict[str, str] = {}
    if incident is not None:
        labels.update(incident.evidence.captures)
        kind, _, value = incident.scope.partition(":")
        if kind in _SCOPE_LABELS and value:
            labels[_SCOPE_LABELS[kind]] = value
    for name in ("index", "pid", "path", "client"):
        field = getattr(action, name, None)
        if field is not None:
            labels["cgroup" if name == "path" else name] = str(field)
    return labels


def spec_for(verify: Any, incident: Incident | None, action: Action) -> VerifySpec | None:
    """A VerifySpec from a spec, a playbook (its ``verify`` block) or None."""
    if verify is None or isinstance(verify, VerifySpec):
        return verify
    block = getattr(verify, "verify", verify)
    if block is None or getattr(verify, "rollback", "on_regression") == "never":
        return None
    detect = getattr(verify, "detect", None)  # a playbook: its kmsg signals feed quiet_kmsg
    signals = tuple(getattr(detect, "signals", ())) if detect is not None else ()
    return spec_from_playbook(block, labels_for(incident, action), signals)
