"""Notifications: events into an outbox (``Notifier``), delivered by a scheduler job
(``OutboxDeliverer.deliver_due``) to Slack, a signed JSON webhook, and the log."""

from healer.notify.channels import (
    Channel,
    DeliveryError,
    LogChannel,
    SlackChannel,
    WebhookChannel,
    build_channels,
)
from healer.notify.events import Event
from healer.notify.notifier import Notifier, base_url
from healer.notify.outbox import Backoff, DeliveryReport, OutboxDeliverer
from healer.notify.routes import Routes, parse_routes
from healer.notify.signing import BadSignature, sign_webhook, verify_webhook

__all__ = [
    "Backoff",
    "BadSignature",
    "Channel",
    "DeliveryError",
    "DeliveryReport",
    "Event",
    "LogChannel",
    "Notifier",
    "OutboxDeliverer",
    "Routes",
    "SlackChannel",
    "WebhookChannel",
    "base_url",
    "build_channels",
    "parse_routes",
    "sign_webhook",
    "verify_webhook",
]
