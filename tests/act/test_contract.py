"""Every registered actuator satisfies the protocol; the registry rejects duplicates."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from guardrails.actions import ACTION_KINDS, SysctlWrite
from guardrails.decision import Decision
from healer.act.base import Actuator, ActuatorRegistry
from healer.act.process import NiceActuator
from healer.act.registry import build_actuators
from healer.errors import ActuatorError
from healer.host.gpu.simulated import SimulatedBackend
from healer.settings import Settings

PROTOCOL_METHODS = ("read", "in_action_units", "facts", "apply", "restore")


def _registry(tmp_path: Path) -> ActuatorRegistry:
    settings = Settings(state_dir=tmp_path)
    return build_actuators(settings, gpu=SimulatedBackend(tmp_path / "gpu.json"))


def test_every_actuator_satisfies_the_protocol(tmp_path: Path) -> None:
    registry = _registry(tmp_path)
    for actuator in registry:
        assert isinstance(actuator, Actuator)
        assert actuator.kinds and all(k in ACTION_KINDS for k in actuator.kinds)
        for name in PROTOCOL_METHODS:
            method = getattr(actuator, name)
            assert method.__doc__, f"{type(actuator).__name__}.{name} lacks a docstring"
        params = list(inspect.signature(actuator.apply).parameters)
        assert params == ["action", "decision"], "apply must take the fresh decision"


def test_every_changing_kind_has_an_actuator(tmp_path: Path) -> None:
    registry = _registry(tmp_path)
    changing = set(ACTION_KINDS) - {"notify", "escalate"}
    assert changing <= set(registry.kinds)


def test_duplicate_kind_is_an_error() -> None:
    with pytest.raises(ValueError, match="duplicate actuator"):
        ActuatorRegistry([NiceActuator(), NiceActuator()])


@pytest.mark.parametrize("verdict", ["needs_approval", "deny"])
def test_actuators_refuse_to_apply_without_an_allow(tmp_path: Path, verdict: str) -> None:
    registry = _registry(tmp_path)
    action = SysctlWrite(scope="host", key="net.core.somaxconn", value="4096")
    decision = Decision(verdict=verdict)  # type: ignore[arg-type]
    with pytest.raises(ActuatorError, match="without an allow"):
        registry.for_action(action).apply(action, decision)


def test_unknown_kind_has_no_actuator() -> None:
    with pytest.raises(ActuatorError, match="no actuator"):
        ActuatorRegistry().for_action(SysctlWrite(key="net.core.somaxconn", value="1"))
