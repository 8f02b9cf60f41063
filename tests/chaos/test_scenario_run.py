"""One real chaos scenario inside pytest, not only through ``healer chaos``: a real
``healer run`` heals a fault injected into a sandbox (marker ``chaos``; needs root).

``pids-exhaustion`` is the quickest (about 30 s): a workload keeps forking under
``pids.max=20`` in a scratch cgroup; healer must name the root cause, raise the limit,
verify it, and leave the host's own settings as they were.
"""

from __future__ import annotations

import pytest

from chaos.runner import run_scenario
from chaos.scenarios import registry
from tests.chaos.conftest import need_root
from tests.tools import missing

pytestmark = pytest.mark.chaos


def test_pids_exhaustion_is_detected_fixed_verified_and_the_host_left_alone() -> None:
    need_root()
    scenario = registry()["pids-exhaustion"].sized("low")
    why = scenario.unavailable()
    if why is not None:
        missing(f"pids-exhaustion cannot run here: {why}")
    result = run_scenario(scenario)
    assert not result.skipped
    assert result.passed, result.failures
    assert result.detected and result.root_cause == "pids-limit-too-low"
    assert result.outcome == "verified" and result.steady_state_after
    assert [a["kind"] for a in result.actions] == ["cgroup_limit"]
    assert result.host_untouched, result.host_diff
