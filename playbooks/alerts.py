"""Which playbook an Alertmanager alert belongs to: its ``kind: alert`` signals, by
``alertname`` and label globs (RE2: label values are anyone's text). No match: the alert
takes the unclassified path, like a kernel line no playbook claims."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from guardrails import linear
from playbooks.schema import AlertSignal, Playbook


def _matches(signal: AlertSignal, alertname: str, labels: Mapping[str, str]) -> bool:
    if signal.alertname != alertname:
        return False
    return all(k in labels and linear.glob(glob).fullmatch(labels[k]) is not None
               for k, glob in signal.labels.items())


def match_alert(playbooks: Iterable[Playbook], alertname: str,
                labels: Mapping[str, str]) -> Playbook | None:
    """The highest-priority playbook with an alert signal matching this alert (the first
    in library order among equals); None when no playbook claims it."""
    best: Playbook | None = None
    for pb in playbooks:
        if any(_matches(sig, alertname, labels) for sig in pb.detect.alerts) and (
                best is None or pb.priority > best.priority):
            best = pb
    return best
