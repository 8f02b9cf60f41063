"""Silences: granted for unclassified templates only, bounded in time, read by detection."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from healer.detect.silences import SilenceCache, claimed_by, silence_for
from healer.detect.templates import template
from healer.errors import StoreError
from healer.models import Evidence, Incident, SilenceRefused
from playbooks.loader import load_library

PLAYBOOKS = load_library().playbooks
NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
DRIVER = "mydrv 0000:3b:00.0: firmware heartbeat missed 3 times"


def _incident(playbook: str, subject: str, lines: tuple[str, ...] = ()) -> Incident:
    return Incident(id=7, host_id="h", playbook=playbook, scope="host", subject=subject,
                    first_seen=NOW, last_seen=NOW, evidence=Evidence(kmsg=lines))


def test_an_unclassified_incident_is_silenced_by_its_template() -> None:
    req = silence_for(PLAYBOOKS, comment="known firmware chatter", now=NOW,
                      incident=_incident("unclassified", template(DRIVER), (DRIVER,)))
    assert req.template == template(DRIVER)
    assert req.expires_at == NOW + timedelta(hours=24)  # the default


@pytest.mark.parametrize("text", [
    "Out of memory: Killed process <N> (<S>) total-vm:<N>kB",  # a template with placeholders
    "blk_update_request: I/O error, dev <DEV>, sector <N>",
    "NVRM: Xid (PCI:<PCI>): <N>, pid=<N>, name=x, GPU has fallen off the bus.",
    "watchdog: BUG: soft lockup - CPU#3 stuck for 23s! [stress:999]",
])
def test_a_template_a_playbook_claims_is_never_silenced(text: str) -> None:
    with pytest.raises(SilenceRefused, match="claims this message"):
        silence_for(PLAYBOOKS, comment="please", now=NOW, template=text)


def test_an_incident_whose_lines_a_playbook_claims_is_refused_even_with_an_odd_template() -> None:
    kill = "Out of memory: Killed process 42 (x) total-vm:1kB"
    with pytest.raises(SilenceRefused):
        silence_for(PLAYBOOKS, comment="c", now=NOW,
                    incident=_incident("unclassified", "garbled", (kill,)))
    assert claimed_by(PLAYBOOKS, [kill]) == "memory-pressure-oom"


def test_a_playbook_incident_cannot_be_silenced() -> None:
    with pytest.raises(SilenceRefused, match="only unclassified"):
        silence_for(PLAYBOOKS, comment="c", now=NOW, incident=_incident("soft-lockup", ""))


@pytest.mark.parametrize(("kwargs", "problem"), [
    ({"comment": "  "}, "comment"),
    ({"comment": "c", "duration": timedelta(seconds=10)}, "between"),
    ({"comment": "c", "duration": timedelta(days=400)}, "between"),
    ({"comment": "c", "expires_at": NOW - timedelta(hours=1)}, "between"),
    ({"comment": "c", "duration": timedelta(hours=1), "expires_at": NOW}, "not both"),
])
def test_a_silence_needs_a_reason_and_a_bounded_expiry(kwargs: dict[str, object],
                                                      problem: str) -> None:
    with pytest.raises(SilenceRefused, match=problem):
        silence_for(PLAYBOOKS, now=NOW, template=template(DRIVER), **kwargs)  # type: ignore[arg-type]


def test_the_cache_rereads_after_its_ttl_and_drops_expired_silences_at_once() -> None:
    tick = [0.0]
    store = {template(DRIVER): NOW + timedelta(seconds=30)}
    reads: list[datetime] = []

    def read(now: datetime) -> dict[str, datetime]:
        reads.append(now)
        return dict(store)

    cache = SilenceCache(read, ttl=5.0, clock=lambda: tick[0])
    t0 = NOW.timestamp()
    assert cache(t0) == {template(DRIVER)}
    store.clear()
    tick[0] = 4.0
    assert cache(t0 + 4) == {template(DRIVER)} and len(reads) == 1  # within the TTL
    store[template(DRIVER)] = NOW + timedelta(seconds=30)
    tick[0] = 6.0
    assert cache(t0 + 31) == frozenset()  # expired: gone without waiting for a re-read


def test_a_store_error_keeps_the_last_known_silences() -> None:
    tick = [0.0]
    fail = [False]

    def read(now: datetime) -> dict[str, datetime]:
        if fail[0]:
            raise StoreError("database is locked")
        return {"x <N>": NOW + timedelta(hours=1)}

    cache = SilenceCache(read, ttl=1.0, clock=lambda: tick[0])
    assert cache(NOW.timestamp()) == {"x <N>"}
    fail[0], tick[0] = True, 10.0
    assert cache(NOW.timestamp() + 10) == {"x <N>"}
