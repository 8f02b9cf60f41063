"""Fault sizes we did not choose: drawn from each scenario's range with a printed, reusable
seed, or swept over its low, middle and high points; and how a convergence is judged."""

from __future__ import annotations

import argparse
from types import SimpleNamespace
from typing import Any

import pytest

from chaos.observe import steps_of, stopped, summarize_action
from chaos.report import summary_table
from chaos.result import ScenarioResult
from chaos.runner import summarize
from chaos.scenarios import registry
from chaos.scenarios.base import converged
from healer.cli.chaos import _sized


def _args(**kw: Any) -> argparse.Namespace:
    return argparse.Namespace(**{"seed": None, "sweep": False, "point": None, **kw})


def test_a_draw_is_reproducible_from_the_seed_and_stays_in_the_range() -> None:
    reg = registry()
    sev = reg["cgroup-oom"].severity
    assert sev is not None
    draws = {sev.draw(seed, "cgroup-oom") for seed in range(200)}
    assert min(draws) >= 110 and max(draws) <= 600 and len(draws) > 50
    assert sev.draw(7, "cgroup-oom") == sev.draw(7, "cgroup-oom")
    assert [sev.at(p) for p in ("low", "middle", "high")] == [110, 355, 600]


def test_the_suite_prints_its_seed_and_the_same_seed_draws_the_same_sizes(
        capsys: pytest.CaptureFixture[str]) -> None:
    names = ["listen-overflow", "cgroup-oom", "gpu-xid"]
    first = _sized(names, _args())
    seed = int(capsys.readouterr().err.split("seed ")[1].split()[0])
    again = _sized(names, _args(seed=seed))
    assert [s.magnitude for s in first] == [s.magnitude for s in again]
    assert [s.seed for s in again[:2]] == [seed, seed] and again[2].severity is None
    info = again[1].severity_info()
    assert info is not None and (info["point"], info["seed"], info["unit"]) == (
        "draw", seed, "MB")


def test_a_sweep_runs_each_ranged_scenario_at_three_points_and_skips_the_rest(
        capsys: pytest.CaptureFixture[str]) -> None:
    swept = _sized(["pids-exhaustion", "bad-fix-rollback", "fd-exhaustion"], _args(sweep=True))
    assert [(s.name, s.point, s.magnitude) for s in swept] == [
        ("pids-exhaustion", "low", 30), ("pids-exhaustion", "middle", 515),
        ("pids-exhaustion", "high", 1000), ("fd-exhaustion", "low", 100),
        ("fd-exhaustion", "middle", 2550), ("fd-exhaustion", "high", 5000)]
    assert capsys.readouterr().err == ""  # nothing drawn: no seed to print
    assert registry()["pids-exhaustion"].magnitude == 30  # the registry's copy is untouched


def _rec(id: int, value: str, state: str, verdict: str | None, step: int | None,
         stop: dict[str, Any] | None = None, kind: str = "sysctl_write") -> dict[str, Any]:
    action = {"kind": kind, "scope": "netns:n", "key": "net.core.somaxconn", "value": value}
    if kind == "escalate":
        action = {"kind": kind, "scope": "netns:n", "message": "stopped"}
    ver = {"result": {"verdict": verdict, "numbers": {}}, "applied_at": 1000.0 + id,
           "step": {"number": step, "ceiling": 65535.0} if step else None, "stop": stop}
    return {"id": id, "action": action, "decision": {"verdict": "allow", "reasons": ["r"]},
            "state": state, "original": "16", "applied": value, "verification": ver}


def _ctx(*records: dict[str, Any]) -> Any:
    return SimpleNamespace(actions=[summarize_action(r) for r in records],
                           res=ScenarioResult(scenario="listen-overflow"))


def test_a_convergence_passes_when_fixed_or_stopped_at_the_ceiling_only() -> None:
    fixed = _ctx(_rec(1, "4096", "verified", "insufficient", 1),
                 _rec(2, "8192", "verified", "fixed", 2))
    assert converged(fixed, "net.core.somaxconn", 8192.0, 16.0) is True
    assert [s["outcome"] for s in steps_of(fixed.actions)] == ["insufficient", "fixed"]
    going = _ctx(_rec(1, "4096", "verifying", None, 1))
    assert converged(going, "net.core.somaxconn", 4096.0, 16.0) is None
    ceiling = _ctx(_rec(1, "65535", "verified", "insufficient", 1),
                   _rec(2, "", "verified", None, None, kind="escalate",
                        stop={"reason": "ceiling", "steps": [1]}))
    assert converged(ceiling, "net.core.somaxconn", 65535.0, 16.0) is True
    assert stopped(ceiling.actions, "net.core.somaxconn") == "ceiling"


@pytest.mark.parametrize(("records", "live", "why"), [
    ((_rec(1, "4096", "rolled_back", "insufficient", 1),), 16.0, "ended rolled_back"),
    ((_rec(1, "4096", "verified", "insufficient", 1),
      _rec(2, "", "awaiting_approval", None, None, kind="escalate",
           stop={"reason": "steps", "steps": [1]})), 4096.0, "not fixed within the steps"),
    ((_rec(1, "4096", "verified", "fixed", 1),), 8.0, "below the original"),
])
def test_a_convergence_fails_on_a_rollback_stopping_short_or_a_lower_limit(
        records: tuple[dict[str, Any], ...], live: float, why: str) -> None:
    ctx = _ctx(*records)
    assert converged(ctx, "net.core.somaxconn", live, 16.0) is False
    assert any(why in f for f in ctx.res.failures), ctx.res.failures


def test_results_name_their_size_and_the_report_shows_the_steps() -> None:
    r = ScenarioResult(scenario="cgroup-oom", passed=True, severity={
        "value": 600, "unit": "MB", "low": 110, "high": 600, "point": "high", "seed": None})
    r.steps = [{"step": 1, "old": "104857600", "new": "209715200", "state": "verified",
                "outcome": "insufficient"},
               {"step": 2, "old": "209715200", "new": "419430400", "state": "verified",
                "outcome": "fixed"}]
    assert r.label == "cgroup-oom@high=600MB"
    table = summary_table([r.to_dict()], summarize([r]))
    assert "| cgroup-oom@high=600MB | PASS |" in table
    assert "104857600->209715200 insufficient; 209715200->419430400 fixed" in table
