"""The journal's seal: an HMAC on every row the agent writes, and a numbered log of writes.

Write access to the database must not be root on the host (ARCHITECTURE.md, principle 8),
so the root agent acts only on journal rows it can prove it wrote itself:

- every write of an ``actions`` row (insert or transition) takes the next per-host
  sequence number ``seq`` and stores ``mac`` = HMAC-SHA256(key, every field the agent
  writes + ``seq``);
- the same transaction appends ``journal_log(seq, action_id, row_mac, mac)``, whose own
  HMAC binds the three: the log says which row version each ``seq`` sealed;
- the key lives in a root-only directory apart from the database (``Settings.key_dir``),
  with the high-water mark of ``seq`` beside it (healer.act.seal).

A row is trusted when its ``mac`` verifies, the log entry at its ``seq`` names it with that
``mac``, and no later log entry names it (an older version replayed is caught); the log
must run 1..high-water mark without a gap (a deleted write is caught). A forged row, a
replayed version and a deleted write all fail; the agent reports them and never acts on
them. Pure: values in, strings out.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from pydantic_core import to_json

# Every column of ``actions`` the agent writes: what a row means, and so what is sealed.
SEALED_FIELDS = ("id", "host_id", "incident_id", "kind", "target", "action", "decision",
                 "provenance", "state", "original", "applied", "created_at", "updated_at",
                 "applied_at", "deadline", "verification", "approvals_needed", "rationale")
KEY_BYTES = 32


def _canonical(value: Any) -> Any:
    """One spelling per value, the same before the write and after a read-back: datetimes
    in ISO 8601 UTC (naive ones are UTC already, as the store keeps them), JSON values
    normalised as the store serialises them (non-finite numbers as strings)."""
    if isinstance(value, datetime):
        aware = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        return aware.isoformat()
    if isinstance(value, dict | list):
        return json.loads(to_json(value, inf_nan_mode="strings"))
    return value


def canonical_row(values: Mapping[str, Any], seq: int) -> bytes:
    """The bytes a row's ``mac`` covers."""
    body = {name: _canonical(values.get(name)) for name in SEALED_FIELDS}
    body["seq"] = seq
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


class Sealer:
    """Seals journal rows and log entries with one host's key."""

    def __init__(self, key: bytes, host_id: str) -> None:
        if len(key) < KEY_BYTES:
            raise ValueError("journal key too short")
        self._key, self.host_id = key, host_id

    def _mac(self, data: bytes) -> str:
        return hmac.new(self._key, data, hashlib.sha256).hexdigest()

    def row_mac(self, values: Mapping[str, Any], seq: int) -> str:
        """The HMAC of one row version."""
        return self._mac(b"row|" + canonical_row(values, seq))

    def log_mac(self, seq: int, action_id: int, row_mac: str) -> str:
        """The HMAC of one log entry: write ``seq`` sealed this version of this row."""
        return self._mac(f"log|{self.host_id}|{seq}|{action_id}|{row_mac}".encode())

    def row_ok(self, values: Mapping[str, Any], seq: int | None, mac: str | None) -> bool:
        """Whether the row's own seal holds."""
        if seq is None or mac is None:
            return False
        return hmac.compare_digest(self.row_mac(values, seq), mac)

    def log_ok(self, seq: int, action_id: int, row_mac: str, mac: str) -> bool:
        """Whether a log entry's seal holds."""
        return hmac.compare_digest(self.log_mac(seq, action_id, row_mac), mac)
