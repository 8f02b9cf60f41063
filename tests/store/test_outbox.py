"""The notification outbox (dedupe, retries, due order) and the key/value store."""

from __future__ import annotations

from datetime import timedelta

from healer.store.repository import Repository

from .conftest import T0, FakeClock


def test_enqueue_is_idempotent_per_channel_and_key(repo: Repository) -> None:
    assert repo.enqueue_notification("slack", "incident.opened", {"id": 1}, "incident:1:opened")
    assert not repo.enqueue_notification("slack", "incident.opened", {"id": 1}, "incident:1:opened")
    assert repo.enqueue_notification("webhook", "incident.opened", {"id": 1}, "incident:1:opened")
    assert len(repo.due_notifications(T0)) == 2


def test_failed_delivery_is_retried_when_due_and_dead_rows_stop(repo: Repository) -> None:
    repo.enqueue_notification("slack", "e", {"n": 1}, "k1")
    (row,) = repo.due_notifications(T0)
    repo.mark_failed(row.id, "HTTP 503", T0 + timedelta(seconds=30), give_up=False)
    assert repo.due_notifications(T0 + timedelta(seconds=29)) == []
    (again,) = repo.due_notifications(T0 + timedelta(seconds=30))
    assert (again.attempts, again.last_error) == (1, "HTTP 503")
    repo.mark_failed(row.id, "HTTP 503", T0 + timedelta(seconds=90), give_up=True)
    assert repo.due_notifications(T0 + timedelta(days=1)) == []
    dead = repo.get_notification(row.id)
    assert dead is not None and dead.dead and dead.attempts == 2


def test_delivered_rows_are_never_due_again(repo: Repository) -> None:
    repo.enqueue_notification("slack", "e", {}, "k1")
    (row,) = repo.due_notifications(T0)
    repo.mark_delivered(row.id, T0 + timedelta(seconds=1))
    repo.mark_failed(row.id, "late failure report", T0, give_up=False)  # ignored once delivered
    assert repo.due_notifications(T0 + timedelta(days=1)) == []
    done = repo.get_notification(row.id)
    assert done is not None and done.delivered_at == T0 + timedelta(seconds=1)
    assert done.last_error is None and done.attempts == 1


def test_due_notifications_come_oldest_due_first(repo: Repository, clock: FakeClock) -> None:
    for key in ("a", "b", "c"):
        repo.enqueue_notification("log", "e", {"key": key}, key)
        clock.advance(1)
    first = repo.due_notifications(clock.now)[0]
    repo.mark_failed(first.id, "x", T0 + timedelta(seconds=10), give_up=False)
    assert [r.dedupe_key for r in repo.due_notifications(T0 + timedelta(seconds=10))] == [
        "b",
        "c",
        "a",
    ]
    assert len(repo.due_notifications(T0 + timedelta(seconds=10), limit=2)) == 2


def test_kv_values_expire_after_their_ttl(repo: Repository, clock: FakeClock) -> None:
    repo.kv_put("llm", "prompt-hash", "cached answer", ttl_seconds=60)
    repo.kv_put("kmsg", "cursor", "1234")
    assert repo.kv_get("llm", "prompt-hash") == "cached answer"
    clock.advance(61)
    assert repo.kv_get("llm", "prompt-hash") is None
    assert repo.kv_get("kmsg", "cursor") == "1234"
    repo.kv_put("kmsg", "cursor", "1300")
    assert repo.kv_get("kmsg", "cursor") == "1300"
    repo.kv_delete("kmsg", "cursor")
    assert repo.kv_get("kmsg", "cursor") is None
