"""The agent's side of the journal seal (healer.store.seal): the key, the high-water mark,
and which rows the change engine may act on.

The key (``journal.key``, 32 random bytes) and the high-water mark of the sequence
(``journal.hwm``) live in ``Settings.key_dir``: root-owned, mode 0700, apart from the
database, which the unprivileged side may write. Only processes holding the key (the root
agent, root's ``healer rollback|persist|journal adopt``) write journal rows.

- First start with no key and no sealed write: a key is made, and rows written before the
  seal existed are sealed once, audited (``journal.sealed``).
- No key, but sealed writes exist: the key was lost. A new key seals new writes; the old
  rows fail their check, are reported and never acted on, until ``healer journal adopt``
  (a person's decision that they are genuine) seals them again, audited.
- Every row the engine is about to act on must pass ``trusted``: the log intact up to the
  high-water mark, and the row's own seal good (``Repository.seal_check``). A row that
  fails is reported once (log, audit, escalation) and skipped, never acted on.
"""

from __future__ import annotations

import fcntl
import logging
import os
import secrets
from collections.abc import Callable
from pathlib import Path

from healer.errors import ConfigError
from healer.logs import logfmt
from healer.models import ActionRecord
from healer.store.repository import Repository
from healer.store.seal import KEY_BYTES, Sealer

log = logging.getLogger("healer.seal")

KEY_FILE = "journal.key"
HWM_FILE = "journal.hwm"
Report = Callable[[ActionRecord, str], None]  # (the row, why it is not trusted)


def _private_dir(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    st = path.stat()
    if st.st_uid != os.geteuid():
        raise ConfigError("agent_dir", f"{path} belongs to uid {st.st_uid}, not to this process")
    os.chmod(path, 0o700)


def _read_key(path: Path) -> bytes:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        st = os.fstat(fd)
        if st.st_uid != os.geteuid() or st.st_mode & 0o077:
            raise ConfigError("agent_dir", f"{path} must be mode 0600 and ours")
        key = os.read(fd, KEY_BYTES + 1)
    finally:
        os.close(fd)
    if len(key) != KEY_BYTES:
        raise ConfigError("agent_dir", f"{path} is not a journal key")
    return key


def _new_key(path: Path) -> bytes:
    key = secrets.token_bytes(KEY_BYTES)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        os.write(fd, key)
        os.fsync(fd)
    finally:
        os.close(fd)
    return key


class JournalSeal:
    """Holds the key for one repository and judges the rows the engine acts on."""

    def __init__(self, repo: Repository, key: bytes, hwm_path: Path | None) -> None:
        self.repo = repo
        self._hwm_path = hwm_path
        self._hwm = self._read_hwm()
        self._reported: set[tuple[int, str]] = set()
        self.report: Report | None = None  # the engine sets it (escalation)
        repo.sealer = Sealer(key, repo.host_id)
        repo.on_sealed = self._advance

    @classmethod
    def open(cls, repo: Repository, key_dir: Path) -> JournalSeal:
        """Load (or make) the key in ``key_dir``; seal rows from before the seal existed."""
        _private_dir(key_dir)
        key_path = key_dir / KEY_FILE
        fresh = not key_path.exists()
        _, top = repo.journal_extent()
        key = _new_key(key_path) if fresh else _read_key(key_path)
        seal = cls(repo, key, key_dir / HWM_FILE)
        if fresh and top > 0:
            log.error(logfmt(msg="journal key lost: a new key seals new writes; rows sealed with "
                             "the old one are not acted on until `healer journal adopt`",
                         sealed_writes=top))
            repo.add_audit("healer", "journal.key_lost", "journal", {"sealed_writes": top})
        elif fresh and (count := repo.reseal_all(unsealed_only=True)) > 0:
            # The one time unsealed rows are sealed: the first start after the upgrade that
            # brought the seal. Later, an unsealed row can only be forged, and stays untrusted.
            repo.add_audit("healer", "journal.sealed", "journal", {"rows": count})
            log.warning(logfmt(msg="journal rows from before the seal sealed", rows=count))
        return seal

    @classmethod
    def ephemeral(cls, repo: Repository) -> JournalSeal:
        """A key that lives as long as this object (tests, and engines built without a key
        directory): rows sealed with it are not trusted after a restart, which fails closed."""
        return cls(repo, secrets.token_bytes(KEY_BYTES), None)

    # -- the high-water mark -----------------------------------------------------------
    def _read_hwm(self) -> int:
        if self._hwm_path is None:
            return 0
        try:
            return int(self._hwm_path.read_text(encoding="ascii").strip() or 0)
        except FileNotFoundError:
            return 0
        except ValueError as exc:
            raise ConfigError("agent_dir", f"{self._hwm_path} is not a number") from exc

    def _advance(self, seq: int) -> None:
        """Raise the high-water mark to ``seq`` (never lower it: another root process may
        have sealed a later write); durable before the next write."""
        if self._hwm_path is None:
            self._hwm = max(self._hwm, seq)
            return
        fd = os.open(self._hwm_path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            current = int(os.read(fd, 32).decode("ascii").strip() or 0)
            top = max(current, seq)
            os.ftruncate(fd, 0)
            os.pwrite(fd, str(top).encode(), 0)
            os.fsync(fd)
        finally:
            os.close(fd)
        self._hwm = top

    # -- judging rows ------------------------------------------------------------------
    def intact(self) -> str | None:
        """Why the log cannot be trusted as a whole (a deleted write), or None."""
        return self._intact(*self.repo.journal_extent())

    def _intact(self, count: int, top: int) -> str | None:
        """``intact`` for a log of ``count`` entries whose highest seq is ``top``."""
        hwm = max(self._hwm, self._read_hwm())
        if top < hwm:
            return f"the journal log ends at write {top}, below the high-water mark {hwm}"
        if count != top:
            return f"the journal log has {top - count} missing write(s) below {top}"
        if top > hwm:  # our own writes whose mark a crash lost: each must carry our seal
            sealer = self.repo.sealer
            assert sealer is not None
            for seq, action_id, row_mac, mac in self.repo.journal_entries(hwm):
                if not sealer.log_ok(seq, action_id, row_mac, mac):
                    return f"journal write {seq} above the high-water mark is not ours"
            self._advance(top)
        return None

    def problem(self, record: ActionRecord) -> str | None:
        """Why the engine must not act on ``record``, or None."""
        if record.id is None:
            return "the record has no id"
        check = self.repo.seal_check(record.id)  # the row and the log, in one read
        return self._intact(check.entries, check.top) or check.problem

    def trusted(self, record: ActionRecord) -> bool:
        """True when the engine may act on ``record``; a failure is reported once."""
        why = self.problem(record)
        if why is None:
            return True
        key = (record.id or 0, why)
        if key not in self._reported:
            self._reported.add(key)
            log.error(logfmt(msg="journal row not trusted: not acted on", id=record.id,
                         target=record.action.target, reason=why))
            self.repo.add_audit("healer", "journal.untrusted", f"action:{record.id}",
                                {"reason": why})
            if self.report is not None:
                self.report(record, why)
        return False

    def adopt(self, actor: str) -> int:
        """Seal every row again under the current key (a person vouched for them)."""
        count = self.repo.reseal_all(unsealed_only=False)
        _, top = self.repo.journal_extent()
        self._advance(top)
        self.repo.add_audit(actor, "journal.adopted", "journal", {"rows": count})
        log.warning(logfmt(msg="journal adopted", rows=count, by=actor))
        return count
