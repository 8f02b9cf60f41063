"""The deterministic diagnoser: the playbook that fired is the root cause.

It always runs and never calls out. Its proposals are the playbook's remedies rendered
for this incident (``playbooks.render``), tagged provenance ``playbook``.
"""

from __future__ import annotations

import logging

from healer.detect.evidence import remedy_inputs
from healer.diagnose.base import DiagnoseContext, unknown
from healer.models import Diagnosis, Incident, Proposal
from playbooks.render import render_remedies

log = logging.getLogger("healer.diagnose.playbook")


class PlaybookDiagnoser:
    """Root cause = the playbook's id; confidence = the playbook's; remedies rendered."""

    def diagnose(self, incident: Incident, ctx: DiagnoseContext) -> Diagnosis:
        """The playbook's answer, or ``unknown`` when no playbook applies."""
        playbook = ctx.playbook
        if playbook is None:
            return unknown(f"no playbook for {incident.playbook!r}")
        return Diagnosis(
            root_cause=playbook.id,
            explanation=f"{playbook.title}: {playbook.description}".strip()[:2000],
            confidence=playbook.confidence,
            source="playbook",
            proposals=tuple(self.proposals(incident, ctx)),
        )

    def proposals(self, incident: Incident, ctx: DiagnoseContext) -> list[Proposal]:
        """The playbook's remedies for this incident; a remedy that does not render is skipped."""
        try:
            inputs = remedy_inputs(incident.evidence, dict(ctx.facts), incident.scope)
            rendered = render_remedies(ctx.playbook, inputs, incident.scope)
        except Exception:  # a playbook bug must not cost the diagnosis
            log.exception("remedies failed to render: playbook=%s", ctx.playbook.id)
            return []
        return [
            Proposal(action=r.action, provenance="playbook", rationale=r.rationale,
                     expected_effect=r.expected_effect, in_playbook=True)
            for r in rendered
        ]
