"""Message contents: Slack Block Kit with buttons, escaped text, links to the dashboard."""

from __future__ import annotations

from datetime import UTC, datetime

from guardrails.actions import parse_action
from guardrails.decision import Decision
from healer.models import ActionRecord, ActionState, Evidence, Incident
from healer.notify.formats import slack_payload
from healer.notify.notifier import Notifier
from healer.settings import Settings
from healer.store.repository import Repository
from tests.notify.conftest import T0


def _record(id_: int = 7) -> ActionRecord:
    return ActionRecord(
        id=id_, host_id="test-host", incident_id=3,
        action=parse_action({"kind": "gpu_power_limit", "scope": "gpu:0", "index": 0,
                             "watts": 250}),
        decision=Decision(verdict="needs_approval", reasons=("disruptive on gpu:0",),
                          approval="quorum:2"),
        state=ActionState.AWAITING_APPROVAL, created_at=T0, updated_at=T0)


def test_approval_needed_carries_link_and_guard_reasons(repo: Repository,
                                                        settings: Settings) -> None:
    notifier = Notifier(settings, repo, channels=["webhook"], clock=lambda: T0)
    notifier.action("approval_needed", _record())
    msg = repo.due_notifications(T0)[0].payload
    assert msg["link"] == "https://healer.example/approvals#action-7"
    assert msg["action_id"] == 7 and msg["event"] == "approval_needed"
    assert "disruptive on gpu:0" in msg["text"]
    assert msg["data"]["action"] == {"kind": "gpu_power_limit", "scope": "gpu:0", "index": 0,
                                     "watts": 250.0}


def test_slack_approval_has_approve_reject_and_link_buttons(repo: Repository,
                                                            settings: Settings) -> None:
    notifier = Notifier(settings, repo, channels=["slack"], clock=lambda: T0)
    notifier.action("approval_needed", _record())
    body = slack_payload(repo.due_notifications(T0)[0].payload, interactive=True)
    buttons = body["blocks"][-1]["elements"]
    assert [b["action_id"] for b in buttons][:2] == ["healer_approve:7", "healer_reject:7"]
    assert [b["value"] for b in buttons[:2]] == ["7", "7"]
    assert buttons[2]["url"] == "https://healer.example/approvals#action-7"
    assert body["text"]


def test_slack_without_interactivity_only_links(repo: Repository, settings: Settings) -> None:
    notifier = Notifier(settings, repo, channels=["slack"], clock=lambda: T0)
    notifier.action("approval_needed", _record())
    body = slack_payload(repo.due_notifications(T0)[0].payload, interactive=False)
    assert [b.get("url") is not None for b in body["blocks"][-1]["elements"]] == [True]


def test_slack_text_cannot_mention_or_link() -> None:
    body = slack_payload({"event": "escalation", "text": "<!channel> <http://x|y> & co",
                          "host_id": "h"}, interactive=True)
    text = body["blocks"][1]["text"]["text"]
    assert "<" not in text and "&lt;!channel&gt;" in text and "&amp; co" in text


def test_reopened_incident_is_a_new_notification(repo: Repository, settings: Settings) -> None:
    n = Notifier(settings, repo, channels=["log"], clock=lambda: T0)
    inc = Incident(id=3, host_id="test-host", playbook="conntrack-table-full", scope="host",
                   first_seen=T0, last_seen=T0, evidence=Evidence())
    later = inc.model_copy(update={"last_seen": datetime(2025, 10, 9, 13, tzinfo=UTC)})
    assert n.incident("opened", inc) == 1
    assert n.incident("opened", inc) == 0
    assert n.incident("reopened", later) == 1
    assert n.incident("resolved", later) == 1
    assert n.incident("updated", later) == 0
