"""Replace host-identifying data with stable placeholders before text leaves the host.

A ``Redactor`` maps each distinct hostname, IP or MAC address, user name, home path,
container id and pod id to a placeholder (``HOST_1``, ``IP_2``, ...) and keeps the
reverse map, so the LLM's answer can be shown with the real names and its proposals
can name the real cgroup paths again.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

# Accounts below this uid are system accounts (login.defs UID_MIN); their names
# ("daemon", "postgres") identify software, not people.
UID_MIN = 1000
_SYSTEM_USERS = frozenset({"root", "nobody", "daemon", "bin", "sys", ""})

_PLACEHOLDER_RE = re.compile(r"\b(?:HOST|IP|MAC|USER|HOME|CTR|POD|NAME)_[0-9]+\b")
# Container runtimes name cgroups after a 64-hex id: docker-<id>.scope, /docker/<id>,
# cri-containerd-<id>.scope, crio-<id>.scope.
_CONTAINER_RE = re.compile(r"(?<![0-9a-f])[0-9a-f]{64}(?![0-9a-f])")
# kubepods cgroups carry the pod UID, with '-' (cgroupfs) or '_' (systemd driver).
_POD_RE = re.compile(
    r"(?<![0-9A-Za-z])pod[0-9a-f]{8}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{12}"
)
_HOME_RE = re.compile(r"(?<![\w./-])(?:/home/[A-Za-z0-9._-]+|/root)(?=/|\b|$)")
_MAC_RE = re.compile(r"(?<![0-9A-Fa-f:])(?:[0-9A-Fa-f]{2}[:-]){5}[0-9A-Fa-f]{2}(?![0-9A-Fa-f:])")
_IPV6_CAND_RE = re.compile(
    r"(?<![0-9A-Fa-f:.])[0-9A-Fa-f:]*:[0-9A-Fa-f:]*:[0-9A-Fa-f:.]*(?![0-9A-Fa-f:])"
)
_IPV4_RE = re.compile(r"(?<![0-9.])(?:[0-9]{1,3}\.){3}[0-9]{1,3}(?![0-9.])")
_KEEP_IPS = frozenset({"0.0.0.0", "127.0.0.1", "::", "::1"})


def passwd_users(text: str) -> tuple[set[str], set[str]]:
    """Split a passwd(5) text into (people, system accounts) by uid."""
    people: set[str] = set()
    system: set[str] = set()
    for line in text.splitlines():
        parts = line.split(":")
        if len(parts) < 3 or not parts[2].isdigit():
            continue
        (people if int(parts[2]) >= UID_MIN and parts[0] != "nobody" else system).add(parts[0])
    return people, system


def read_passwd(path: Path = Path("/etc/passwd")) -> str:
    """The passwd text, or empty when it cannot be read."""
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


class Redactor:
    """Stable, reversible placeholders for one conversation with the LLM."""

    def __init__(
        self,
        hostnames: Iterable[str] = (),
        users: Iterable[str] = (),
        names: Iterable[str] = (),
        passwd_text: str = "",
    ) -> None:
        people, system = passwd_users(passwd_text)
        candidates = set(users) | people
        self._users = sorted(
            (u for u in candidates if len(u) >= 2 and u not in system and u not in _SYSTEM_USERS),
            key=len, reverse=True,
        )
        hosts: set[str] = set()
        for h in hostnames:
            if h and h != "localhost":
                hosts.add(h)
                if "." in h:
                    hosts.add(h.split(".", 1)[0])
        self._hosts = sorted((h for h in hosts if len(h) >= 2), key=len, reverse=True)
        self._names = sorted((n for n in names if len(n) >= 3), key=len, reverse=True)
        self._fwd: dict[str, str] = {}
        self._rev: dict[str, str] = {}
        self._counts: dict[str, int] = {}

    @property
    def mapping(self) -> Mapping[str, str]:
        """placeholder -> original, for display."""
        return dict(self._rev)

    def _ph(self, kind: str, original: str) -> str:
        ph = self._fwd.get(original)
        if ph is None:
            n = self._counts[kind] = self._counts.get(kind, 0) + 1
            ph = f"{kind}_{n}"
            self._fwd[original] = ph
            self._rev[ph] = original
        return ph

    def _sub(self, regex: re.Pattern[str], kind: str, text: str,
             keep: Callable[[str], bool] | None = None) -> str:
        def repl(m: re.Match[str]) -> str:
            s = m.group(0)
            return s if keep is not None and keep(s) else self._ph(kind, s)
        return regex.sub(repl, text)

    def _words(self, words: list[str], kind: str, text: str) -> str:
        if not words:
            return text
        # A short name is not matched inside a longer dotted name (host "vm" must leave
        # vm.overcommit_memory alone); a longer one is, as in web01.prod.example.com.
        for group, tail in (([w for w in words if len(w) >= 5], r"(?![\w-])"),
                            ([w for w in words if len(w) < 5], r"(?![\w-]|\.\w)")):
            if group:
                alt = "|".join(re.escape(w) for w in group)
                rx = re.compile(rf"(?<![\w.-])(?:{alt}){tail}", re.IGNORECASE)
                text = self._sub(rx, kind, text)
        return text

    def redact(self, text: str) -> str:
        """Text with every identifying token replaced by its placeholder."""
        text = self._sub(_CONTAINER_RE, "CTR", text)
        text = self._sub(_POD_RE, "POD", text)
        text = self._words(self._names, "NAME", text)
        text = self._sub(_HOME_RE, "HOME", text)
        text = self._words(self._hosts, "HOST", text)
        text = self._sub(_MAC_RE, "MAC", text)
        text = self._sub(_IPV6_CAND_RE, "IP", text, keep=lambda s: not _is_ip(s, 6))
        text = self._sub(_IPV4_RE, "IP", text, keep=lambda s: not _is_ip(s, 4))
        return self._words(self._users, "USER", text)

    def unredact(self, text: str) -> str:
        """Placeholders back to the originals (for display and for proposal fields)."""
        return _PLACEHOLDER_RE.sub(lambda m: self._rev.get(m.group(0), m.group(0)), text)

    def unredact_obj(self, obj: Any) -> Any:
        """``unredact`` applied to every string inside dicts and lists."""
        if isinstance(obj, str):
            return self.unredact(obj)
        if isinstance(obj, dict):
            return {k: self.unredact_obj(v) for k, v in obj.items()}
        if isinstance(obj, list):
            return [self.unredact_obj(v) for v in obj]
        return obj


def _is_ip(s: str, version: int) -> bool:
    if s in _KEEP_IPS:
        return False
    try:
        addr = ipaddress.ip_address(s)
    except ValueError:
        return False
    return addr.version == version
