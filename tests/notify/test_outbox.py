"""The outbox: one row per channel and event, retries with capped backoff, never twice."""

from __future__ import annotations

import socket
import time
from datetime import timedelta

import httpx
import pytest

from healer.errors import ConfigError
from healer.notify.channels import WebhookChannel
from healer.notify.events import Event
from healer.notify.notifier import Notifier
from healer.notify.outbox import Backoff, OutboxDeliverer
from healer.notify.routes import parse_routes
from healer.settings import Settings
from healer.store.repository import Repository
from tests.notify.conftest import T0, RecordingChannel


def _notifier(repo: Repository, settings: Settings, **kw) -> Notifier:  # type: ignore[no-untyped-def]
    return Notifier(settings, repo, clock=lambda: T0, **kw)


def test_emit_queues_one_row_per_configured_channel(repo: Repository,
                                                    settings: Settings) -> None:
    n = _notifier(repo, settings).emit(Event.ESCALATION, "incident:1", {"text": "GPU fell off"})
    rows = repo.due_notifications(T0)
    assert n == 3
    assert sorted(r.channel for r in rows) == ["log", "slack", "webhook"]
    assert rows[0].payload["severity"] == "critical"  # escalation's default


def test_replaying_an_event_after_a_crash_queues_nothing_new(repo: Repository,
                                                             settings: Settings) -> None:
    _notifier(repo, settings).emit(Event.ACTION_APPLIED, "action:7", {"action_id": 7})
    again = _notifier(repo, settings).emit(Event.ACTION_APPLIED, "action:7", {"action_id": 7})
    assert again == 0
    assert len(repo.due_notifications(T0)) == 3


def test_routes_filter_by_event_and_severity(repo: Repository, settings: Settings) -> None:
    routes = parse_routes({"slack": ["approval_needed", "*@critical"], "webhook": []})
    n = _notifier(repo, settings, routes=routes)
    n.emit(Event.ACTION_VERIFIED, "action:1", {}, "info")
    n.emit(Event.APPROVAL_NEEDED, "action:2", {}, "info")
    n.emit(Event.ROLLBACK_FAILED, "action:3", {}, "critical")
    got = sorted((r.channel, r.event) for r in repo.due_notifications(T0))
    assert got == [("log", "action_verified"), ("log", "approval_needed"),
                   ("log", "rollback_failed"), ("slack", "approval_needed"),
                   ("slack", "rollback_failed")]


def test_bad_route_names_the_key() -> None:
    with pytest.raises(ConfigError, match=r"notify_routes\.slack"):
        parse_routes({"slack": ["incident_exploded"]})


def test_failures_back_off_exponentially_up_to_the_cap(repo: Repository,
                                                       settings: Settings) -> None:
    _notifier(repo, settings, channels=["webhook"]).emit(Event.ESCALATION, "x:1", {})
    hook = RecordingChannel("webhook", fail=10)
    deliverer = OutboxDeliverer(repo, {"webhook": hook},
                                backoff=Backoff(base_seconds=10, cap_seconds=60, max_attempts=9))
    now, delays = T0, []
    for _ in range(5):
        deliverer.deliver_due(now)
        row = repo.get_notification(1)
        assert row is not None
        delays.append((row.next_attempt - now).total_seconds())
        now = row.next_attempt
    assert delays == [10, 20, 40, 60, 60]


def test_row_is_dead_after_max_attempts(repo: Repository, settings: Settings) -> None:
    _notifier(repo, settings, channels=["webhook"]).emit(Event.ESCALATION, "x:1", {})
    hook = RecordingChannel("webhook", fail=100)
    deliverer = OutboxDeliverer(repo, {"webhook": hook}, backoff=Backoff(1, 1, max_attempts=3))
    now = T0
    for _ in range(5):
        deliverer.deliver_due(now)
        now += timedelta(seconds=5)
    row = repo.get_notification(1)
    assert row is not None and row.dead and row.attempts == 3
    assert hook.calls == 3


def test_permanent_error_gives_up_at_once(repo: Repository, settings: Settings) -> None:
    _notifier(repo, settings, channels=["slack"]).emit(Event.ESCALATION, "x:1", {})
    report = OutboxDeliverer(repo, {"slack": RecordingChannel("slack", 1, permanent=True)}) \
        .deliver_due(T0)
    assert report.dead == 1
    assert repo.due_notifications(T0 + timedelta(days=1)) == []


def test_delivered_row_is_never_sent_again(repo: Repository, settings: Settings) -> None:
    _notifier(repo, settings, channels=["webhook"]).emit(Event.ESCALATION, "x:1", {})
    hook = RecordingChannel("webhook")
    deliverer = OutboxDeliverer(repo, {"webhook": hook})
    deliverer.deliver_due(T0)
    deliverer.deliver_due(T0 + timedelta(hours=1))
    assert len(hook.sent) == 1


def test_a_failing_channel_defers_its_own_rows_not_others(repo: Repository,
                                                          settings: Settings) -> None:
    n = _notifier(repo, settings, channels=["webhook", "log"])
    for i in range(3):
        n.emit(Event.ESCALATION, f"x:{i}", {})
    hook, log = RecordingChannel("webhook", fail=100), RecordingChannel("log")
    report = OutboxDeliverer(repo, {"webhook": hook, "log": log}).deliver_due(T0)
    assert hook.calls == 1 and len(log.sent) == 3
    assert (report.retried, report.deferred, report.delivered) == (1, 2, 3)


def test_a_hung_endpoint_costs_one_short_timeout(repo: Repository, settings: Settings) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)  # accepts connections, never answers
    url = f"http://127.0.0.1:{listener.getsockname()[1]}/hook"
    n = _notifier(repo, settings, channels=["webhook"])
    for i in range(5):
        n.emit(Event.ESCALATION, f"x:{i}", {})
    with httpx.Client(timeout=httpx.Timeout(0.3)) as client:
        deliverer = OutboxDeliverer(repo, {"webhook": WebhookChannel(url, client, "k")})
        started = time.monotonic()
        report = deliverer.deliver_due(T0)
        elapsed = time.monotonic() - started
    listener.close()
    assert report.retried == 1 and report.deferred == 4
    assert elapsed < 2.0


def test_unconfigured_channel_goes_dead_not_lost_silently(repo: Repository,
                                                          settings: Settings) -> None:
    _notifier(repo, settings, channels=["slack"]).emit(Event.ESCALATION, "x:1", {})
    OutboxDeliverer(repo, {}).deliver_due(T0)
    row = repo.get_notification(1)
    assert row is not None and row.dead and "not configured" in (row.last_error or "")
