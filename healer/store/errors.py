"""Store errors; all are ``healer.errors.StoreError`` so callers catch one type."""

from __future__ import annotations

from collections.abc import Collection

from healer.errors import StoreError


class StaleState(StoreError):
    """A compare-and-set transition matched no row: someone else moved the action first."""

    def __init__(self, action_id: int, expected: Collection[str], actual: str | None) -> None:
        want = ",".join(sorted(expected))
        super().__init__(f"action {action_id}: expected state in {{{want}}}, found {actual}")
        self.action_id = action_id
        self.expected = frozenset(expected)
        self.actual = actual


class IllegalTransition(StoreError):
    """The requested state change is not in ``healer.models.TRANSITIONS``."""

    def __init__(self, action_id: int, from_state: str | None, to_state: str) -> None:
        super().__init__(f"action {action_id}: illegal transition {from_state} -> {to_state}")
        self.action_id = action_id
        self.from_state = from_state
        self.to_state = to_state


class NotFound(StoreError):
    """A referenced row (action, incident) does not exist for this host."""

    def __init__(self, what: str, ident: int | str) -> None:
        super().__init__(f"{what} {ident} not found")
        self.what = what
        self.ident = ident


class AlreadyExists(StoreError):
    """A unique name (user, token) is taken."""

    def __init__(self, what: str, ident: str) -> None:
        super().__init__(f"{what} {ident!r} already exists")
        self.what = what
        self.ident = ident


__all__ = ["AlreadyExists", "IllegalTransition", "NotFound", "StaleState", "StoreError"]
