"""Secrets and signatures of the web layer: the key file, session cookies, CSRF tokens,
the login throttle, and who the client is behind a proxy.

The signing key is 32 random bytes kept in ``<state_dir>/web.key`` (mode 0600, made on
first start), so sessions survive restarts. A session cookie is
``base64(json{n, exp}) "." base64(HMAC-SHA256(session key, payload))`` where ``n`` is the
session id; the server keeps the id's SHA-256 in the sessions table, and a cookie whose
session is gone there (signed out, password changed, user removed) counts for nothing.
The CSRF token of a session is HMAC(csrf key, id), so a form token is only valid with its
own cookie.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import json
import logging
import os
import secrets
import stat
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from healer.logs import logfmt

log = logging.getLogger("healer.web")
KEY_FILE = "web.key"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def load_or_create_key(state_dir: Path) -> bytes:
    """Read the web signing key, creating it (0600) on first start."""
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = state_dir / KEY_FILE
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:  # someone loosened it: tighten rather than trust it silently
            log.warning(logfmt(msg="web key file too open; set to 0600", path=path, mode=oct(mode)))
            path.chmod(0o600)
        return bytes.fromhex(path.read_text().strip())
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_hex(32))
    log.info(logfmt(msg="web signing key created", path=path))
    return bytes.fromhex(path.read_text().strip())


@dataclass(frozen=True)
class Session:
    nonce: str  # the session id
    expires: float


class Signer:
    """Signs session cookies and derives CSRF tokens from one master key."""

    def __init__(self, key: bytes, *, max_age: float = 12 * 3600,
                 clock: Callable[[], float] = time.time) -> None:
        # Separate subkeys per purpose, so a CSRF token can never pass as a cookie signature.
        self._session_key = hmac.new(key, b"healer-session", hashlib.sha256).digest()
        self._csrf_key = hmac.new(key, b"healer-csrf", hashlib.sha256).digest()
        self.max_age = max_age
        self._clock = clock

    def new_session(self) -> tuple[str, Session]:
        """A signed cookie value for a fresh session id, and the session it encodes."""
        sess = Session(secrets.token_urlsafe(32), self._clock() + self.max_age)
        body = _b64(json.dumps({"n": sess.nonce, "exp": sess.expires}).encode())
        sig = _b64(hmac.new(self._session_key, body.encode(), hashlib.sha256).digest())
        return f"{body}.{sig}", sess

    def read_session(self, cookie: str | None) -> Session | None:
        """The session in a cookie, or None when unsigned, tampered or expired."""
        if not cookie or cookie.count(".") != 1:
            return None
        body, sig = cookie.split(".")
        want = _b64(hmac.new(self._session_key, body.encode(), hashlib.sha256).digest())
        if not hmac.compare_digest(want, sig):
            return None
        try:
            data = json.loads(_unb64(body))
            sess = Session(str(data["n"]), float(data["exp"]))
        except (ValueError, KeyError, TypeError):
            return None
        return sess if sess.expires > self._clock() else None

    def csrf_token(self, nonce: str) -> str:
        """The CSRF token bound to a session (or pre-login) nonce."""
        return _b64(hmac.new(self._csrf_key, nonce.encode(), hashlib.sha256).digest())

    def check_csrf(self, nonce: str | None, token: str | None) -> bool:
        """Constant-time check that ``token`` belongs to ``nonce``."""
        if not nonce or not token:
            return False
        return hmac.compare_digest(self.csrf_token(nonce), token)


class RateLimiter:
    """At most ``limit`` events per ``window`` seconds per key."""

    def __init__(self, limit: int = 5, window: float = 60.0, *,
                 clock: Callable[[], float] = time.monotonic, max_keys: int = 10_000) -> None:
        self.limit, self.window, self._clock, self._max_keys = limit, window, clock, max_keys
        self._hits: dict[str, deque[float]] = {}

    def allow(self, key: str) -> bool:
        """Record one attempt for ``key``; False when it is over the limit."""
        now = self._clock()
        hits = self._hits.setdefault(key, deque())
        while hits and now - hits[0] >= self.window:
            hits.popleft()
        if len(hits) >= self.limit:
            return False
        hits.append(now)
        if len(self._hits) > self._max_keys:  # bound memory against many distinct keys
            self._prune(now)
        return True

    def _prune(self, now: float) -> None:
        for k in [k for k, h in self._hits.items() if not h or now - h[-1] >= self.window]:
            del self._hits[k]


class LoginThrottle:
    """Login attempts per client address and over all clients, each per minute.

    Keyed by address, not by user name: guesses spread over random names still count.
    The global limit bounds the argon2 work anonymous clients can cause in total.
    """

    def __init__(self, per_address: int = 10, overall: int = 100, window: float = 60.0, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._per_address = RateLimiter(per_address, window, clock=clock)
        self._overall = RateLimiter(overall, window, clock=clock)

    def allow(self, address: str) -> bool:
        """Count one attempt from ``address``; False when either limit is exceeded."""
        return self._per_address.allow(address) and self._overall.allow("*")


Networks = tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]


def parse_networks(entries: list[str]) -> Networks:
    """``127.0.0.1``, ``10.0.0.0/8``, ``::1`` as networks; ValueError names a bad entry."""
    return tuple(ipaddress.ip_network(e.strip(), strict=False) for e in entries)


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text.strip())
    except ValueError:
        return None


def _trusted(ip: ipaddress.IPv4Address | ipaddress.IPv6Address | None,
             trusted: Networks) -> bool:
    return ip is not None and any(ip in net for net in trusted)


def client_address(peer: str, forwarded_for: str | None, trusted: Networks) -> str:
    """The client: the peer, unless the peer is a trusted proxy.

    Then X-Forwarded-For is read from the right (each proxy appends the address it saw),
    skipping trusted proxies; the first other address is the client. Headers from an
    untrusted peer are ignored, so a client cannot choose its own address; a malformed
    hop ends the walk at the peer.
    """
    if not forwarded_for or not _trusted(_ip(peer), trusted):
        return peer
    for hop in reversed(forwarded_for.split(",")):
        ip = _ip(hop)
        if ip is None:
            return peer
        if not _trusted(ip, trusted):
            return str(ip)
    return peer
