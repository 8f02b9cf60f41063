"""Playbook verify blocks resolve into concrete, storable specs."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from guardrails.actions import GpuPowerLimit
from healer.models import Incident
from healer.verify import VerifySpec
from healer.verify.labels import labels_for, spec_for
from healer.verify.spec import spec_from_playbook
from playbooks.loader import load_library
from playbooks.schema import Guard, Verify


def test_placeholders_fill_from_the_incident_scope_and_action() -> None:
    verify = Verify(metric="gpu.{index}.temperature_celsius", direction="below:85",
                    guards=(Guard(metric="gpu.{index}.throughput_ops", max_regression_percent=20),))
    now = datetime.now(UTC)
    incident = Incident(host_id="h", playbook="gpu-thermal-throttling", scope="gpu:1",
                        first_seen=now, last_seen=now)
    action = GpuPowerLimit(index=1, watts=600, scope="gpu:1")
    spec = spec_from_playbook(verify, labels_for(incident, action))
    assert spec is not None
    assert spec.metric == "gpu.1.temperature_celsius"
    assert (spec.direction, spec.threshold) == ("below", 85.0)
    assert spec.guards[0].metric == "gpu.1.throughput_ops"
    assert spec.guards[0].worse == "down"  # less throughput is the regression


def test_gpu_thermal_playbook_resolves_from_the_action_scope_alone() -> None:
    # An LLM proposal may come with no incident captures: {gpu} comes from gpu:<index>.
    playbook = load_library().get("gpu-thermal-throttling")
    spec = spec_for(playbook, None, GpuPowerLimit(index=3, watts=270, scope="gpu:3"))
    assert spec is not None
    assert (spec.metric, spec.direction) == ("gpu.3.throttle_thermal", "to_zero")
    [guard] = spec.guards
    assert guard.metric == "gpu.3.sm_clock_mhz"
    assert guard.worse == "down"  # a slower SM clock is the throughput regression
    assert spec.deadline <= 120  # a verdict (or a rollback) within two minutes


def test_spec_round_trips_through_the_journal_json() -> None:
    spec = VerifySpec(metric="net.tcp.listen_overflows_total", direction="to_zero")
    assert VerifySpec.model_validate(spec.model_dump(mode="json")) == spec
    assert spec.deadline == spec.settle_seconds + 3 * spec.window_seconds


@pytest.mark.parametrize("direction", ["sideways", "below:"])
def test_unknown_direction_is_an_error(direction: str) -> None:
    from healer.verify.spec import parse_direction

    with pytest.raises(ValueError):
        parse_direction(direction)
