"""The one error guardrails raises on purpose: a policy file that does not load.

A "no" is never an error; ``check`` returns a ``Decision``. ``PolicyError`` is for a
broken policy file, and names the file and the YAML key so the operator can fix it.
"""

from __future__ import annotations


class PolicyError(ValueError):
    """A policy file could not be read or failed validation."""

    def __init__(self, path: str, key: str, problem: str) -> None:
        where = f"{path}: {key}" if key else path
        super().__init__(f"{where}: {problem}")
        self.path = path
        self.key = key
        self.problem = problem
