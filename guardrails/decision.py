"""Guard verdicts are values: a verdict, the reasons and the policy rule ids behind it."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

Verdict = Literal["allow", "needs_approval", "deny"]
Provenance = Literal["playbook", "llm", "operator"]


class Decision(BaseModel):
    """The outcome of ``guardrails.check``; JSON shape per ARCHITECTURE.md."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    verdict: Verdict
    reasons: tuple[str, ...] = ()
    rules: tuple[str, ...] = ()
    # Set when the verdict is needs_approval: "approve" or "quorum:N".
    approval: str | None = None

    @property
    def allowed(self) -> bool:
        return self.verdict == "allow"
