"""The one error playbooks raise on purpose: a library or noise file that does not load.

Like ``guardrails.PolicyError`` it names the file and the key, so the operator can fix
it; the command line reports it as a config error (exit 2).
"""

from __future__ import annotations


class PlaybookError(ValueError):
    """A playbook library or the noise file could not be read or failed validation."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"{key}: {problem}")
        self.key = key
        self.problem = problem
