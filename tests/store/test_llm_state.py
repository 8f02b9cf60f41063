"""The LLM path's state in the store: leases, live keys and answer records, on both backends."""

from __future__ import annotations

import threading

import sqlalchemy as sa

from healer.models import Diagnosis, IncidentStatus
from healer.store.engine import open_engine
from healer.store.repository import Repository

from .conftest import HOST, FakeClock, make_incident

NS = "llm-claim"


def test_a_lease_has_one_holder_until_it_expires(repo: Repository, clock: FakeClock) -> None:
    assert repo.kv_claim(NS, "fp", "a", ttl_seconds=60)
    assert not repo.kv_claim(NS, "fp", "b", ttl_seconds=60)
    assert repo.kv_claim(NS, "other", "b", ttl_seconds=60)  # another key is free
    clock.advance(61)  # "a" died without releasing: its lease runs out
    assert repo.kv_claim(NS, "fp", "b", ttl_seconds=60)
    repo.kv_release(NS, "fp", "a")  # a late release by the old holder changes nothing
    assert not repo.kv_claim(NS, "fp", "c", ttl_seconds=60)
    repo.kv_release(NS, "fp", "b")
    assert repo.kv_claim(NS, "fp", "c", ttl_seconds=60)


def test_a_lease_never_takes_a_key_without_expiry(repo: Repository, clock: FakeClock) -> None:
    repo.kv_put(NS, "pinned", "x")
    clock.advance(10**6)
    assert not repo.kv_claim(NS, "pinned", "a", ttl_seconds=1)
    assert repo.kv_get(NS, "pinned") == "x"


def test_of_many_processes_racing_for_a_lease_exactly_one_wins(db_url: str,
                                                                engine: sa.Engine) -> None:
    # One engine (own connection pool) per racer, as separate processes would have.
    engines = [open_engine(db_url) for _ in range(8)]
    wins: list[str] = []
    start = threading.Barrier(len(engines))

    def race(n: int) -> None:
        repo = Repository(engines[n], HOST)
        start.wait()
        if repo.kv_claim(NS, "fingerprint", f"holder-{n}", ttl_seconds=60):
            wins.append(f"holder-{n}")

    threads = [threading.Thread(target=race, args=(n,)) for n in range(len(engines))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    for e in engines:
        e.dispose()
    assert len(wins) == 1
    assert Repository(engine, HOST).kv_get(NS, "fingerprint") == wins[0]


def test_live_keys_are_the_unexpired_ones_of_one_namespace_and_host(
        repo: Repository, engine: sa.Engine, clock: FakeClock) -> None:
    repo.kv_claim("llm-budget", "slot-0", "a", ttl_seconds=3600)
    repo.kv_claim("llm-budget", "slot-1", "b", ttl_seconds=10)
    repo.kv_claim(NS, "slot-2", "c", ttl_seconds=3600)
    Repository(engine, "node-b", clock=clock).kv_claim("llm-budget", "slot-3", "d", 3600)
    clock.advance(11)
    assert repo.kv_live("llm-budget") == ["slot-0"]


def _open(repo: Repository, playbook: str, scope: str = "host", subject: str = "") -> int:
    incident = repo.open_incident(make_incident(playbook, scope).model_copy(
        update={"subject": subject, "host_id": repo.host_id}))
    assert incident.id is not None
    return incident.id


def test_incidents_awaiting_an_llm_are_open_unanswered_and_wanted(
        repo: Repository, engine: sa.Engine, clock: FakeClock) -> None:
    unclassified = _open(repo, "unclassified", subject="drv: error <N>")
    asking = _open(repo, "hung-task")
    _open(repo, "listen-backlog-too-small")  # a confident playbook: no LLM
    answered = _open(repo, "unclassified", subject="other: failed")
    repo.add_llm_answer(answered, "m1", "v1", answer=None, failure="server", cached=False)
    resolved = repo.open_incident(make_incident("unclassified").model_copy(
        update={"subject": "gone", "status": IncidentStatus.RESOLVED}))
    _open(Repository(engine, "node-b", clock=clock), "unclassified", subject="elsewhere")
    known = {"hung-task", "listen-backlog-too-small"}
    found = repo.incidents_awaiting_llm("m1", "v1", asking={"hung-task"}, known=known)
    assert [i.id for i in found] == [unclassified, asking]
    assert resolved.id not in [i.id for i in found]
    # Another model or prompt version has not answered any of them yet.
    other = repo.incidents_awaiting_llm("m2", "v1", asking={"hung-task"}, known=known)
    assert answered in [i.id for i in other]


def test_an_answer_is_recorded_once_and_taken_up_once(repo: Repository,
                                                      clock: FakeClock) -> None:
    incident = _open(repo, "unclassified", subject="drv: error <N>")
    answer = {"root_cause": "drv-firmware-error", "explanation": "e", "confidence": 0.7}
    assert repo.add_llm_answer(incident, "m1", "v1", answer=answer, failure=None, cached=False,
                               calls=2, tokens=900)
    assert not repo.add_llm_answer(incident, "m1", "v1", answer=None, failure="x", cached=True)
    [row] = repo.untaken_llm_answers()
    assert (row.answer, row.calls, row.tokens, row.cached) == (answer, 2, 900, False)
    assert repo.taken_llm_answer(incident) is None
    repo.mark_llm_answer_taken(row.id, clock())
    assert repo.untaken_llm_answers() == []
    taken = repo.taken_llm_answer(incident)
    assert taken is not None and taken.id == row.id and taken.taken_at == clock()
    repo.set_diagnosis(incident, Diagnosis(root_cause="drv-firmware-error", source="llm"))
    stored = repo.get_incident(incident)
    assert stored is not None and stored.diagnosis is not None
    assert stored.diagnosis.root_cause == "drv-firmware-error"
