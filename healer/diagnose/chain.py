"""The chain: the playbook's answer, and beside it the LLM's where the playbook asks for one.

What the daemon ends up with (``opinion.combine``), in one synchronous call: ``healer eval``
measures it this way. The daemon itself asks the LLM through the store-backed job in
``healer.diagnose.pending`` and combines the answer the same way when it takes it up.
"""

from __future__ import annotations

import logging
from dataclasses import replace

from healer.diagnose.base import DiagnoseContext, DiagnosisReport
from healer.diagnose.llm import LLMDiagnoser
from healer.diagnose.opinion import asks_llm, combine
from healer.diagnose.playbook import PlaybookDiagnoser
from healer.models import Diagnosis, Incident

log = logging.getLogger("healer.diagnose.chain")


class ChainDiagnoser:
    """``PlaybookDiagnoser`` then, when the playbook asks and an LLM is configured, the LLM."""

    def __init__(self, playbook: PlaybookDiagnoser, llm: LLMDiagnoser | None = None) -> None:
        self.playbook = playbook
        self.llm = llm

    def diagnose(self, incident: Incident, ctx: DiagnoseContext) -> Diagnosis:
        """The combined diagnosis."""
        return self.diagnose_detailed(incident, ctx).diagnosis

    def status(self) -> dict[str, object]:
        """LLM state for the UI: off, or the model and its circuit breaker."""
        return {"llm": "off"} if self.llm is None else {"llm": "on", **self.llm.status()}

    def diagnose_detailed(self, incident: Incident, ctx: DiagnoseContext) -> DiagnosisReport:
        """The combined diagnosis with the LLM's cost and dropped proposals."""
        base = self.playbook.diagnose(incident, ctx)
        if self.llm is None or not asks_llm(ctx.playbook):
            return DiagnosisReport(diagnosis=base)
        try:
            report = self.llm.diagnose_detailed(incident, ctx)
        except Exception:  # a bug in the LLM path must not cost the playbook answer
            log.exception("llm diagnoser crashed; playbook answer stands")
            return DiagnosisReport(diagnosis=base, llm_used=True, failure="crash")
        combined = combine(base, report.diagnosis, model=self.llm.model, failure=report.failure)
        return replace(report, diagnosis=combined)
