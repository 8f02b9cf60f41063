"""Signal kinds: threshold hold and hysteresis, baseline, absence, rates."""

from __future__ import annotations

from typing import Any

from healer.detect import Detector
from healer.models import Sample
from playbooks.schema import Playbook
from tests.detect.fakes import FakeWindow


def playbook(signal: dict[str, Any], **extra: Any) -> Playbook:
    return Playbook.model_validate({
        "id": "test-class", "title": "t", "severity": "warning", "description": "d",
        "references": ["https://example.org/doc"], "detect": {"any": [signal]}, **extra})


def kinds(pb: Playbook, values: list[float | None], metric: str = "m.x") -> list[str]:
    """Feed one value per second; returns the event kinds per second ('' for none)."""
    detector = Detector([pb], refresh_seconds=1000)
    window = FakeWindow()
    out = []
    for t, v in enumerate(values):
        sample = Sample(ts=float(t), metrics={} if v is None else {metric: v})
        window.append(sample)
        out.append(",".join(e.kind for e in detector.observe(window, sample)))
    return out


THRESHOLD = {"kind": "threshold", "metric": "m.x", "op": "gt", "value": 10, "for_seconds": 2,
             "clear_value": 5, "clear_for_seconds": 2}


def test_threshold_fires_only_after_holding_for_its_duration() -> None:
    assert kinds(playbook(THRESHOLD), [20, 20, 1, 20, 20, 20]) == ["", "", "", "", "", "fire"]


def test_threshold_clears_only_below_clear_value_for_clear_duration() -> None:
    seq = [20, 20, 20, 8, 8, 8, 8, 4, 4, 4]
    assert kinds(playbook(THRESHOLD), seq) == ["", "", "fire", "", "", "", "", "", "", "clear"]


def test_ratio_threshold_divides_by_the_named_metric() -> None:
    pb = playbook({"kind": "threshold", "metric": "a.used", "divide_by": "a.max", "op": "ge",
                   "value": 0.9})
    detector = Detector([pb])
    window = FakeWindow()
    sample = Sample(ts=0.0, metrics={"a.used": 95.0, "a.max": 100.0})
    window.append(sample)
    [event] = detector.observe(window, sample)
    assert event.evidence.signals == {"threshold:a.used": 0.95}


def test_baseline_needs_min_history_before_it_may_fire() -> None:
    pb = playbook({"kind": "baseline", "metric": "m.x", "method": "mad", "k": 4,
                   "min_history": 20})
    assert "fire" not in kinds(pb, [10.0] * 5 + [1000.0])


def test_baseline_fires_on_a_deviation_from_the_learned_level() -> None:
    for method in ("ewma", "mad"):
        pb = playbook({"kind": "baseline", "metric": "m.x", "method": method, "k": 4,
                       "min_history": 20})
        noise = [10.0 + (i % 3) for i in range(40)]
        assert kinds(pb, noise)[-1] == ""
        assert kinds(pb, [*noise, 60.0])[-1] == "fire", method


def test_absent_fires_once_a_metric_is_missing_for_its_duration() -> None:
    pb = playbook({"kind": "absent", "metric": "m.x", "seconds": 3})
    out = kinds(pb, [1.0, 1.0, 1.0, 1.0, None, None, None, None])
    assert out.index("fire") == 7


def test_absent_does_not_fire_on_a_young_window() -> None:
    assert "fire" not in kinds(playbook({"kind": "absent", "metric": "m.x", "seconds": 5}),
                               [None, None, None])


def test_rate_fires_on_a_growing_counter_and_clears_when_it_stops() -> None:
    pb = playbook({"kind": "rate", "metric": "m.x", "seconds": 2, "gt": 0})
    out = kinds(pb, [0, 0, 5, 10, 10, 10, 10])
    assert out == ["", "", "fire", "", "", "clear", ""]


def test_metric_playbook_refreshes_its_incident_while_it_keeps_firing() -> None:
    pb = playbook({"kind": "threshold", "metric": "m.x", "op": "gt", "value": 1})
    detector = Detector([pb], refresh_seconds=5)
    window = FakeWindow()
    fired = []
    for t in range(12):
        sample = Sample(ts=float(t), metrics={"m.x": 2.0})
        window.append(sample)
        fired += [t for e in detector.observe(window, sample) if e.kind == "fire"]
    assert fired == [0, 5, 10]


def test_sysctl_values_are_read_into_evidence_with_the_incident_scope() -> None:
    reads: list[tuple[str, str]] = []

    def read_sysctl(scope: str, key: str) -> str:
        reads.append((scope, key))
        return "16\n"
    pb = playbook({"kind": "threshold", "metric": "m.x", "op": "gt", "value": 1}, scope="net",
                  evidence={"sysctls": ["net.core.somaxconn"]})
    detector = Detector([pb], net_scope="netns:t1", read_sysctl=read_sysctl)
    window = FakeWindow()
    sample = Sample(ts=0.0, metrics={"m.x": 2.0})
    window.append(sample)
    [event] = detector.observe(window, sample)
    assert event.scope == "netns:t1" and event.evidence.tunables == {"net.core.somaxconn": "16"}
    assert reads == [("netns:t1", "net.core.somaxconn")]
