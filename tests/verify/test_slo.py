"""Operator SLOs: parsed from Settings, resolved into the spec, judged over the after-window."""

from __future__ import annotations

import pytest

from healer.errors import ConfigError
from healer.models import Slo
from healer.settings import load_settings
from healer.verify import VerifySpec, evaluate, spec_from_playbook, summarize_baseline
from healer.verify.slo import parse_slos
from playbooks.loader import load_library
from tests.verify.test_compare import T0, Series, flat

P95 = "textfile.chaos_latency_p95_seconds"
GOAL = "textfile.chaos_latency_slo_seconds"
SLOS = parse_slos([f"{P95}<={GOAL}"])


def test_parse_slo_takes_a_number_or_a_metric_objective() -> None:
    assert Slo.parse("textfile.app_latency_seconds <= 0.05") == Slo(
        metric="textfile.app_latency_seconds", op="<=", objective=0.05)
    assert Slo.parse("textfile.a_ops>=1e3").objective == 1000.0
    assert Slo.parse(f"{P95}<{GOAL}") == Slo(metric=P95, op="<", objective_metric=GOAL)
    assert str(Slo.parse(f"{P95}<={GOAL}")) == f"{P95}<={GOAL}"


@pytest.mark.parametrize("text", ["latency<=1", "a.b=1", "a.b<=", "a.b<=1;rm", "A.b<=1", ""])
def test_parse_slo_rejects_anything_else(text: str) -> None:
    with pytest.raises(ValueError, match="not an SLO"):
        Slo.parse(text)


def test_settings_read_a_comma_list_from_the_environment(monkeypatch: pytest.MonkeyPatch
                                                         ) -> None:
    monkeypatch.setenv("HEALER_SLO_METRICS", f"{P95}<={GOAL}, textfile.x_ops>=10")
    assert load_settings().slo_metrics == [f"{P95}<={GOAL}", "textfile.x_ops>=10"]
    monkeypatch.setenv("HEALER_SLO_METRICS", "p95<=fast")
    with pytest.raises(ConfigError, match="slo_metrics"):
        load_settings()
    monkeypatch.delenv("HEALER_SLO_METRICS")
    assert load_settings().slo_metrics == []


def _cpu_verify():  # type: ignore[no-untyped-def]
    return load_library().get("cpu-contention").verify


def test_declared_slos_replace_the_playbook_metric_target() -> None:
    spec = spec_from_playbook(_cpu_verify(), {"cgroup": "/a"}, slos=SLOS)
    assert spec is not None and spec.slos == SLOS and spec.metric is None
    fallback = spec_from_playbook(_cpu_verify(), {"cgroup": "/a"})  # no SLOs declared
    assert fallback is not None and fallback.metric == "psi.cpu.some_avg10"
    assert fallback.direction == "down" and fallback.slos == ()
    leak = load_library().get("memory-leak").verify  # no slo: true: SLOs are not its target
    other = spec_from_playbook(leak, {"cgroup": "/a"}, slos=SLOS)
    assert other is not None and other.slos == () and other.metric is not None


def _judge(p95_after: float, now: float) -> tuple[str | None, tuple[str, ...]]:
    spec = VerifySpec(slos=SLOS, window_seconds=10, settle_seconds=1)
    # PSI stays high after the fix (the hog still runs): only the SLO decides.
    series = Series(**{P95.replace(".", "__"): flat(0.09, T0 - 30, T0) + flat(
        p95_after, T0 + 1, T0 + 30), GOAL.replace(".", "__"): flat(0.02, T0 - 30, T0 + 30),
        "psi__cpu__some_avg10": flat(80.0, T0 - 30, T0 + 30)})
    result = evaluate(spec, summarize_baseline(spec, series, T0), series, T0, now)
    return result.verdict, result.reasons


def test_slo_met_over_a_full_window_passes() -> None:
    assert _judge(0.015, T0 + 5)[0] is None  # not a full window yet
    verdict, reasons = _judge(0.015, T0 + 12)
    assert verdict == "fixed" and "every SLO met" in reasons[0]


def test_slo_still_missed_over_a_full_window_is_insufficient() -> None:
    verdict, reasons = _judge(0.05, T0 + 12)
    assert verdict == "insufficient" and "SLO not met" in reasons[0] and "0.05" in reasons[0]


def test_slo_without_data_is_undecided() -> None:
    spec = VerifySpec(slos=parse_slos(["textfile.gone_seconds<=1"]), window_seconds=5,
                      settle_seconds=0)
    result = evaluate(spec, {}, Series(), T0, T0 + 10)
    assert result.verdict is None and "0 samples" in result.reasons[0]


def test_spec_with_slos_round_trips_through_the_journal_json() -> None:
    spec = VerifySpec(slos=SLOS, window_seconds=30)
    assert VerifySpec.model_validate(spec.model_dump()) == spec
