"""Credentials as stored: password and token hashing, roles, and the rank between them.

Shared by the CLI (``healer user|token``) and the web layer, which may import only the
store, models and settings. Passwords are hashed with argon2id (argon2-cffi's defaults,
RFC 9106 "low memory" profile); API tokens are 256-bit random strings stored only as
their SHA-256 (a high-entropy secret needs no slow hash), and so are session ids.

Roles: people rank ``viewer < approver < admin``, each including the ones before. Service
roles (``ingest`` for alert webhooks, ``host`` for fleet agents) sit outside that scale: a
service token reaches only the endpoints made for its role, never a person's.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from functools import cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from argon2 import PasswordHasher

HUMAN_ROLES: tuple[str, ...] = ("viewer", "approver", "admin")  # each includes the ones before
SERVICE_ROLES: tuple[str, ...] = ("ingest", "host")
ROLE_RANK: dict[str, int] = {role: rank for rank, role in enumerate(HUMAN_ROLES, start=1)}
TOKEN_PREFIX = "hlr_"
MIN_PASSWORD = 8


@cache
def _hasher() -> PasswordHasher:
    # Imported on first use: the agent checks roles (votes) but never hashes a password.
    from argon2 import PasswordHasher

    return PasswordHasher()


def is_service(role: str) -> bool:
    """True for a service role (outside the viewer < approver < admin scale)."""
    return role in SERVICE_ROLES


def role_at_least(role: str, needed: str) -> bool:
    """True when the human ``role`` is ``needed`` or above; service roles never are."""
    return ROLE_RANK.get(role, 0) >= ROLE_RANK[needed]


def lesser_role(a: str, b: str) -> str:
    """The lower of two human roles (a token never outranks the user who owns it)."""
    return a if ROLE_RANK.get(a, 0) <= ROLE_RANK.get(b, 0) else b


def hash_password(password: str) -> str:
    """An argon2id hash of ``password`` (PHC string)."""
    return _hasher().hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    """True when ``password`` matches the stored argon2 hash."""
    from argon2.exceptions import InvalidHashError, VerificationError

    try:
        return _hasher().verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def new_token() -> str:
    """A fresh API token (shown once, never stored)."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    """The stored form of an API token or a session id: hex SHA-256."""
    return hashlib.sha256(token.encode()).hexdigest()


def token_matches(token: str, stored_hash: str) -> bool:
    """Constant-time check of ``token`` against a stored hash."""
    return hmac.compare_digest(hash_token(token), stored_hash)
