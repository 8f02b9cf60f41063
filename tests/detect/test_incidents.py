"""Incident lifecycle: fingerprints, storms, hysteresis, cool-off."""

from __future__ import annotations

from datetime import UTC, datetime

from healer.detect import DetectEvent, Detector, IncidentTracker, MemorySink, RepositorySink
from healer.models import ALERT_SIGNAL, Evidence, Incident, IncidentStatus, KmsgRecord, Sample
from playbooks.loader import load_library
from tests.detect.fakes import FakeWindow, kmsg_line

SOFT_LOCKUP = "watchdog: BUG: soft lockup - CPU#3 stuck for 23s! [stress:999]"
TABLE_FULL = "nf_conntrack: nf_conntrack: table full, dropping packet"  # one line, one event


class Clock:
    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def fire(ts: float, count: int = 1, scope: str = "host") -> DetectEvent:
    return DetectEvent("fire", "soft-lockup", scope, "critical", Evidence(), count, ts)


def clear(ts: float, scope: str = "host") -> DetectEvent:
    return DetectEvent("clear", "soft-lockup", scope, "critical", Evidence(), 0, ts)


def test_storm_of_10000_identical_lines_is_one_incident_with_count_10000() -> None:
    detector = Detector(load_library())
    sink = MemorySink()
    tracker = IncidentTracker("h1", clock=lambda: 10.0, sink=sink)
    window = FakeWindow()
    lines = tuple(kmsg_line(TABLE_FULL, seq=i) for i in range(10_000))
    sample = Sample(ts=10.0, metrics={}, kmsg=lines)
    window.append(sample)
    events = detector.observe(window, sample)
    changes = tracker.apply(events)
    assert [e.count for e in events] == [10_000]
    assert [c.kind for c in changes] == ["opened"]
    assert [(i.playbook, i.count) for i in sink.incidents] == [("conntrack-table-full", 10_000)]


def test_storm_of_10000_one_line_reports_is_one_incident_counting_each_report() -> None:
    detector = Detector(load_library())
    sink = MemorySink()
    clock = Clock()
    tracker = IncidentTracker("h1", clock=clock, sink=sink)
    window = FakeWindow()
    # Each soft-lockup line starts a new report (the last one closes on 2 s of silence).
    lines = tuple(KmsgRecord(seq=i, priority=0, ts_us=i * 1000, message=SOFT_LOCKUP)
                  for i in range(10_000))
    for ts, batch in ((10.0, lines), (13.0, ())):
        clock.now = ts
        sample = Sample(ts=ts, metrics={}, kmsg=batch)
        window.append(sample)
        tracker.apply(detector.observe(window, sample))
    assert [(i.playbook, i.count) for i in sink.incidents] == [("soft-lockup", 10_000)]


def test_storm_spread_over_cycles_updates_one_incident_and_counts_every_line() -> None:
    detector = Detector(load_library())
    sink = MemorySink()
    clock = Clock()
    tracker = IncidentTracker("h1", clock=clock, sink=sink)
    window = FakeWindow()
    kinds = []
    seq = 0
    for ts, n in ((1.0, 4000), (2.0, 3000), (3.0, 0), (4.0, 3000)):
        clock.now = ts
        lines = tuple(kmsg_line(TABLE_FULL, seq=seq + i) for i in range(n))
        seq += n
        sample = Sample(ts=ts, metrics={}, kmsg=lines)
        window.append(sample)
        kinds += [c.kind for c in tracker.apply(detector.observe(window, sample))]
    assert kinds == ["opened", "updated", "updated"]
    assert len(sink.incidents) == 1 and sink.incidents[0].count == 10_000


def test_repeats_update_count_and_last_seen_never_open_another() -> None:
    tracker = IncidentTracker("h1", clock=lambda: 3.0)
    a = tracker.apply([fire(1.0, 2)])[0].incident
    b = tracker.apply([fire(3.0, 5)])[0]
    assert b.kind == "updated" and b.incident.id == a.id
    assert b.incident.count == 7 and b.incident.last_seen.timestamp() == 3.0
    assert b.incident.first_seen.timestamp() == 1.0


def test_incident_resolves_only_after_signals_stay_clear_for_the_hysteresis_period() -> None:
    clock = Clock(1.0)
    tracker = IncidentTracker("h1", clock=clock, clear_seconds=30)
    tracker.apply([fire(1.0)])
    clock.now = 5.0
    assert tracker.apply([clear(5.0)]) == []
    clock.now = 34.0
    assert tracker.apply([]) == []
    clock.now = 35.0
    [change] = tracker.apply([])
    assert change.kind == "resolved" and change.incident.status == IncidentStatus.RESOLVED


def test_firing_again_before_clear_period_cancels_resolution() -> None:
    clock = Clock(1.0)
    tracker = IncidentTracker("h1", clock=clock, clear_seconds=30)
    tracker.apply([fire(1.0)])
    clock.now = 5.0
    tracker.apply([clear(5.0)])
    clock.now = 20.0
    tracker.apply([fire(20.0)])
    clock.now = 60.0
    assert tracker.apply([]) == []


def test_refiring_within_cooloff_reopens_the_same_incident() -> None:
    clock = Clock(0.0)
    tracker = IncidentTracker("h1", clock=clock, clear_seconds=10, cooloff_seconds=300)
    first = tracker.apply([fire(0.0, 3)])[0].incident
    tracker.apply([clear(1.0)])
    clock.now = 11.0
    assert tracker.apply([])[0].kind == "resolved"
    clock.now = 100.0
    [change] = tracker.apply([fire(100.0, 2)])
    assert change.kind == "reopened" and change.incident.id == first.id
    assert change.incident.status == IncidentStatus.OPEN and change.incident.count == 5


