"""pids-limit-too-low verifies on the rate of the cgroup's refused-fork counter.

The kernel logs "fork rejected by pids controller" once per cgroup (kernel/cgroup/pids.c),
so a quiet kernel log cannot tell a fix from a failure; pids.events "max" can.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from guardrails.actions import CgroupLimit
from healer.models import Evidence, Incident
from healer.verify import VerifySpec, evaluate
from healer.verify.compare import SeriesFn, summarize_baseline
from healer.verify.labels import spec_for
from playbooks.loader import load_library

T0 = 1_750_000_000.0  # the change was applied at T0
CG = "/healer-chaos-1/fork"
METRIC = f"cgroup.{CG}.pids.events_max_total"


@pytest.fixture
def spec() -> VerifySpec:
    now = datetime.now(UTC)
    incident = Incident(host_id="h", playbook="pids-limit-too-low", scope=f"cgroup:{CG}",
                        first_seen=now, last_seen=now, evidence=Evidence(captures={"cgroup": CG}))
    action = CgroupLimit(scope=f"cgroup:{CG}", path=CG, knob="pids.max", value="64")
    playbook = load_library().get("pids-limit-too-low")
    got = spec_for(playbook, incident, action)
    assert got is not None
    return got


def _series(refused_after: float) -> list[tuple[float, float]]:
    """1 Hz counter: 12 refused forks a second before T0, ``refused_after`` a second after."""
    pts, value = [], 0.0
    for i in range(-60, 61):
        value += 12.0 if i <= 0 else refused_after
        pts.append((T0 + i, value))
    return pts


def _fn(points: list[tuple[float, float]]) -> SeriesFn:
    def series(name: str, since: float, until: float) -> list[tuple[float, float]]:
        assert name == METRIC
        return [(t, v) for t, v in points if since <= t <= until]
    return series


def test_the_templated_counter_resolves_to_the_actions_cgroup(spec: VerifySpec) -> None:
    assert spec.metric == METRIC
    assert (spec.direction, spec.rate) == ("to_zero", True)
    assert spec.quiet_kmsg == ()  # the kernel would not log a second rejection
    assert VerifySpec.model_validate(spec.model_dump(mode="json")) == spec


def test_refusals_stopping_passes_after_a_full_window(spec: VerifySpec) -> None:
    series = _fn(_series(0.0))
    baseline = summarize_baseline(spec, series, T0)
    assert baseline[METRIC].median == pytest.approx(12.0)
    early = evaluate(spec, baseline, series, T0, T0 + spec.settle_seconds + 1)
    assert early.verdict is None  # not a full window yet
    now = T0 + spec.settle_seconds + spec.window_seconds
    result = evaluate(spec, baseline, series, T0, now)
    assert result.verdict == "fixed", result.reasons
    assert result.numbers["target.after_max"] == 0.0


def test_refusals_going_on_are_insufficient_and_more_of_them_regress(spec: VerifySpec) -> None:
    now = T0 + spec.settle_seconds + spec.window_seconds
    slower = _fn(_series(2.0))  # fewer, but still refused: not fixed, not worse
    base = summarize_baseline(spec, slower, T0)
    early = evaluate(spec, base, slower, T0, T0 + spec.settle_seconds + 3)
    assert early.verdict == "insufficient", early.reasons  # told after min_samples points
    assert "symptom continues" in early.reasons[0]
    assert evaluate(spec, base, slower, T0, now).verdict == "insufficient"
    worse = _fn(_series(40.0))  # the change made it worse: roll back
    result = evaluate(spec, summarize_baseline(spec, worse, T0), worse, T0, now)
    assert result.verdict == "regressed" and "got worse" in result.reasons[0]
