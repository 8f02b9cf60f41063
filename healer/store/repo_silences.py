"""Silences: an operator marks an unclassified kernel-message template harmless for a while.

Every add and remove is audited in the same transaction. Expired silences stay listed
(as expired) until removed, as Alertmanager shows them; only active ones silence anything.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa

from healer.store.errors import NotFound
from healer.store.repo_base import RepoBase, add_row, get_row
from healer.store.rows import SilenceRow
from healer.store.tables import SilenceTable


def _silence(r: sa.Row[Any]) -> SilenceRow:
    return SilenceRow(id=r.id, template=r.template, comment=r.comment,
                      created_by=r.created_by, created_at=r.created_at,
                      expires_at=r.expires_at)


class SilencesRepo(RepoBase):
    """Silence methods of the Repository."""

    def add_silence(self, template: str, comment: str, created_by: str,
                    expires_at: datetime) -> SilenceRow:
        """Store a silence (audited ``silence.added``); returns it with its id."""
        with self._tx() as s:
            row = add_row(s, SilenceTable, host_id=self.host_id, template=template,
                          comment=comment, created_by=created_by, created_at=self.now(),
                          expires_at=expires_at)
            self._audit(s, created_by, "silence.added", f"silence:{row.id}",
                        {"template": template, "comment": comment,
                         "expires_at": expires_at.isoformat()})
            return _silence(row)

    def remove_silence(self, silence_id: int, actor: str) -> SilenceRow:
        """Delete a silence (audited ``silence.removed``); NotFound when there is none."""
        with self._tx() as s:
            row = get_row(s, SilenceTable, silence_id)
            if row is None or row.host_id != self.host_id:
                raise NotFound("silence", silence_id)
            gone = _silence(row)
            s.execute(sa.delete(SilenceTable).where(SilenceTable.c.id == silence_id))
            self._audit(s, actor, "silence.removed", f"silence:{silence_id}",
                        {"template": gone.template, "comment": gone.comment})
            return gone

    def get_silence(self, silence_id: int) -> SilenceRow | None:
        """One of this host's silences by id."""
        with self._tx(write=False) as s:
            row = get_row(s, SilenceTable, silence_id)
            return None if row is None or row.host_id != self.host_id else _silence(row)

    def list_silences(self, *, active_at: datetime | None = None) -> list[SilenceRow]:
        """This host's silences, newest first; only those active at ``active_at`` if given."""
        q = sa.select(SilenceTable).where(SilenceTable.c.host_id == self.host_id)
        if active_at is not None:
            q = q.where(SilenceTable.c.expires_at > active_at)
        with self._tx(write=False) as s:
            return [_silence(r) for r in s.execute(q.order_by(SilenceTable.c.id.desc()))]

    def active_silences(self, now: datetime) -> dict[str, datetime]:
        """Template -> latest expiry, of the silences active at ``now`` (what detection skips)."""
        q = sa.select(SilenceTable.c.template, SilenceTable.c.expires_at).where(
            SilenceTable.c.host_id == self.host_id, SilenceTable.c.expires_at > now)
        out: dict[str, datetime] = {}
        with self._tx(write=False) as s:
            for template, until in s.execute(q):
                out[template] = max(until, out.get(template, until))
        return out
