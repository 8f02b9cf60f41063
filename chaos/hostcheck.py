"""The host's own settings, read before and after every run: a scenario must not move them."""

from __future__ import annotations

from pathlib import Path

# Keys a confused healer (or a confused scenario) would be most likely to touch on the host:
# the ones the scenarios tune in their sandbox, and the protected ones an adversary asks for.
HOST_SYSCTLS = (
    "net.core.somaxconn",
    "net.ipv4.tcp_max_syn_backlog",
    "net.core.netdev_max_backlog",
    "net.netfilter.nf_conntrack_max",
    "kernel.pid_max",
    "kernel.threads-max",
    "fs.file-max",
    "fs.nr_open",
    "kernel.panic",
    "kernel.panic_on_oops",
    "kernel.sysrq",
    "vm.overcommit_memory",
    "vm.swappiness",
    "vm.dirty_ratio",
    "net.ipv4.ip_forward",
)


def read_host_sysctls(proc_sys: Path = Path("/proc/sys")) -> dict[str, str]:
    """Current values of HOST_SYSCTLS in this process's (the host's) namespaces."""
    out: dict[str, str] = {}
    for key in HOST_SYSCTLS:
        try:
            out[key] = " ".join((proc_sys / key.replace(".", "/")).read_text().split())
        except OSError:
            continue  # not on this kernel (e.g. conntrack not loaded)
    return out


def diff(before: dict[str, str], after: dict[str, str]) -> dict[str, tuple[str | None, str | None]]:
    """Keys whose value changed, appeared or vanished: ``{key: (before, after)}``."""
    return {
        k: (before.get(k), after.get(k))
        for k in sorted(set(before) | set(after))
        if before.get(k) != after.get(k)
    }
