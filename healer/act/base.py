"""The actuator protocol and its explicit registry.

An actuator knows how to read, change and restore one family of knobs. It never acts on
its own authority: ``apply`` takes the guard's fresh ``Decision`` and refuses anything that
is not ``allow`` (the change engine re-runs ``guardrails.check`` right before applying, so
"apply without a fresh allow" cannot be expressed). Every write is read back; the value
returned is what the kernel reports, which is what the journal records.

Values are strings in the *journal form*: exactly what ``restore`` needs to write back to
reproduce the original bit for bit. ``in_action_units`` converts a journal-form value into
the units the action is written in (they differ only where a knob is translated, e.g.
cgroup v2 ``cpu.weight`` acted out as v1 ``cpu.shares``), for the guard's comparisons.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Protocol, runtime_checkable

from guardrails.actions import Action
from guardrails.decision import Decision
from healer.errors import ActuatorError, NotPermitted
from healer.models import ActionRecord


@runtime_checkable
class Actuator(Protocol):
    """Reads, applies and restores one family of actions; every write is read back."""

    kinds: tuple[str, ...]

    def read(self, action: Action) -> str | None:
        """The live value of what ``action`` changes (journal form); None when it does not exist."""
        ...

    def in_action_units(self, action: Action, value: str) -> str:
        """A journal-form value expressed in the action's own units."""
        ...

    def facts(self, action: Action) -> dict[str, float]:
        """Limits the guard needs: hard_limit, host_memory_bytes, gpu_min/max_watts, ..."""
        ...

    def apply(self, action: Action, decision: Decision) -> str:
        """Write the action's value, read it back and return the read-back."""
        ...

    def restore(self, record: ActionRecord) -> str:
        """Write ``record.original`` back, read it back and return the read-back."""
        ...


@runtime_checkable
class Pinner(Protocol):
    """Actuators whose targets must be pinned to one identity when a change is proposed."""

    def pin(self, action: Action) -> Action:
        """``action`` with its target's identity filled in; ActuatorError when it is gone."""
        ...


def require_allow(action: Action, decision: Decision) -> None:
    """Refuse to apply anything the guard did not allow in a fresh decision."""
    if decision.verdict != "allow":
        raise ActuatorError(
            action.scope, action.target, f"refusing to apply without an allow ({decision.verdict})"
        )


def require_original(record: ActionRecord,
                     grammar: Callable[[str], str] | None = None) -> str:
    """The value to restore; a record without one was never applied and has nothing to undo.

    ``grammar`` (a catalog value check) is applied last thing before a text file is
    written: the executor has already checked the value, this keeps the actuator safe on
    its own.
    """
    action = record.action
    if record.original is None:
        raise ActuatorError(action.scope, action.target, "no original value to restore")
    if grammar is None:
        return record.original
    try:
        return grammar(record.original)
    except ValueError as exc:
        raise ActuatorError(action.scope, action.target, f"refusing to restore: {exc}") from None


def translate_os_error(scope: str, target: str, exc: OSError, what: str) -> ActuatorError:
    """Map EPERM/EACCES/EROFS to NotPermitted, anything else to ActuatorError."""
    import errno

    text = f"{what}: {exc.strerror or exc}"
    if exc.errno in (errno.EPERM, errno.EACCES, errno.EROFS):
        return NotPermitted(scope, target, f"not permitted: {text}")
    return ActuatorError(scope, target, text)


class ActuatorRegistry:
    """Actuators by action kind; built explicitly by the composition root, duplicates rejected."""

    def __init__(self, actuators: Iterable[Actuator] = ()) -> None:
        self._by_kind: dict[str, Actuator] = {}
        for actuator in actuators:
            self.register(actuator)

    def register(self, actuator: Actuator) -> None:
        """Add one actuator; a kind that is already served is an error."""
        for kind in actuator.kinds:
            if kind in self._by_kind:
                raise ValueError(f"duplicate actuator for kind {kind!r}")
        for kind in actuator.kinds:
            self._by_kind[kind] = actuator

    def for_action(self, action: Action) -> Actuator:
        """The actuator serving ``action.kind``; ActuatorError when none is configured."""
        try:
            return self._by_kind[action.kind]
        except KeyError:
            raise ActuatorError(action.scope, action.target, "no actuator for this kind") from None

    def __contains__(self, kind: object) -> bool:
        return kind in self._by_kind

    def __iter__(self) -> Iterator[Actuator]:
        seen: list[Actuator] = []
        for actuator in self._by_kind.values():
            if not any(a is actuator for a in seen):
                seen.append(actuator)
        return iter(seen)

    @property
    def kinds(self) -> tuple[str, ...]:
        return tuple(self._by_kind)
