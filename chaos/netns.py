"""Network namespaces through iproute2 (ip-netns(8)).

Sysctls under ``net.`` are per namespace (Documentation/networking/ip-sysctl.rst), so a
scenario tunes its own namespace and the host's values never move. Reads and writes go
through ``ip netns exec``, which setns(2)es before it opens ``/proc/sys``.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
from pathlib import Path

from chaos.proc import NETNS_RUN_DIR

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class NetnsError(RuntimeError):
    """An ip-netns command failed."""


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=15)
    if check and res.returncode != 0:
        raise NetnsError(f"ip {' '.join(args)}: {res.stderr.strip()}")
    return res


def _check(name: str) -> str:
    if not NAME_RE.match(name):
        raise ValueError(f"bad netns name {name!r}")
    return name


def exists(name: str) -> bool:
    """True when the named namespace is mounted under /run/netns."""
    return (NETNS_RUN_DIR / _check(name)).exists()


def create(name: str) -> None:
    """Create the namespace and bring its loopback up (idempotent)."""
    if not exists(name):
        _ip("netns", "add", _check(name))
    _ip("-n", name, "link", "set", "lo", "up")


def pids(name: str) -> list[int]:
    """Processes whose network namespace is this one (`ip netns pids`)."""
    res = _ip("netns", "pids", _check(name), check=False)
    return [int(p) for p in res.stdout.split() if p.isdigit()]


def delete(name: str) -> None:
    """Kill every process inside, then delete the namespace (idempotent)."""
    if not exists(name):
        return
    for pid in pids(name):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    _ip("netns", "del", name, check=False)


def list_chaos(prefix: str = "healer-chaos-") -> list[str]:
    """Names of namespaces chaos made (for leak checks)."""
    if not NETNS_RUN_DIR.is_dir():
        return []
    return sorted(p.name for p in NETNS_RUN_DIR.iterdir() if p.name.startswith(prefix))


def _sysctl_path(key: str) -> str:
    if not re.fullmatch(r"net(\.[A-Za-z0-9_-]+)+", key):
        raise ValueError(f"only net.* sysctls are per-namespace: {key!r}")
    return "/proc/sys/" + key.replace(".", "/")


def read_sysctl(name: str, key: str) -> str:
    """The value of a net.* sysctl inside the namespace, whitespace-normalised."""
    res = subprocess.run(
        ["ip", "netns", "exec", _check(name), "cat", _sysctl_path(key)],
        capture_output=True,
        text=True,
        timeout=15,
    )
    if res.returncode != 0:
        raise NetnsError(f"read {key} in {name}: {res.stderr.strip()}")
    return " ".join(res.stdout.split())


def write_sysctl(name: str, key: str, value: str) -> None:
    """Write a net.* sysctl inside the namespace; never the host's."""
    res = subprocess.run(
        ["ip", "netns", "exec", _check(name), "tee", _sysctl_path(key)],
        input=f"{value}\n",
        capture_output=True,
        text=True,
        timeout=15,
    )
    if res.returncode != 0:
        raise NetnsError(f"write {key}={value} in {name}: {res.stderr.strip()}")


def netstat(pid: int) -> dict[str, int]:
    """TcpExt counters of the namespace pid lives in (/proc/PID/net/netstat)."""
    return parse_netstat(Path(f"/proc/{pid}/net/netstat").read_text())


def parse_netstat(text: str) -> dict[str, int]:
    """Parse /proc/net/netstat's header/value line pairs into ``{"TcpExt.X": n}``."""
    out: dict[str, int] = {}
    lines = text.splitlines()
    for head, vals in zip(lines[::2], lines[1::2], strict=False):
        prefix, _, names = head.partition(":")
        for k, v in zip(names.split(), vals.partition(":")[2].split(), strict=False):
            with contextlib.suppress(ValueError):
                out[f"{prefix}.{k}"] = int(v)
    return out
