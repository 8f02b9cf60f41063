"""Resolve a playbook's verify block for one incident and action into a concrete VerifySpec.

Playbook metric names may hold ``{label}`` placeholders (``gpu.{index}.temperature_celsius``);
they are filled from the incident's scope and captures and the action's own fields.
"""

from __future__ import annotations

from guardrails.actions import Action
from healer.models import Incident, Slo, VerifySpec
from healer.verify.spec import spec_from_playbook
from playbooks.schema import Playbook

_SCOPE_LABELS = {"gpu": "index", "pid": "pid", "cgroup": "cgroup", "netns": "netns"}


def labels_for(incident: Incident | None, action: Action | None) -> dict[str, str]:
    """Placeholder values: the action's fields win over the incident's scope and captures."""
    labels: dict[str, str] = {}
    if incident is not None:
        labels.update(incident.evidence.captures)
        labels.update(_scope_labels(incident.scope))
    if action is None:
        return labels
    labels.update(_scope_labels(action.scope))
    fields = action.model_dump()
    for name in ("index", "pid", "path", "client"):
        if fields.get(name) is not None:
            labels["cgroup" if name == "path" else name] = str(fields[name])
    if isinstance(fields.get("index"), int):
        labels["gpu"] = labels["index"]  # playbooks spell the GPU index {gpu} (detect captures)
    return labels


def _scope_labels(scope: str) -> dict[str, str]:
    """``gpu:0`` -> {index: 0, gpu: 0}; ``pid:42`` -> {pid: 42}; unknown kinds -> {}."""
    kind, _, value = scope.partition(":")
    if kind not in _SCOPE_LABELS or not value:
        return {}
    out = {_SCOPE_LABELS[kind]: value}
    if kind == "gpu":
        out["gpu"] = value
    return out


def spec_for(verify: Playbook | VerifySpec | None, incident: Incident | None,
             action: Action | None, slos: tuple[Slo, ...] = ()) -> VerifySpec | None:
    """A VerifySpec from a spec, a playbook (its ``verify`` block) or None; ``slos``: the
    operator's declared objectives, for a ``verify`` block that says ``slo: true``. With no
    action, the names come from the incident alone (what its changes would be judged on)."""
    if verify is None or isinstance(verify, VerifySpec):
        return verify
    if verify.verify is None or verify.rollback == "never":
        return None
    # The playbook's kmsg signals say what the symptom looks like (quiet_kmsg).
    return spec_from_playbook(verify.verify, labels_for(incident, action),
                              verify.detect.signals, slos)
