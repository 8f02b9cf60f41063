"""How a stored notification looks on each channel: Slack Block Kit, generic JSON, log line.

The outbox stores one channel-neutral message (``build_message``); channels render it at
delivery time. Slack's mrkdwn treats ``<``, ``>`` and ``&`` as control characters (links,
@channel mentions), so untrusted text is escaped as Slack documents
(https://api.slack.com/reference/surfaces/formatting#escaping).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from healer.models import SLACK_APPROVE_ACTION as APPROVE_ACTION
from healer.models import SLACK_REJECT_ACTION as REJECT_ACTION

MESSAGE_VERSION = 1
# Slack's own limits (https://api.slack.com/reference/block-kit/blocks and
# .../block-kit/block-elements#button); a longer field makes Slack reject the whole message.
SLACK_HEADER_CHARS = 150  # header block: plain_text up to 150 characters
SLACK_SECTION_CHARS = 3000  # section block text: up to 3000 characters
SLACK_BUTTON_TEXT_CHARS = 75  # button text: up to 75 characters
SLACK_ID_CHARS = 255  # action_id and block_id: up to 255 characters
SLACK_TEXT_CHARS = 3000  # top-level fallback text: kept to a section's size (notifications)
OPEN_ACTION = "healer_open"

_TITLES: dict[str, str] = {
    "incident_opened": "Incident opened",
    "incident_resolved": "Incident resolved",
    "approval_needed": "Approval needed",
    "action_applied": "Action applied",
    "action_verified": "Action verified",
    "action_rolled_back": "Action rolled back",
    "rollback_failed": "Rollback FAILED",
    "escalation": "Escalation: a person must act",
    "approval_expired": "Approval expired",
    "fleet_incident": "Fleet incident: automation holds",
    "breaker_tripped": "Breaker tripped: a remedy waits for a person",
}


def event_title(event: str) -> str:
    """A short human title for an event name."""
    return _TITLES.get(event, event.replace("_", " ").capitalize())


def slack_escape(text: str) -> str:
    """Escape text for Slack mrkdwn so it cannot form links or mentions."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _plain(text: str, limit: int) -> dict[str, Any]:
    return {"type": "plain_text", "text": text[:limit] or " ", "emoji": False}


def _action_buttons(message: Mapping[str, Any], interactive: bool) -> list[dict[str, Any]]:
    buttons: list[dict[str, Any]] = []
    action_id = message.get("action_id")
    if interactive and message.get("event") == "approval_needed" and action_id is not None:
        for prefix, label, style in ((APPROVE_ACTION, "Approve", "primary"),
                                     (REJECT_ACTION, "Reject", "danger")):
            buttons.append({"type": "button", "action_id": f"{prefix}:{action_id}",
                            "value": str(action_id), "style": style,
                            "text": _plain(label, SLACK_BUTTON_TEXT_CHARS)})
    link = message.get("link")
    if link:
        open_id = f"{OPEN_ACTION}:{message.get('id', '')}"[:SLACK_ID_CHARS]
        buttons.append({"type": "button", "action_id": open_id, "url": str(link),
                        "text": _plain("Open in healer", SLACK_BUTTON_TEXT_CHARS)})
    return buttons


def slack_payload(message: Mapping[str, Any], *, interactive: bool) -> dict[str, Any]:
    """A Slack incoming-webhook body: fallback ``text`` plus Block Kit ``blocks``.

    ``interactive`` adds Approve/Reject buttons to approval requests; it needs a Slack app
    with interactivity pointed at ``POST /slack/interactions`` and a signing secret.
    """
    title = str(message.get("title") or event_title(str(message.get("event", ""))))
    severity = str(message.get("severity", "info"))
    text = str(message.get("text", ""))
    host = str(message.get("host_id", ""))
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": _plain(f"{title} on {host}", SLACK_HEADER_CHARS)},
        # escaping after the cut could grow the text past the limit, so cut after escaping
        {"type": "section", "text": {"type": "mrkdwn",
                                     "text": slack_escape(text)[:SLACK_SECTION_CHARS] or " "}},
        {"type": "context", "elements": [{"type": "mrkdwn", "text": slack_escape(
            f"severity {severity} · {message.get('subject', '')} · {message.get('at', '')}")}]},
    ]
    buttons = _action_buttons(message, interactive)
    if buttons:
        block_id = f"healer:{message.get('subject', '')}"[:SLACK_ID_CHARS]
        blocks.append({"type": "actions", "block_id": block_id,
                       "elements": buttons})
    fallback = slack_escape(f"[{severity}] {title} on {host}: {text}")
    return {"text": fallback[:SLACK_TEXT_CHARS], "blocks": blocks}