def test_refiring_after_cooloff_opens_a_new_incident() -> None:
    clock = Clock(0.0)
    sink = MemorySink()
    tracker = IncidentTracker("h1", clock=clock, clear_seconds=10, cooloff_seconds=60, sink=sink)
    first = tracker.apply([fire(0.0)])[0].incident
    tracker.apply([clear(1.0)])
    clock.now = 11.0
    tracker.apply([])
    clock.now = 500.0
    tracker.apply([])
    [change] = tracker.apply([fire(500.0)])
    assert change.kind == "opened" and change.incident.id != first.id
    assert len(sink.incidents) == 2


def test_scopes_are_separate_fingerprints() -> None:
    tracker = IncidentTracker("h1", clock=lambda: 1.0)
    kinds = [c.kind for c in tracker.apply([fire(1.0, scope="host"), fire(1.0, scope="gpu:0")])]
    assert kinds == ["opened", "opened"]


def test_an_open_incident_in_the_store_is_continued_after_restart() -> None:
    sink = MemorySink()
    IncidentTracker("h1", clock=lambda: 1.0, sink=sink).apply([fire(1.0, 4)])
    [change] = IncidentTracker("h1", clock=lambda: 2.0, sink=sink).apply([fire(2.0, 1)])
    assert change.kind == "updated" and change.incident.count == 5 and len(sink.incidents) == 1


class FakeRepo:
    def __init__(self) -> None:
        self.sink = MemorySink()
        self.calls: list[str] = []

    def find_incident(self, playbook: str, scope: str, *, subject: str = "",
                      status: IncidentStatus | None = None) -> Incident | None:
        self.calls.append("find")
        return self.sink.find(playbook, scope, subject)

    def open_incident(self, incident: Incident) -> Incident:
        self.calls.append("open")
        return self.sink.open(incident)

    def update_incident(self, incident: Incident) -> Incident:
        self.calls.append("update")
        return self.sink.update(incident)


def test_the_store_repository_can_be_passed_directly_as_the_sink() -> None:
    repo = FakeRepo()
    tracker = IncidentTracker("h1", clock=lambda: 1.0, sink=repo)
    tracker.apply([fire(1.0)])
    assert repo.calls == ["find", "open"] and len(repo.sink.incidents) == 1


def test_repository_sink_uses_the_store_method_names() -> None:
    repo = FakeRepo()
    tracker = IncidentTracker("h1", clock=lambda: 1.0, sink=RepositorySink(repo))
    tracker.apply([fire(1.0)])
    tracker.apply([fire(2.0)])
    assert repo.calls == ["find", "open", "update"]


def left_open(sink: MemorySink, at: float) -> Incident:
    """An incident a previous run opened and never saw clear (it stopped before)."""
    return IncidentTracker("h1", clock=lambda: at, sink=sink).apply([fire(at, 2)])[0].incident


def restarted(sink: MemorySink, at: float) -> tuple[IncidentTracker, Clock]:
    """The next run's tracker, started at ``at`` on what ``sink`` holds, and its clock."""
    clock = Clock(at)
    tracker = IncidentTracker("h1", clock=clock, clear_seconds=30, sink=sink)
    tracker.resume(sink.incidents)
    return tracker, clock


def test_an_incident_left_open_by_a_restart_resolves_when_it_never_fires_again() -> None:
    sink = MemorySink()
    before = left_open(sink, 1.0)
    tracker, clock = restarted(sink, 100.0)
    assert tracker.apply([]) == []
    clock.now = 129.0
    assert tracker.apply([]) == []
    clock.now = 130.0
    [change] = tracker.apply([])
    assert change.kind == "resolved" and change.incident.id == before.id
    assert sink.incidents[0].status == IncidentStatus.RESOLVED


def test_an_incident_left_open_that_still_fires_stays_the_same_open_incident() -> None:
    sink = MemorySink()
    before = left_open(sink, 1.0)
    tracker, clock = restarted(sink, 100.0)
    [change] = tracker.apply([fire(100.0)])  # the detector's first cycle: still there
    assert change.kind == "updated" and change.incident.id == before.id
    assert change.incident.count == 3
    clock.now = 1000.0
    assert tracker.apply([fire(1000.0)])[0].kind == "updated"  # never resolved meanwhile
    assert len(sink.incidents) == 1


def test_resume_leaves_alert_incidents_resolved_ones_and_other_hosts_alone() -> None:
    sink = MemorySink()
    t0 = datetime.fromtimestamp(1.0, tz=UTC)
    sink.open(Incident(host_id="h1", playbook="unclassified", scope="host",
                       subject="NodeDown|job=node", first_seen=t0, last_seen=t0,
                       evidence=Evidence(signals={f"{ALERT_SIGNAL}NodeDown": 1.0})))
    sink.open(Incident(host_id="h2", playbook="soft-lockup", scope="host",
                       first_seen=t0, last_seen=t0))
    sink.open(Incident(host_id="h1", playbook="soft-lockup", scope="gpu:0",
                       status=IncidentStatus.RESOLVED, first_seen=t0, last_seen=t0))
    tracker, clock = restarted(sink, 100.0)
    clock.now = 1000.0
    assert tracker.apply([]) == []  # nothing taken up: nothing to resolve
    assert [i.status for i in sink.incidents] == [
        IncidentStatus.OPEN, IncidentStatus.OPEN, IncidentStatus.RESOLVED]
