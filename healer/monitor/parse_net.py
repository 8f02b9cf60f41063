"""Pure parsers for /proc/net/{snmp,netstat,sockstat} (text in, metrics out).

snmp and netstat share one format: pairs of lines, a header ``Section: Field ...``
and a value line ``Section: 1 2 ...`` (net/ipv4/proc.c). Naming: the extension
sections fold into their base protocol and TcpExt drops its ``TCP`` prefix, so
``TcpExt ListenOverflows`` -> ``net.tcp.listen_overflows_total``,
``TcpExt TCPBacklogDrop`` -> ``net.tcp.backlog_drop_total`` and ``Tcp RetransSegs``
-> ``net.tcp.retrans_segs_total``. If a folded name would collide, the field keeps
its own section (``net.tcpext.<field>_total``). Everything is a counter except the
few gauges listed in ``_GAUGES`` (RFC 4022/4293 constants and CurrEstab).
"""

from __future__ import annotations

from functools import lru_cache

from healer.errors import ParseError
from healer.monitor.parse_proc import snake

_FOLD = {"TcpExt": "tcp", "IpExt": "ip", "MPTcpExt": "mptcp"}
_GAUGES = frozenset(
    {
        ("Tcp", "RtoAlgorithm"),
        ("Tcp", "RtoMin"),
        ("Tcp", "RtoMax"),
        ("Tcp", "MaxConn"),
        ("Tcp", "CurrEstab"),
        ("Ip", "Forwarding"),
        ("Ip", "DefaultTTL"),
        ("Ip6", "Forwarding"),
    }
)


@lru_cache(maxsize=4096)
def _names(section: str, field: str) -> tuple[str, str]:
    """(preferred, fallback) metric names for one field."""
    gauge = (section, field) in _GAUGES
    suffix = "" if gauge else "_total"
    own = f"net.{section.lower()}.{snake(field)}{suffix}"
    fold = _FOLD.get(section)
    if fold is None:
        return own, own
    short = field[3:] if section == "TcpExt" and field.startswith("TCP") else field
    return f"net.{fold}.{snake(short)}{suffix}", own


def parse_snmp(
    text: str, path: str = "net/snmp", into: dict[str, float] | None = None
) -> dict[str, float]:
    """Every counter of /proc/net/snmp or /proc/net/netstat, named as the module says."""
    out: dict[str, float] = {} if into is None else into
    lines = text.splitlines()
    if len(lines) % 2:
        raise ParseError(path, "odd number of lines")
    for header, values in zip(lines[::2], lines[1::2], strict=True):
        section, _, fields = header.partition(":")
        vsection, _, nums = values.partition(":")
        keys, vals = fields.split(), nums.split()
        if section != vsection or len(keys) != len(vals):
            raise ParseError(path, f"header and values disagree in section {section!r}")
        for key, val in zip(keys, vals, strict=True):
            name, fallback = _names(section, key)
            if name in out and name != fallback:
                name = fallback
            try:
                out[name] = float(int(val))
            except ValueError as exc:
                raise ParseError(path, f"{section} {key}: not a number {val!r}") from exc
    return out


# Values counted in pages rather than sockets (net/ipv4/proc.c sockstat_seq_show).
_PAGE_FIELDS = frozenset({"mem"})


def parse_sockstat(text: str, path: str = "net/sockstat") -> dict[str, float]:
    """``TCP: inuse 1 orphan 0 tw 1 alloc 1 mem 117`` -> ``net.sockstat.tcp_inuse`` etc."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        section, sep, rest = line.partition(":")
        parts = rest.split()
        if not sep or len(parts) % 2:
            raise ParseError(path, f"bad line {line!r}")
        prefix = snake(section)
        for key, val in zip(parts[::2], parts[1::2], strict=True):
            unit = "_pages" if key in _PAGE_FIELDS else ("_bytes" if key == "memory" else "")
            try:
                out[f"net.sockstat.{prefix}_{key}{unit}"] = float(int(val))
            except ValueError as exc:
                raise ParseError(path, f"{section} {key}: not a number {val!r}") from exc
    return out
