"""/proc/net/{snmp,netstat,sockstat} and conntrack, for the host or one network namespace.

With a ``NetnsRunner`` the files are read from the runner's thread through
``/proc/thread-self/net``, which shows that thread's namespace (proc(5)); the
conntrack sysctls under /proc/sys/net are per namespace in the same way.
"""

from __future__ import annotations

from pathlib import Path

from healer.host.netns import NetnsRunner
from healer.models import SamplePart
from healer.monitor.parse_net import parse_snmp, parse_sockstat
from healer.monitor.parse_proc import parse_int
from healer.monitor.procfs import ProcReader
from healer.monitor.system import ProcFileCollector

_CONNTRACK = "sys/net/netfilter/nf_conntrack_"


class NetCollector(ProcFileCollector):
    """TCP/IP/UDP counters, socket counts and conntrack fill, host-wide or in a netns."""

    name = "net"

    def __init__(
        self,
        procfs_root: Path = Path("/proc"),
        reader: ProcReader | None = None,
        runner: NetnsRunner | None = None,
    ) -> None:
        super().__init__(procfs_root, reader)
        self._runner = runner
        self._net = "thread-self/net" if runner is not None else "net"
        self._conntrack = True  # False once we learn nf_conntrack is not loaded

    def collect(self) -> SamplePart:
        if self._runner is not None:
            return SamplePart(metrics=self._runner.call(self._collect))
        return SamplePart(metrics=self._collect())

    def _collect(self) -> dict[str, float]:
        metrics: dict[str, float] = {}
        for name in ("snmp", "netstat"):
            rel = f"{self._net}/{name}"
            parse_snmp(self._read(rel), self._path(rel), into=metrics)
        rel = f"{self._net}/sockstat"
        metrics.update(parse_sockstat(self._read(rel), self._path(rel)))
        if self._conntrack:
            self._add_conntrack(metrics)
        return metrics

    def _add_conntrack(self, metrics: dict[str, float]) -> None:
        # Without the nf_conntrack module the files do not exist; stop looking.
        try:
            count = self._reader.read(self._path(f"{_CONNTRACK}count"))
            cmax = self._reader.read(self._path(f"{_CONNTRACK}max"))
        except FileNotFoundError:
            self._conntrack = False
            return
        except OSError:
            return
        c = parse_int(count, f"{_CONNTRACK}count")
        m = parse_int(cmax, f"{_CONNTRACK}max")
        metrics["net.conntrack.count"] = float(c)
        metrics["net.conntrack.max"] = float(m)
        metrics["net.conntrack.used_percent"] = 100.0 * c / max(m, 1)
