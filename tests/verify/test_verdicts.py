"""Three verdicts: fixed, insufficient (the symptom goes on, no worse) and regressed; the
symptom's baseline starts at its onset; a symptom line's numeric captures are evidence."""

from __future__ import annotations

from datetime import UTC, datetime

from guardrails.actions import CgroupLimit
from healer.models import Incident
from healer.verify import VerifySpec, evaluate, kmsg_baseline, summarize_baseline
from healer.verify.labels import spec_for
from playbooks.loader import load_library

from .test_compare import T0, Series, counter, flat
from .test_quiet import T0 as KT0
from .test_quiet import Kmsg, _lines

OVERFLOWS = "net.tcp.listen_overflows_total"
SPEC = VerifySpec(metric=OVERFLOWS, direction="to_zero", window_seconds=10, settle_seconds=1)


def _judge(series: Series, now: float):  # type: ignore[no-untyped-def]
    return evaluate(SPEC, summarize_baseline(SPEC, series, T0), series, T0, now)


def test_a_symptom_that_goes_on_at_a_lower_rate_is_insufficient_early_with_its_numbers() -> None:
    series = Series(net__tcp__listen_overflows_total=counter(50, T0 - 30, T0)
                    + counter(20, T0 + 1, T0 + 4, base=1500.0))
    result = _judge(series, T0 + 4)
    assert result.verdict == "insufficient", result.reasons
    assert "symptom continues" in result.reasons[0]
    assert result.numbers["target.after_max"] == 20.0  # the shortfall evidence: drops per s


def test_one_straggler_after_the_change_is_not_yet_a_verdict() -> None:
    after = [(T0 + 1, 1500.0), (T0 + 2, 1510.0), (T0 + 3, 1510.0), (T0 + 4, 1510.0)]
    series = Series(net__tcp__listen_overflows_total=counter(50, T0 - 30, T0) + after)
    assert _judge(series, T0 + 4).verdict is None


def test_a_symptom_that_looks_worse_early_is_judged_worse_only_on_a_full_window() -> None:
    series = Series(net__tcp__listen_overflows_total=counter(5, T0 - 30, T0)
                    + counter(200, T0 + 1, T0 + 12, base=150.0))
    assert _judge(series, T0 + 4).verdict is None
    full = _judge(series, T0 + 12)
    assert full.verdict == "regressed" and "got worse" in full.reasons[0]


def test_the_symptoms_baseline_starts_at_its_onset() -> None:
    # Quiet until 2 s before the write, then 30 a second: before the onset is not "before".
    ramp = flat(0.0, T0 - 30, T0 - 3) + counter(30, T0 - 2, T0)
    series = Series(net__tcp__listen_overflows_total=ramp
                    + counter(30, T0 + 1, T0 + 12, base=60.0))
    baseline = summarize_baseline(SPEC, series, T0)
    assert OVERFLOWS not in baseline  # 2 symptom points: too few to say what "before" was
    result = evaluate(SPEC, baseline, series, T0, T0 + 12)
    assert result.verdict == "insufficient", result.reasons  # not "worse than 0"
    longer = Series(net__tcp__listen_overflows_total=flat(0.0, T0 - 30, T0 - 9)
                    + counter(30, T0 - 8, T0))
    summary = summarize_baseline(SPEC, longer, T0)[OVERFLOWS]
    assert (summary.n, summary.median) == (8.0, 30.0)


def test_oom_lines_after_a_raise_are_insufficient_and_carry_the_killed_tasks_rss() -> None:
    pb = load_library().get("cgroup-memory-limit-too-low")
    action = CgroupLimit(scope="cgroup:/healer-chaos-1/oom", path="/healer-chaos-1/oom",
                         knob="memory.max", value=str(200 * 2**20))
    assert pb is not None
    now = datetime.now(UTC)
    incident = Incident(host_id="h", playbook=pb.id, scope=action.scope, first_seen=now,
                        last_seen=now)
    spec = spec_for(pb, incident, action)
    assert spec is not None
    lines = _lines("kmsg-memcg-oom.txt")
    kmsg = Kmsg()
    kmsg.arrive(KT0 - 4, lines[4:])  # the OOM kill that opened the incident, in our cgroup
    before = kmsg_baseline(spec, kmsg)
    assert before == 1 / spec.window_seconds
    kmsg.arrive(KT0 + 5, [r.model_copy(update={"seq": r.seq + 100}) for r in lines[4:]])
    kmsg.now = KT0 + 6
    result = evaluate(spec, {}, Series(), KT0, kmsg.now, kmsg=kmsg, kmsg_before=before)
    assert result.verdict == "insufficient", result.reasons
    assert result.numbers["kmsg.max.anon_rss_kb"] == 101000.0
    assert result.numbers["kmsg.new_matches"] == 1.0



def test_after_a_capacity_raise_a_symptom_at_a_higher_rate_is_still_insufficient() -> None:
    # 5 refused forks a second before, 90 after: the pool got further, the raise did not
    # cause the refusals. Only a guard can call a raise a regression.
    raised = SPEC.model_copy(update={"capacity": True})
    series = Series(net__tcp__listen_overflows_total=counter(5, T0 - 30, T0)
                    + counter(90, T0 + 1, T0 + 12, base=150.0))
    baseline = summarize_baseline(raised, series, T0)
    assert evaluate(raised, baseline, series, T0, T0 + 4).verdict == "insufficient"
    full = evaluate(raised, baseline, series, T0, T0 + 12)
    assert full.verdict == "insufficient" and full.numbers["target.after_median"] == 90.0
    assert _judge(series, T0 + 12).verdict == "regressed"  # the same, not a raise
