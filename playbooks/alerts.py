"""Which playbook an Alertmanager alert belongs to: the first, in library order, with a
``kind: alert`` signal matching its ``alertname`` and labels (exact values: labels are
anyone's text). No match: the alert takes the unclassified path, like a kernel line no
playbook claims. The control plane names an alert's incident with it; the agent that
acts on the alert matches again with its own library (healer.detect.alerts)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from playbooks.schema import AlertSignal, Playbook


def match_alert(playbooks: Iterable[Playbook], alertname: str,
                labels: Mapping[str, str]) -> Playbook | None:
    """The first playbook with an alert signal matching this alert; None when none does."""
    return next((pb for pb in playbooks if any(
        isinstance(sig, AlertSignal) and sig.matches(alertname, labels)
        for sig in pb.detect.signals)), None)
