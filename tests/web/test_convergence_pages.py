"""The incident page and the journal show a convergence: its steps, each verdict, and where
the policy's ceiling is; a stop that a person can answer says so."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from guardrails.actions import Escalate, SysctlWrite
from guardrails.decision import Decision
from healer.models import (
    ActionRecord,
    ActionState,
    Step,
    Stop,
    Verification,
    VerifyResult,
)
from healer.store.repository import Repository
from playbooks.schema import Converge
from tests.web.helpers import Clock, add_user, bearer, login, make_incident

S = ActionState
ALLOW = Decision(verdict="allow", reasons=("within policy",), rules=("S-somaxconn",))


@pytest.fixture
def signed_in(client: TestClient, repo: Repository) -> TestClient:
    add_user(repo, "alice", "viewer")
    login(client, "alice")
    return client


def _step(repo: Repository, clock: Clock, incident_id: int | None, number: int, first: int | None,
          old: str, new: str, verdict: str) -> ActionRecord:
    now = clock()
    record = repo.add_action(ActionRecord(
        host_id=repo.host_id, incident_id=incident_id, decision=ALLOW, created_at=now,
        updated_at=now, state=S.APPROVED,
        action=SysctlWrite(scope="netns:n", key="net.core.somaxconn", value=new)))
    assert record.id is not None
    step = Step(number=number, first=first, previous=None if first is None else record.id - 1,
                allowed=4, plan=Converge(), ceiling=65535)
    ver = Verification(spec=None, in_playbook=True, step=step, result=VerifyResult(
        verdict=verdict,  # type: ignore[arg-type]
        reasons=(f"symptom {verdict} at {new}",)))
    repo.transition(record.id, S.APPLYING, expect=[S.APPROVED], original=old)
    repo.transition(record.id, S.VERIFYING, expect=[S.APPLYING], applied=new)
    return repo.transition(record.id, S.VERIFIED, expect=[S.VERIFYING], verification=ver)


def test_the_incident_page_lists_the_steps_their_verdicts_and_the_ceiling(
        signed_in: TestClient, repo: Repository, clock: Clock) -> None:
    incident = make_incident(repo, clock())
    one = _step(repo, clock, incident.id, 1, None, "16", "4096", "insufficient")
    _step(repo, clock, incident.id, 2, one.id, "4096", "16384", "insufficient")
    now = clock()
    stop = repo.add_action(ActionRecord(
        host_id=repo.host_id, incident_id=incident.id, created_at=now, updated_at=now,
        state=S.AWAITING_APPROVAL, action=Escalate(scope="netns:n", message="stopped"),
        decision=Decision(verdict="needs_approval", reasons=("K-escalate",), approval="approve"),
        verification=Verification(spec=None, in_playbook=True, stop=Stop(
            reason="steps", steps=(one.id or 0, (one.id or 0) + 1), grants_step=True))))
    page = signed_in.get(f"/incidents/{incident.id}").text
    section = re.search(r'<section class="card convergence".*?</section>', page, re.S)
    assert section is not None
    text = section.group(0)
    assert "2 of at most 4 step(s)" in text
    assert '<code class="ceiling">65535</code>' in text and 'max="65535.0"' in text
    rows = re.findall(r"<tr>\s*<td>(\d)</td>.*?</tr>", text, re.S)
    assert rows == ["1", "2"]
    assert text.count('class="badge o-insufficient"') == 2
    assert "symptom insufficient at 16384" in text
    assert f"#{stop.id}</a>" in text and "approving it allows one more step" in text


def test_the_journal_shows_each_records_step_and_verdict(
        signed_in: TestClient, repo: Repository, clock: Clock) -> None:
    one = _step(repo, clock, None, 1, None, "16", "4096", "insufficient")
    _step(repo, clock, None, 2, one.id, "4096", "8192", "fixed")
    page = signed_in.get("/actions").text
    assert f"step 2/4 after #{one.id}" in page and "step 1/4" in page
    assert 'class="badge o-fixed">fixed' in page and 'class="badge o-insufficient"' in page


def test_a_stopped_convergence_waits_in_the_inbox_and_a_vote_through_the_api_continues_it(
        client: TestClient, repo: Repository, clock: Clock) -> None:
    one = _step(repo, clock, None, 1, None, "16", "4096", "insufficient")
    now = clock()
    ask = repo.add_action(ActionRecord(
        host_id=repo.host_id, created_at=now, updated_at=now, state=S.AWAITING_APPROVAL,
        action=Escalate(scope="netns:n", message="approve this escalation to allow one more"),
        decision=Decision(verdict="needs_approval", reasons=("K-escalate",), approval="approve"),
        verification=Verification(spec=None, in_playbook=True, stop=Stop(
            reason="steps", steps=(one.id or 0,), grants_step=True))))
    headers = bearer(repo, "ann", "approver")
    [waiting] = client.get("/api/v1/proposals", headers=headers).json()
    assert waiting["id"] == ask.id
    assert waiting["verification"]["stop"] == {"reason": "steps", "steps": [one.id],
                                               "grants_step": True}
    resp = client.post(f"/api/v1/proposals/{ask.id}/approve", headers=headers,
                       json={"comment": "continue"})
    assert resp.status_code == 200 and resp.json()["approval"]["approved_by"] == ["ann"]
