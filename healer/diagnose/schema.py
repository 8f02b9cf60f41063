"""What the LLM must answer, and how its raw proposals become catalog actions.

The answer is parsed into ``LLMDiagnosisOut``; each raw proposal is validated with
``guardrails.actions.parse_action``. Anything that is not a catalog action is dropped
and counted as unsafe: the model proposed something healer could never apply.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from guardrails import linear
from guardrails.actions import parse_action
from healer.diagnose.redact import Redactor
from healer.models import Proposal

MAX_PROPOSALS = 16
_FENCE_RE = linear.compile(r"(?s)^\s*```(?:json)?\s*(.*?)\s*```\s*$")  # LLM output: RE2


class LLMDiagnosisOut(BaseModel):
    """The JSON object the system prompt asks for."""

    model_config = ConfigDict(extra="ignore")

    root_cause: str = Field(max_length=64)
    explanation: str = Field(default="", max_length=4000)
    confidence: float = Field(ge=0.0, le=1.0)
    proposals: list[Any] = Field(default_factory=list)

    @field_validator("root_cause")
    @classmethod
    def _known(cls, v: str, info: ValidationInfo) -> str:
        allowed = (info.context or {}).get("root_causes")
        if allowed is not None and v != "unknown" and v not in allowed:
            raise ValueError(f"root_cause must be one of the known ids or 'unknown', not {v!r}")
        return v


class LLMResult(BaseModel):
    """A validated LLM answer, unredacted; what the cache stores."""

    model_config = ConfigDict(frozen=True)

    root_cause: str
    explanation: str
    confidence: float
    proposals: tuple[Proposal, ...] = ()
    unsafe: int = 0
    dropped: int = 0


def parse_answer(content: str, root_causes: Sequence[str]) -> LLMDiagnosisOut:
    """Parse the reply text; raises ``ValueError`` with a short, model-readable message."""
    m = _FENCE_RE.match(content)
    text = m.group(1) if m else content.strip()
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not valid JSON ({exc.msg} at position {exc.pos})") from None
    if not isinstance(data, dict):
        raise ValueError("the answer must be a JSON object")
    try:
        return LLMDiagnosisOut.model_validate(data, context={"root_causes": set(root_causes)})
    except ValidationError as exc:
        problems = [f"{'.'.join(map(str, e['loc']))}: {e['msg']}"
                    for e in exc.errors(include_url=False, include_input=False)[:3]]
        raise ValueError("; ".join(problems)[:400]) from None


def _split(item: dict[str, Any]) -> tuple[Any, str, str]:
    action = item.get("action")
    if not isinstance(action, dict):
        action = {k: v for k, v in item.items() if k not in ("rationale", "expected_effect")}
    return action, str(item.get("rationale", ""))[:500], str(item.get("expected_effect", ""))[:300]


def validate_proposals(raw: Sequence[Any], redactor: Redactor,
                       limit: int = MAX_PROPOSALS) -> tuple[list[Proposal], int, int]:
    """(catalog proposals tagged ``llm``, unsafe count, dropped-over-limit count)."""
    valid: list[Proposal] = []
    seen: set[str] = set()
    unsafe = dropped = 0
    for i, item in enumerate(raw):
        if len(valid) >= limit:
            return valid, unsafe, dropped + len(raw) - i
        if not isinstance(item, dict):
            unsafe += 1
            continue
        action_raw, rationale, effect = _split(item)
        try:
            # Placeholders go back to real values (a cgroup path) before validation,
            # so what is checked is exactly what would be applied.
            action = parse_action(redactor.unredact_obj(action_raw))
        except (ValidationError, ValueError, TypeError):
            unsafe += 1
            continue
        if action.target in seen:
            dropped += 1
            continue
        seen.add(action.target)
        valid.append(Proposal(
            action=action, provenance="llm", rationale=redactor.unredact(rationale),
            expected_effect=redactor.unredact(effect), in_playbook=False,
        ))
    return valid, unsafe, dropped
