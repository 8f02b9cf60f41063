"""The fault nobody scripted, end to end with a real ``healer run``: a service
needing about 150 MB in a 100 MB cgroup, restarted after every OOM kill, healer in auto mode
confined to the parent cgroup, an operator approving whatever it asks. It must heal: the
OOM kills stop for 15 s within 120 s of the first, and no step is rolled back."""

from __future__ import annotations

import pytest

from chaos.runner import run_scenario
from chaos.scenarios import registry
from tests.chaos.conftest import need_root


@pytest.mark.root
@pytest.mark.chaos
def test_a_supervised_oom_loop_heals_within_two_minutes_of_the_first_kill() -> None:
    need_root()
    result = run_scenario(registry()["cgroup-oom-loop"])
    assert result.passed, result.failures
    healed = result.checks["healed_after_first_kill"]
    assert healed is not None and healed <= 120.0
    assert result.steps and result.steps[-1]["outcome"] == "fixed"
    assert all(s["state"] == "verified" for s in result.steps)  # none rolled back
    assert result.host_untouched
