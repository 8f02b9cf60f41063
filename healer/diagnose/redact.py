"""Replace host-identifying data with stable placeholders before text leaves the host.

A ``Redactor`` maps each distinct hostname, fully qualified domain name, IP or MAC
address, e-mail address, user name, home path, container id, pod id and credential
(GitHub, Slack, AWS, OpenAI and healer tokens, JWTs) to a placeholder (``HOST_1``,
``IP_2``, ``SECRET_1``, ...) and keeps the reverse map, so the LLM's answer can be shown
with the real names and its proposals can name the real cgroup paths again.

The text is untrusted (kernel lines, process names, cgroup paths), so every pattern runs
on RE2 (``guardrails.linear``). RE2 has no lookarounds: a pattern finds candidates, and
the characters around each one are checked in plain code (``_Rule``).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from guardrails import linear

# Accounts below this uid are system accounts (login.defs UID_MIN); their names
# ("daemon", "postgres") identify software, not people.
UID_MIN = 1000
_SYSTEM_USERS = frozenset({"root", "nobody", "daemon", "bin", "sys", ""})

_PLACEHOLDER_RE = linear.compile(
    r"\b(?:HOST|IP|MAC|USER|HOME|CTR|POD|NAME|EMAIL|SECRET)_[0-9]+\b")
# Credentials by their published shapes: GitHub (ghp_, gho_, ghu_, ghs_, ghr_,
# github_pat_), Slack (xoxb-, xoxp-, xoxa-, xoxr-, xoxs-, xoxe-), AWS access key ids
# (AKIA, ASIA), OpenAI keys (sk-, sk-proj-), healer's own API tokens (hlr_), and JWTs.
_SECRET_RE = linear.compile(
    r"(?:gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,}|xox[abeoprs]-[A-Za-z0-9-]{8,}"
    r"|A[SK]IA[0-9A-Z]{16}|sk-[A-Za-z0-9_-]{16,}|hlr_[A-Za-z0-9_-]{20,}"
    r"|eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,})")
# Container runtimes name cgroups after a 64-hex id: docker-<id>.scope, /docker/<id>,
# cri-containerd-<id>.scope, crio-<id>.scope. A longer hex run is not an id.
_CONTAINER_RE = linear.compile(r"[0-9a-f]{64,}")
# kubepods cgroups carry the pod UID, with '-' (cgroupfs) or '_' (systemd driver).
_POD_RE = linear.compile(
    r"pod[0-9a-f]{8}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{12}")
_HOME_RE = linear.compile(r"/home/[A-Za-z0-9._-]+|/root")
_EMAIL_RE = linear.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")
# A run of hostname characters with dots; _fqdn decides whether it names a host.
_FQDN_RE = linear.compile(r"[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")
_MAC_RE = linear.compile(r"(?:[0-9A-Fa-f]{2}[:-]){5}[0-9A-Fa-f]{2}")
# A whole run of address characters with two or more colons; validated by ipaddress.
_IPV6_RE = linear.compile(r"[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*")
_IPV4_RE = linear.compile(r"[0-9]{1,3}(?:\.[0-9]{1,3}){3}")
_KEEP_IPS = frozenset({"0.0.0.0", "127.0.0.1", "::", "::1"})
# Top-level domains that mark a dotted word as a host name rather than a sysctl key or a
# metric (net.core.somaxconn, psi.io...): the common generic ones and in-house suffixes.
_TLDS = frozenset({
    "com", "net", "org", "io", "dev", "app", "cloud", "ai", "co", "info", "biz", "edu",
    "gov", "mil", "int", "local", "lan", "internal", "intranet", "corp", "home", "example",
    "test", "localdomain", "svc", "cluster", "us", "uk", "de", "fr", "nl", "eu", "jp", "cn",
    "in", "ca", "au", "ch", "se", "no", "fi", "es", "it", "pl", "ru", "br", "kr", "sg",
})
# systemd unit suffixes: "user@1000.service" is a unit, not an e-mail address.
_UNIT_SUFFIXES = (".service", ".scope", ".slice", ".socket", ".mount", ".target",
                  ".timer", ".swap", ".path", ".device", ".automount")
_WORD = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")
_ALNUM = _WORD - {"_"}


def _before(text: str, start: int) -> str:
    return text[start - 1] if start > 0 else ""


def _after(text: str, end: int, n: int = 1) -> str:
    return text[end:end + n]


# An accept function gets (text, start, end) of a candidate and returns the end of the
# part to redact, or None to leave the candidate alone.
Accept = Callable[[str, int, int], int | None]


def _whole(text: str, start: int, end: int) -> int | None:
    return end


def _container(text: str, start: int, end: int) -> int | None:
    return end if end - start == 64 else None


def _not_after_alnum(text: str, start: int, end: int) -> int | None:
    return None if _before(text, start) in _ALNUM else end


def _home(text: str, start: int, end: int) -> int | None:
    if _before(text, start) in _WORD | {".", "/", "-"}:
        return None
    if text[start:end] == "/root" and _after(text, end) in _WORD:
        return None  # /rootfs is not root's home
    return end


def _email(text: str, start: int, end: int) -> int | None:
    found = text[start:end]
    domain = found.rsplit("@", 1)[1]
    tld = domain.rsplit(".", 1)[-1]
    if found.lower().endswith(_UNIT_SUFFIXES) or not tld.isalpha() or len(tld) < 2:
        return None
    return end


def _fqdn(text: str, start: int, end: int) -> int | None:
    if _before(text, start) in _WORD | {".", "-"}:
        return None
    nxt = _after(text, end)
    if nxt in _WORD | {"-"} or (nxt == "." and _after(text, end + 1, 1) in _WORD):
        return None
    labels = text[start:end].split(".")
    if labels[-1].lower() not in _TLDS or not any(c.isalpha() for c in labels[0]):
        return None
    return end


def _mac(text: str, start: int, end: int) -> int | None:
    hexish = set("0123456789abcdefABCDEF:")
    return None if _before(text, start) in hexish or _after(text, end) in hexish else end


def _ip(text: str, start: int, end: int, version: int) -> int | None:
    end = start + len(text[start:end].rstrip("."))  # "10.1.2.3." ends a sentence
    found = text[start:end]
    if found in _KEEP_IPS:
        return None
    try:
        return end if ipaddress.ip_address(found).version == version else None
    except ValueError:
        return None


def _ipv6(text: str, start: int, end: int) -> int | None:
    return _ip(text, start, end, 6)


def _ipv4(text: str, start: int, end: int) -> int | None:
    if _before(text, start) in set("0123456789."):
        return None
    nxt = _after(text, end)
    if nxt.isdigit() or (nxt == "." and _after(text, end + 1).isdigit()):
        return None  # part of a longer dotted number (a version, an OID)
    return _ip(text, start, end, 4)


def _word_accept(long: bool) -> Accept:
    """Host names and given names: not inside a longer word or dotted name; a short one
    is not matched before ``.word`` either (host "vm" leaves vm.overcommit_memory)."""

    def accept(text: str, start: int, end: int) -> int | None:
        if _before(text, start) in _WORD | {".", "-"}:
            return None
        nxt = _after(text, end)
        if nxt in _WORD | {"-"} or (not long and nxt == "." and _after(text, end + 1) in _WORD):
            return None
        return end

    return accept


def _user(text: str, start: int, end: int) -> int | None:
    """User names also inside paths and unit names: /srv/bob/x, user-bob.slice,
    alice-cache, bob.slice; but not inside a word or an underscore name (max_per_x), nor
    as the tail of a hyphenated key (fs.file-max) unless a unit suffix or ``/`` follows."""
    before, nxt = _before(text, start), _after(text, end)
    if before in _WORD | {"."} or nxt in _WORD:
        return None
    if before == "-" and nxt != "/" and not text[end:end + 12].lower().startswith(
            _UNIT_SUFFIXES):
        return None
    if nxt == "." and _after(text, end + 1) in _WORD and end - start < 5:
        rest = text[end:end + 12].lower()
        if not rest.startswith(_UNIT_SUFFIXES):
            return None  # a short name before ".word" is a dotted key (net.core...)
    return end


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

    def _sub(self, pattern: linear.Pattern, kind: str, text: str, accept: Accept) -> str:
        out: list[str] = []
        pos = 0
        for m in pattern.finditer(text):
            start = m.start()
            end = accept(text, start, m.end())
            if end is None or start < pos:
                continue
            out += [text[pos:start], self._ph(kind, text[start:end])]
            pos = end
        out.append(text[pos:])
        return "".join(out)

    def _words(self, words: list[str], kind: str, text: str,
               accept: Callable[[bool], Accept] | None = None) -> str:
        for group, long in (([w for w in words if len(w) >= 5], True),
                            ([w for w in words if len(w) < 5], False)):
            if group:
                alt = "|".join(linear.escape(w) for w in group)
                rule = accept(long) if accept is not None else _word_accept(long)
                text = self._sub(linear.compile(f"(?i)(?:{alt})"), kind, text, rule)
        return text

    def redact(self, text: str) -> str:
        """Text with every identifying token replaced by its placeholder."""
        text = self._sub(_SECRET_RE, "SECRET", text, _not_after_alnum)
        text = self._sub(_CONTAINER_RE, "CTR", text, _container)
        text = self._sub(_POD_RE, "POD", text, _not_after_alnum)
        text = self._words(self._names, "NAME", text)
        text = self._sub(_EMAIL_RE, "EMAIL", text, _email)
        text = self._sub(_HOME_RE, "HOME", text, _home)
        text = self._words(self._hosts, "HOST", text)
        text = self._sub(_FQDN_RE, "HOST", text, _fqdn)
        text = self._sub(_MAC_RE, "MAC", text, _mac)
        text = self._sub(_IPV6_RE, "IP", text, _ipv6)
        text = self._sub(_IPV4_RE, "IP", text, _ipv4)
        return self._words(self._users, "USER", text, lambda _long: _user)

    def unredact(self, text: str) -> str:
        """Placeholders back to the originals (for display and for proposal fields)."""
        out: list[str] = []
        pos = 0
        for m in _PLACEHOLDER_RE.finditer(text):
            out += [text[pos:m.start()], self._rev.get(m.group(0), m.group(0))]
            pos = m.end()
        out.append(text[pos:])
        return "".join(out)

    def unredact_obj(self, obj: Any) -> Any:
        """``unredact`` applied to every string inside dicts and lists."""
        if isinstance(obj, str):
            return self.unredact(obj)
        if isinstance(obj, dict):
            return {k: self.unredact_obj(v) for k, v in obj.items()}
        if isinstance(obj, list):
            return [self.unredact_obj(v) for v in obj]
        return obj
