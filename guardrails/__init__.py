"""guardrails: healer's reference monitor. Pure: pydantic, PyYAML, google-re2 and the stdlib.

Usage: ``check(action, CheckContext(now=...), load_policy())`` returns a ``Decision``.
"""

from guardrails.actions import Action, parse_action
from guardrails.check import check, check_raw
from guardrails.context import CheckContext, HistoryEntry
from guardrails.decision import Decision
from guardrails.errors import PolicyError
from guardrails.policy import Policy, load_policy
from guardrails.writes import check_write

__all__ = [
    "Action",
    "CheckContext",
    "Decision",
    "HistoryEntry",
    "Policy",
    "PolicyError",
    "check",
    "check_raw",
    "check_write",
    "load_policy",
    "parse_action",
]
