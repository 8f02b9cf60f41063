"""Alerts relayed by the fleet's control plane, as detection events like any other.

An Alertmanager alert about this host (healer.fleet) opens, updates or resolves an
incident through the same tracker as a playbook's signals. The first playbook with a
``kind: alert`` signal matching the alert's name and labels claims it (its scope may take
a label: ``cgroup:{cgroup}``); no playbook, and the incident is unclassified. Either way
the incident's subject is the alert's fleet fingerprint (its name and every label but
``instance``), which makes it one incident per alert and groups it across the fleet. The
labels are untrusted: they are compared for equality and kept as the evidence's captures,
never matched with patterns.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Literal

from healer.detect.events import DetectEvent
from healer.detect.evidence import MAX_CAPTURE_CHARS, ReadCgroup, ReadSysctl, gather
from healer.detect.signals import Hit, MetricIndex
from healer.detect.view import WindowView
from healer.models import ALERT_SIGNAL, UNCLASSIFIED, Alert, Evidence
from playbooks.schema import SEVERITY_RANK, AlertSignal, Playbook

ScopeOf = Callable[[Playbook, Mapping[str, str]], "str | None"]  # Detector._scope


def alert_event(alert: Alert, playbooks: Iterable[Playbook], scope_of: ScopeOf,
                window: WindowView, index: MetricIndex, read_sysctl: ReadSysctl | None,
                read_cgroup: ReadCgroup | None, now: float) -> DetectEvent:
    """The ``fire`` (firing) or ``clear`` (resolved) event of ``alert``."""
    kind: Literal["fire", "clear"] = "fire" if alert.status == "firing" else "clear"
    captures = {k: v[:MAX_CAPTURE_CHARS] for k, v in alert.labels.items()}
    for pb in playbooks:
        signal = next((s for s in pb.detect.signals if isinstance(s, AlertSignal)
                       and s.matches(alert.alertname, alert.labels)), None)
        scope = scope_of(pb, captures) if signal is not None else None
        if signal is None or scope is None:
            continue
        evidence = gather(pb, scope, [(signal, Hit(1.0, captures))], window, index, (), (),
                          read_sysctl, read_cgroup) if kind == "fire" else Evidence()
        return DetectEvent(kind, pb.id, scope, pb.severity, evidence, 1, now,
                           alert.fleet_fingerprint)
    evidence = Evidence(signals={f"{ALERT_SIGNAL}{alert.alertname}": 1.0}, captures=captures)
    return DetectEvent(kind, UNCLASSIFIED, "host", _severity(alert.labels.get("severity")),
                       evidence if kind == "fire" else Evidence(), 1, now,
                       alert.fleet_fingerprint)


def _severity(label: str | None) -> str:
    """The alert's ``severity`` label when it is one of ours, else warning."""
    return label if label in SEVERITY_RANK else "warning"
