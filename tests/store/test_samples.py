"""Rollup math, metric series from raw and rolled-up samples, and retention."""

from __future__ import annotations

from datetime import timedelta

import pytest

from healer.models import ActionState, Sample
from healer.store.repository import Repository
from healer.store.rollup import RollupAccumulator
from healer.store.rows import Rollup
from healer.store.tables import METRIC_NAME_LEN

from .conftest import T0, make_incident, make_record

BASE = T0.timestamp()  # 12:00:00, a minute boundary


def _sample(offset: float, **metrics: float) -> Sample:
    return Sample(ts=BASE + offset, metrics={k.replace("_", "."): v for k, v in metrics.items()})


def test_rollup_emits_min_max_avg_last_count_when_the_minute_changes() -> None:
    acc = RollupAccumulator()
    assert acc.add(_sample(0, load_1m=2.0, mem_free=10.0)) == []
    assert acc.add(_sample(20, load_1m=6.0)) == []
    assert acc.add(_sample(59.9, load_1m=1.0, mem_free=float("nan"))) == []
    rows = acc.add(_sample(60, load_1m=9.0))
    by_name = {r.name: r for r in rows}
    assert by_name["load.1m"] == Rollup(
        name="load.1m", minute=T0, min=1.0, max=6.0, avg=3.0, last=1.0, count=3
    )
    assert by_name["mem.free"].count == 1  # NaN is skipped, not averaged
    (tail,) = acc.flush()
    assert (tail.minute, tail.avg, tail.count) == (T0 + timedelta(minutes=1), 9.0, 1)
    assert acc.flush() == []


def test_rollups_for_the_same_minute_merge_after_a_restart(repo: Repository) -> None:
    first = Rollup(name="load.1m", minute=T0, min=1.0, max=3.0, avg=2.0, last=3.0, count=2)
    second = Rollup(name="load.1m", minute=T0, min=0.5, max=2.0, avg=1.0, last=0.5, count=2)
    repo.add_rollups([first])
    repo.add_rollups([second])
    series = repo.metric_series("load.1m", T0, T0 + timedelta(minutes=1))
    assert series == [(BASE, pytest.approx(1.5))]


def test_rollups_for_the_same_minute_in_one_batch_merge_into_one_row(repo: Repository) -> None:
    first = Rollup(name="load.1m", minute=T0, min=1.0, max=3.0, avg=2.0, last=3.0, count=2)
    second = Rollup(name="load.1m", minute=T0, min=0.5, max=2.0, avg=1.0, last=0.5, count=2)
    repo.add_rollups([first, second])
    series = repo.metric_series("load.1m", T0, T0 + timedelta(minutes=1))
    assert series == [(BASE, pytest.approx(1.5))]


def test_series_prefers_raw_points_and_fills_other_minutes_from_rollups(repo: Repository) -> None:
    repo.add_rollups(
        [
            Rollup(name="m", minute=T0, min=1, max=1, avg=1.0, last=1, count=60),
            Rollup(
                name="m", minute=T0 + timedelta(minutes=1), min=1, max=9, avg=5.0, last=9, count=60
            ),
        ]
    )
    raw = [_sample(60, m=2.0), _sample(61, m=3.0)]
    repo.add_raw_samples(raw)
    repo.add_raw_samples(raw)  # overlapping incidents store the same points once
    assert repo.metric_series("m", T0, T0 + timedelta(minutes=5)) == [
        (BASE, 1.0),
        (BASE + 60, 2.0),
        (BASE + 61, 3.0),
    ]
    assert repo.metric_series("other", T0, T0 + timedelta(minutes=5)) == []
    assert repo.metric_series("m", T0 + timedelta(seconds=61), T0 + timedelta(minutes=5)) == [
        (BASE + 61, 3.0)
    ]


def test_prune_drops_old_metrics_and_notifications_but_keeps_the_record(
    repo: Repository,
) -> None:
    inc = repo.open_incident(make_incident())
    rec = repo.add_action(make_record(incident_id=inc.id, state=ActionState.AWAITING_APPROVAL))
    repo.add_rollups([Rollup(name="m", minute=T0, min=1, max=1, avg=1, last=1, count=1)])
    repo.add_raw_samples([_sample(0, m=1.0)])
    repo.enqueue_notification("log", "e", {}, "old")
    (note,) = repo.due_notifications(T0)
    repo.mark_delivered(note.id, T0)
    repo.enqueue_notification("log", "e", {}, "pending")
    repo.kv_put("llm", "k", "v", ttl_seconds=5)

    later = T0 + timedelta(days=15)
    assert repo.prune(later, rollup_days=14, raw_minutes=60) == 4
    assert repo.metric_series("m", T0 - timedelta(days=1), later) == []
    assert [n.dedupe_key for n in repo.due_notifications(later)] == ["pending"]
    assert repo.get_incident(inc.id or 0) is not None
    assert repo.get_action(rec.id or 0) is not None
    assert repo.list_audit() != []
    assert repo.prune(later, rollup_days=14, raw_minutes=60) == 0


def test_prune_keeps_raw_samples_inside_the_raw_window(repo: Repository) -> None:
    repo.add_raw_samples([_sample(0, m=1.0), _sample(3000, m=2.0)])
    assert repo.prune(T0 + timedelta(minutes=70), rollup_days=14, raw_minutes=60) == 1
    assert repo.metric_series("m", T0, T0 + timedelta(hours=2)) == [(BASE + 3000, 2.0)]


def test_metric_names_of_deep_cgroups_are_stored(repo: Repository) -> None:
    # Two levels of systemd/kubelet names: well past 200 characters, well within the limit.
    name = ("cgroup./kubepods.slice/kubepods-burstable-pod" + "0f" * 60 + ".slice/"
            + "cri-containerd-" + "ab" * 32 + ".scope.memory.current_bytes")
    assert 200 < len(name) <= METRIC_NAME_LEN
    repo.add_rollups([Rollup(name=name, minute=T0, min=1, max=1, avg=1.0, last=1, count=1)])
    repo.add_raw_samples([Sample(ts=BASE + 60, metrics={name: 2.0})])
    assert repo.metric_series(name, T0, T0 + timedelta(minutes=5)) == [(BASE, 1.0),
                                                                       (BASE + 60, 2.0)]


def test_a_metric_name_past_the_limit_is_left_out_and_the_rest_stored(
        repo: Repository, caplog: pytest.LogCaptureFixture) -> None:
    long = "textfile.app_info.path_" + "x" * METRIC_NAME_LEN
    repo.add_rollups([Rollup(name=n, minute=T0, min=1, max=1, avg=1.0, last=1, count=1)
                      for n in (long, "load.1m")])
    repo.add_raw_samples([Sample(ts=BASE + 60, metrics={long: 2.0, "load.1m": 3.0})])
    assert repo.metric_series("load.1m", T0, T0 + timedelta(minutes=5)) == [(BASE, 1.0),
                                                                            (BASE + 60, 3.0)]
    assert repo.metric_series(long, T0, T0 + timedelta(minutes=5)) == []
    assert "metric names longer than" in caplog.text
