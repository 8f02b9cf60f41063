"""``iter_actions`` and ``iter_incidents`` read every row a page at a time (keyset on the
id), on SQLite and PostgreSQL: nothing past a limit is dropped, and a row another writer
moves meanwhile is neither repeated nor skipped."""

from __future__ import annotations

from healer.models import ActionState, IncidentStatus
from healer.store.repository import Repository

from .conftest import make_incident, make_record

S = ActionState
MANY = 1050  # past the journal's old limit=1000


def _fill(repo: Repository, n: int, state: ActionState = S.VERIFIED) -> list[int]:
    ids = []
    for i in range(n):
        rec = repo.add_action(make_record(key=f"net.ipv4.conf.eth{i}.forwarding", value="1",
                                          state=state))
        assert rec.id is not None
        ids.append(rec.id)
    return ids


def test_iter_actions_reads_every_page_in_either_order(repo: Repository) -> None:
    ids = _fill(repo, MANY)
    assert [r.id for r in repo.iter_actions()] == ids[::-1]
    assert [r.id for r in repo.iter_actions(oldest_first=True, page=100)] == ids
    assert len(repo.list_actions(limit=2000)) == MANY  # a listing still takes a limit
    [one] = repo.iter_actions(target="sysctl_write:netns:t1:net.ipv4.conf.eth7.forwarding")
    assert one.id == ids[7]


def test_a_record_moved_while_paging_is_neither_repeated_nor_skipped(repo: Repository) -> None:
    ids = _fill(repo, 250)
    seen = []
    for record in repo.iter_actions(states=(S.VERIFIED,), page=100):
        seen.append(record.id)
        if len(seen) == 50:  # another writer moves an older record not yet read, and a read one
            repo.transition(ids[10], S.SUPERSEDED, expect=(S.VERIFIED,))
            repo.transition(ids[-20], S.SUPERSEDED, expect=(S.VERIFIED,))
    assert seen == [i for i in ids[::-1] if i != ids[10]]


def test_iter_incidents_reads_every_open_incident(repo: Repository) -> None:
    opened = [repo.open_incident(make_incident(scope=f"pid:{pid}")).id for pid in range(MANY)]
    assert [i.id for i in repo.iter_incidents(IncidentStatus.OPEN)] == opened[::-1]
    assert repo.count_incidents(IncidentStatus.OPEN) == MANY
    assert list(repo.iter_incidents(IncidentStatus.RESOLVED)) == []
