"""``healer user add NAME --role R`` and ``healer token create NAME --role R``.

Passwords are hashed with argon2id (argon2-cffi's defaults, RFC 9106 "low memory"
profile); API tokens are 256-bit random strings stored only as their SHA-256 (a
high-entropy secret needs no slow hash). The web layer uses these same helpers.
"""

from __future__ import annotations

import argparse
import getpass
import hashlib
import hmac
import secrets
import sys

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from healer.cli.common import settings_from_args
from healer.errors import ConfigError

ROLES: tuple[str, ...] = ("viewer", "approver", "admin")  # each includes the ones before
TOKEN_PREFIX = "hlr_"
MIN_PASSWORD = 8
_hasher = PasswordHasher()


def hash_password(password: str) -> str:
    """An argon2id hash of ``password`` (PHC string)."""
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    """True when ``password`` matches the stored argon2 hash."""
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def new_token() -> str:
    """A fresh API token (shown once, never stored)."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    """The stored form of an API token: hex SHA-256."""
    return hashlib.sha256(token.encode()).hexdigest()


def token_matches(token: str, stored_hash: str) -> bool:
    """Constant-time check of ``token`` against a stored hash."""
    return hmac.compare_digest(hash_token(token), stored_hash)


def _read_password(stream_is_tty: bool) -> str:
    if stream_is_tty:
        first = getpass.getpass("password: ")
        if getpass.getpass("again: ") != first:
            raise ConfigError("password", "the two entries differ")
        return first
    return sys.stdin.readline().rstrip("\r\n")


def _user_add(args: argparse.Namespace) -> int:
    from healer.store.engine import open_store  # the store is only needed by these commands

    password = _read_password(sys.stdin.isatty())
    if len(password) < MIN_PASSWORD:
        raise ConfigError("password", f"must be at least {MIN_PASSWORD} characters (stdin)")
    repo = open_store(settings_from_args(args))
    user = repo.add_user(args.name, hash_password(password), args.role, args.slack_user_id)
    print(f"user {user.name} added with role {user.role}")
    return 0


def _token_create(args: argparse.Namespace) -> int:
    from healer.store.engine import open_store

    repo = open_store(settings_from_args(args))
    token = new_token()
    repo.add_token(args.name, hash_token(token), args.role)
    print(f"token {args.name} created with role {args.role}; it is shown only once:")
    print(token)  # the LAST line, so scripts can `| tail -n1`
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``user add`` and ``token create``."""
    user = subparsers.add_parser("user", help="manage dashboard users")
    user_sub = user.add_subparsers(dest="user_command", metavar="COMMAND", required=True)
    add = user_sub.add_parser("add", help="add a user; the password is read from stdin")
    add.add_argument("name")
    add.add_argument("--role", choices=ROLES, default="viewer")
    add.add_argument("--slack-user-id", default=None, help="Slack user id (U...) for approvals")
    add.set_defaults(func=_user_add)

    token = subparsers.add_parser("token", help="manage API bearer tokens")
    token_sub = token.add_subparsers(dest="token_command", metavar="COMMAND", required=True)
    create = token_sub.add_parser("create", help="create a token; printed once, as the last line")
    create.add_argument("name")
    create.add_argument("--role", choices=ROLES, default="viewer")
    create.set_defaults(func=_token_create)
