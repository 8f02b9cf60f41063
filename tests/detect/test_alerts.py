"""Alerts the fleet relays become incidents: a playbook's ``kind: alert`` claims its own,
the rest are unclassified; a resolved alert resolves its incident, after a restart too."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from healer.detect import Detector, IncidentTracker, MemorySink
from healer.fleet.wire import AlertIn, alert_fingerprint
from healer.models import Alert, IncidentStatus, Sample
from playbooks.errors import PlaybookError
from playbooks.loader import load_library
from tests.detect.fakes import FakeWindow

CGROUP_ALERT = {
    "id": "container-oom-alert", "title": "Container OOM kills, as Prometheus saw them",
    "severity": "critical", "description": "cAdvisor's OOM events for one cgroup.",
    "references": ["https://prometheus.io/docs/alerting/latest/alertmanager/"],
    "scope": "cgroup:{cgroup}",
    "detect": {"any": [{"kind": "alert", "alertname": "ContainerOOMKilled",
                        "labels": {"team": ["infra", "ml"]}}]},
}


def _library(tmp_path: Path, *playbooks: dict[str, object]) -> Path:
    for pb in playbooks:
        (tmp_path / f"{pb['id']}.yaml").write_text(yaml.safe_dump(pb))
    return tmp_path


def _alert(labels: dict[str, str], status: str = "firing") -> Alert:
    alert = AlertIn(labels=labels, status=status).alert()  # type: ignore[arg-type]
    assert alert is not None
    return alert


def _window() -> FakeWindow:
    window = FakeWindow()
    window.append(Sample(ts=100.0, metrics={}))
    return window


def test_a_playbooks_alert_signal_claims_a_matching_alert_in_the_scope_its_labels_name(
        tmp_path: Path) -> None:
    detector = Detector(load_library(_library(tmp_path, CGROUP_ALERT)))
    alert = _alert({"alertname": "ContainerOOMKilled", "team": "ml", "cgroup": "/jobs/train",
                    "instance": "gpu-7:8080"})
    event = detector.alert(alert, _window(), 100.0)
    assert (event.kind, event.playbook_id, event.scope) == ("fire", "container-oom-alert",
                                                            "cgroup:/jobs/train")
    assert event.subject == 'ContainerOOMKilled{cgroup="/jobs/train",team="ml"}'
    assert event.evidence.signals == {"alert:ContainerOOMKilled": 1.0}
    assert event.evidence.captures["instance"] == "gpu-7:8080"


@pytest.mark.parametrize("labels", [
    {"alertname": "ContainerOOMKilled", "team": "web", "cgroup": "/jobs/a"},  # another team
    {"alertname": "ContainerOOMKilled", "team": "ml"},  # no cgroup: no scope to act in
    {"alertname": "containeroomkilled", "team": "ml", "cgroup": "/jobs/a"},  # exact names
])
def test_an_alert_no_playbook_claims_is_unclassified_on_the_host(
        tmp_path: Path, labels: dict[str, str]) -> None:
    detector = Detector(load_library(_library(tmp_path, CGROUP_ALERT)))
    event = detector.alert(_alert(labels), _window(), 100.0)
    assert (event.playbook_id, event.scope) == ("unclassified", "host")
    assert event.subject == alert_fingerprint(labels)
    assert event.evidence.signals == {f"alert:{labels['alertname']}": 1.0}


def test_a_label_that_is_no_scope_never_becomes_a_path(tmp_path: Path) -> None:
    detector = Detector(load_library(_library(tmp_path, CGROUP_ALERT)))
    labels = {"alertname": "ContainerOOMKilled", "team": "ml", "cgroup": "/../../etc"}
    event = detector.alert(_alert(labels), _window(), 100.0)
    # As for a kernel line's captures: a malformed scope label falls back to the host.
    assert (event.playbook_id, event.scope) == ("container-oom-alert", "host")


def test_a_resolved_alert_resolves_its_incident_even_after_a_restart(tmp_path: Path) -> None:
    detector = Detector(load_library(_library(tmp_path, CGROUP_ALERT)))
    sink, now = MemorySink(), [100.0]
    labels = {"alertname": "DiskWillFill", "device": "sda", "instance": "h:9100"}
    tracker = IncidentTracker("h1", clock=lambda: now[0], clear_seconds=0, sink=sink)
    [opened] = tracker.apply([detector.alert(_alert(labels), _window(), now[0])])
    assert opened.kind == "opened" and opened.incident.from_alert
    assert opened.incident.fleet_fingerprint == 'DiskWillFill{device="sda"}'
    restarted = IncidentTracker("h1", clock=lambda: now[0], clear_seconds=0, sink=sink)
    now[0] = 160.0
    changes = restarted.apply([detector.alert(_alert(labels, "resolved"), _window(), now[0])])
    assert [c.kind for c in changes] == ["resolved"]
    assert sink.incidents[0].status == IncidentStatus.RESOLVED


def test_alert_signals_go_alone_under_any(tmp_path: Path) -> None:
    mixed = {**CGROUP_ALERT, "detect": {"any": [
        {"kind": "alert", "alertname": "X"},
        {"kind": "threshold", "metric": "load.1m", "op": "gt", "value": 1}]}}
    with pytest.raises(PlaybookError, match="alert signals go alone"):
        load_library(_library(tmp_path, mixed))


def test_alert_playbooks_never_evaluate_against_the_window(tmp_path: Path) -> None:
    library = load_library(_library(tmp_path, CGROUP_ALERT))
    detector = Detector(library)
    assert [pb.id for pb in detector.alert_playbooks] == ["container-oom-alert"]
    assert detector.playbooks == ()
    window = _window()
    assert detector.observe(window, window.samples[-1]) == []


def test_a_long_label_set_keeps_its_name_and_a_digest() -> None:
    labels = {"alertname": "Big", **{f"l{i}": "v" * 40 for i in range(20)}}
    fingerprint = alert_fingerprint(labels)
    assert fingerprint.startswith("Big{sha256:") and len(fingerprint) < 100
    assert alert_fingerprint({**labels, "instance": "other:1"}) == fingerprint
