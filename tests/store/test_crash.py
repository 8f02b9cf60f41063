"""A committed journal write survives SIGKILL of the writer, and the file stays sound."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from healer.models import ActionState
from healer.store.engine import migrate, open_engine
from healer.store.repository import Repository

from .conftest import HOST

REPO_ROOT = Path(__file__).resolve().parents[2]

# The child writes journal rows one committed transaction at a time and reports each id
# only after add_action returned (the commit point), then the parent kills it mid-stream.
CHILD = textwrap.dedent(
    """
    import sys
    from tests.store.conftest import make_record
    from healer.store.engine import open_engine
    from healer.store.repository import Repository
    repo = Repository(open_engine(sys.argv[1]), "node-a")
    i = 0
    while True:
        rec = repo.add_action(make_record(value=str(1024 + i)))
        print(rec.id, flush=True)
        i += 1
    """
)


def _spawn(url: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, url],
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO_ROOT,
        env=env,
    )


def test_sigkill_after_commit_loses_nothing_and_integrity_holds(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'healer.db'}"
    engine = open_engine(url)
    migrate(engine)
    engine.dispose()

    child = _spawn(url)
    assert child.stdout is not None
    committed = [int(child.stdout.readline()) for _ in range(25)]
    os.kill(child.pid, signal.SIGKILL)  # mid-write: the 26th insert may be in flight
    child.wait(timeout=10)
    assert child.returncode == -signal.SIGKILL

    repo = Repository(open_engine(url), HOST)  # the restart
    assert repo.integrity_check() == "ok"
    for action_id in committed:
        rec = repo.get_action(action_id)
        assert rec is not None and rec.state == ActionState.PROPOSED
    ids = [r.id for r in repo.list_actions(limit=1000)]
    assert ids == sorted(ids, reverse=True) and set(committed) <= set(ids)
    # Every surviving row is whole: its audit row committed in the same transaction.
    audited = {a.subject for a in repo.list_audit(limit=1000)}
    assert {f"action:{i}" for i in ids} <= audited
    repo.engine.dispose()
