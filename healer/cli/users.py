"""``healer user add|remove|passwd|role|list`` and ``healer token create|list|revoke``.

Hashing lives in ``healer.store.credentials`` (the web layer uses the same helpers).
A person's token belongs to a user (``--user``): its role is at most the user's, and it
goes when the user goes. Service tokens (``--role ingest``) belong to no one and
reach only their own endpoints; a host's token comes from ``healer host add ID``, bound to
that host.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from datetime import datetime, timedelta
from typing import Any

from healer.cli.common import print_json, row_id, settings_from_args
from healer.errors import ConfigError
from healer.store.credentials import (
    HUMAN_ROLES,
    MIN_PASSWORD,
    SERVICE_ROLES,
    hash_password,
    hash_token,
    is_service,
    lesser_role,
    new_token,
)
from healer.store.repo_hosts import HOST_ROLE
from healer.store.repository import Repository
from healer.store.rows import TokenRow

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> timedelta:
    """``90d``, ``12h``, ``30m``, ``45s`` or plain seconds; ConfigError otherwise."""
    unit = text[-1:].lower()
    number = text[:-1] if unit in _UNITS else text
    try:
        seconds = float(number) * _UNITS.get(unit, 1)
    except ValueError:
        seconds = -1.0
    if not 0 < seconds <= 10 * 365 * 86400:
        raise ConfigError("--expires-in", f"{text!r} is not a duration like 90d, 12h or 3600")
    return timedelta(seconds=seconds)


def _read_password(stream_is_tty: bool) -> str:
    if stream_is_tty:
        first = getpass.getpass("password: ")
        if getpass.getpass("again: ") != first:
            raise ConfigError("password", "the two entries differ")
        password = first
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    if len(password) < MIN_PASSWORD:
        raise ConfigError("password", f"must be at least {MIN_PASSWORD} characters (stdin)")
    return password


def _repo(args: argparse.Namespace) -> Repository:
    from healer.store.engine import open_store  # the store is only needed by these commands

    return open_store(settings_from_args(args))


def _user_add(args: argparse.Namespace) -> int:
    password = _read_password(sys.stdin.isatty())
    user = _repo(args).add_user(args.name, hash_password(password), args.role,
                                args.slack_user_id)
    print(f"user {user.name} added with role {user.role}")
    return 0


def _user_remove(args: argparse.Namespace) -> int:
    _repo(args).remove_user(args.name)  # NotFound is a HealerError: one line, exit 1
    print(f"user {args.name} removed, with their tokens and sessions; their votes no longer "
          "count")
    return 0


def _user_passwd(args: argparse.Namespace) -> int:
    password = _read_password(sys.stdin.isatty())
    ended = _repo(args).set_password(args.name, hash_password(password))
    print(f"password of {args.name} changed; {ended} session(s) signed out")
    return 0


def _user_role(args: argparse.Namespace) -> int:
    user = _repo(args).set_role(args.name, args.role)
    print(f"user {user.name} now has role {user.role}")
    return 0


def _user_list(args: argparse.Namespace) -> int:
    users = _repo(args).list_users()
    if args.json:
        print_json([u.model_dump(mode="json", exclude={"password_hash"}) for u in users])
        return 0
    for u in users:
        print(f"{u.name:<24} {u.role:<9} slack={u.slack_user_id or '-'}")
    return 0


def _token_create(args: argparse.Namespace) -> int:
    repo = _repo(args)
    role, user_id = args.role, None
    if args.user is not None:
        user = repo.get_user(args.user)
        if user is None:
            raise ConfigError("--user", f"no healer user {args.user!r}")
        if role is not None and is_service(role):
            raise ConfigError("--role", f"{role} is a service role; a person's token cannot "
                                        "have it")
        role, user_id = lesser_role(role or user.role, user.role), user.id
    elif role is None or not is_service(role):
        raise ConfigError("--user", "a person's token needs --user NAME (service tokens: "
                                    f"--role {'|'.join(SERVICE_ROLES)})")
    elif role == HOST_ROLE:
        raise ConfigError("--role", "a host token is bound to its host: create it with "
                                    "`healer host add ID`")
    expires = repo.now() + parse_duration(args.expires_in) if args.expires_in else None
    token = new_token()
    repo.add_token(args.name, hash_token(token), role, user_id=user_id, expires_at=expires)
    owner = f" for {args.user}" if args.user else ""
    until = f", expires {expires.isoformat()}" if expires else ""
    print(f"token {args.name} created{owner} with role {role}{until}; it is shown only once:")
    print(token)  # the LAST line, so scripts can `| tail -n1`
    return 0


def _token_state(row: TokenRow, now: datetime) -> str:
    if row.revoked_at is not None:
        return "revoked"
    return "active" if row.usable(now) else "expired"


def _token_list(args: argparse.Namespace) -> int:
    repo = _repo(args)
    now = repo.now()
    rows: list[dict[str, Any]] = [
        t.model_dump(mode="json", exclude={"token_hash"}) | {"state": _token_state(t, now)}
        for t in repo.list_tokens()]
    if args.json:
        print_json(rows)
        return 0
    for r in rows:
        print(f"{r['id']:>5}  {r['name']:<20} {r['role']:<9} user={r['owner'] or '-':<16} "
              f"{r['state']:<8} expires={r['expires_at'] or 'never'}")
    return 0


def _token_revoke(args: argparse.Namespace) -> int:
    row = _repo(args).revoke_token(args.id)
    print(f"token {row.id} ({row.name}) revoked")
    return 0


def _register_user(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    user = subparsers.add_parser("user", help="manage dashboard users")
    sub = user.add_subparsers(dest="user_command", metavar="COMMAND", required=True)
    add = sub.add_parser("add", help="add a user; the password is read from stdin")
    add.add_argument("name")
    add.add_argument("--role", choices=HUMAN_ROLES, default="viewer")
    add.add_argument("--slack-user-id", default=None, help="Slack user id (U...) for approvals")
    add.set_defaults(func=_user_add)
    remove = sub.add_parser("remove", help="remove a user, their tokens and sessions")
    remove.add_argument("name")
    remove.set_defaults(func=_user_remove)
    passwd = sub.add_parser("passwd", help="set a new password (stdin); signs the user out")
    passwd.add_argument("name")
    passwd.set_defaults(func=_user_passwd)
    role = sub.add_parser("role", help="change a user's role")
    role.add_argument("name")
    role.add_argument("role", choices=HUMAN_ROLES)
    role.set_defaults(func=_user_role)
    ls = sub.add_parser("list", help="list users")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=_user_list)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``user`` and ``token`` command groups."""
    _register_user(subparsers)
    token = subparsers.add_parser("token", help="manage API bearer tokens")
    sub = token.add_subparsers(dest="token_command", metavar="COMMAND", required=True)
    create = sub.add_parser("create", help="create a token; printed once, as the last line")
    create.add_argument("name")
    create.add_argument("--user", default=None, help="the person the token acts for")
    create.add_argument("--role", choices=HUMAN_ROLES + SERVICE_ROLES, default=None,
                        help="default: the user's role; ingest|host for a service token")
    create.add_argument("--expires-in", default=None, metavar="DURATION",
                        help="e.g. 90d, 12h, 3600 (default: never)")
    create.set_defaults(func=_token_create)
    ls = sub.add_parser("list", help="list tokens (never the secrets)")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=_token_list)
    revoke = sub.add_parser("revoke", help="revoke a token by id (see token list)")
    revoke.add_argument("id", type=row_id)
    revoke.set_defaults(func=_token_revoke)
