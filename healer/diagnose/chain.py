"""The chain: the playbook answer first; the LLM only where it can add something.

The LLM is asked when no playbook answered confidently, or when the playbook asks for a
second opinion. It can never make the answer worse: on failure or ``unknown`` the
playbook answer stands, and a confident playbook's root cause is never overridden.
LLM proposals keep provenance ``llm`` and are ``in_playbook`` only when the same
kind+target is among the playbook's remedies (the guard never lets the others be auto).
"""

from __future__ import annotations

import logging
from dataclasses import replace

from healer.diagnose.base import UNKNOWN, DiagnoseContext, DiagnosisReport
from healer.diagnose.llm import LLMDiagnoser
from healer.diagnose.playbook import PlaybookDiagnoser
from healer.models import Diagnosis, Incident, Proposal

log = logging.getLogger("healer.diagnose.chain")

CONFIDENT = 0.6  # below this a playbook answer is a guess and the LLM is asked


class ChainDiagnoser:
    """``PlaybookDiagnoser`` then, when useful and configured, ``LLMDiagnoser``."""

    def __init__(self, playbook: PlaybookDiagnoser, llm: LLMDiagnoser | None = None,
                 confident: float = CONFIDENT) -> None:
        self.playbook = playbook
        self.llm = llm
        self.confident = confident

    def diagnose(self, incident: Incident, ctx: DiagnoseContext) -> Diagnosis:
        """The combined diagnosis."""
        return self.diagnose_detailed(incident, ctx).diagnosis

    def status(self) -> dict[str, object]:
        """LLM state for the UI: off, or the model and its circuit breaker."""
        return {"llm": "off"} if self.llm is None else {"llm": "on", **self.llm.status()}

    def wants_llm(self, base: Diagnosis, ctx: DiagnoseContext) -> bool:
        """No confident playbook answer, or the playbook asks for a second opinion."""
        if self.llm is None:
            return False
        if ctx.playbook is None or base.root_cause == UNKNOWN or base.confidence < self.confident:
            return True
        return bool(getattr(ctx.playbook, "second_opinion", False))

    def diagnose_detailed(self, incident: Incident, ctx: DiagnoseContext) -> DiagnosisReport:
        """The combined diagnosis with the LLM's cost and dropped proposals."""
        base = self.playbook.diagnose(incident, ctx)
        if self.llm is None or not self.wants_llm(base, ctx):
            return DiagnosisReport(diagnosis=base)
        try:
            report = self.llm.diagnose_detailed(incident, ctx)
        except Exception:  # a bug in the LLM path must not cost the playbook answer
            log.exception("llm diagnoser crashed; playbook answer stands")
            return DiagnosisReport(diagnosis=base, llm_used=True, failure="crash")
        return replace(report, diagnosis=self.combine(base, report.diagnosis, ctx))

    def combine(self, base: Diagnosis, llm: Diagnosis, ctx: DiagnoseContext) -> Diagnosis:
        """Merge the two answers; the playbook's stands unless the LLM fills a real gap."""
        remedies = {p.action.target for p in base.proposals}
        extra = tuple(_tag(p, remedies) for p in llm.proposals
                      if p.action.target not in remedies)
        if llm.root_cause == UNKNOWN:
            return base
        base_confident = base.root_cause != UNKNOWN and base.confidence >= self.confident
        if base_confident or llm.root_cause == base.root_cause:
            agree = llm.root_cause == base.root_cause
            note = "agrees" if agree else f"suggests {llm.root_cause}"
            explanation = f"{base.explanation}\n\nLLM second opinion ({note}): {llm.explanation}"
            confidence = max(base.confidence, llm.confidence) if agree else base.confidence
            return base.model_copy(update={"explanation": explanation.strip()[:4000],
                                           "confidence": confidence,
                                           "proposals": base.proposals + extra})
        # No confident playbook answer: the LLM's root cause, its proposals checked
        # against whatever remedies the (weak) playbook had.
        tagged = tuple(_tag(p, remedies) for p in llm.proposals)
        return llm.model_copy(update={"proposals": tagged})


def _tag(p: Proposal, remedies: set[str]) -> Proposal:
    return p.model_copy(update={"provenance": "llm", "in_playbook": p.action.target in remedies})
