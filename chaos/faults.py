"""The fault protocol: ``inject()``, ``revert()``, ``is_active()``, each idempotent.

Every fault records how to undo itself before it changes anything and arms a TTL watchdog
(``chaos.watchdog``) with those steps, so it reverts on expiry or when the runner dies,
even by SIGKILL. ``revert()`` runs the same steps in process and cancels the watchdog.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from chaos import gpusim, netns, watchdog
from chaos.cgroups import CgroupFS
from chaos.proc import create_time, same_process, spawn
from chaos.undo import Step, run_steps

DEFAULT_TTL = 300.0


class Fault:
    """Base class: subclasses give ``_prepare`` (undo steps), ``_apply`` and ``_active``."""

    def __init__(self, label: str, ttl: float = DEFAULT_TTL, log: Path | None = None) -> None:
        self.label = label
        self.ttl = ttl
        self.log = log
        self._steps: list[Step] | None = None
        self._dog: subprocess.Popen[bytes] | None = None
        self._reverted = False

    def inject(self) -> None:
        """Apply the fault once; a second call while active does nothing."""
        if self._steps is not None and not self._reverted and self.is_active():
            return
        self._steps = self._prepare()
        self._arm()
        self._reverted = False
        self._apply()

    def revert(self) -> list[str]:
        """Undo the fault and cancel its watchdog; returns errors (empty when clean)."""
        if self._steps is None or self._reverted:
            return []
        errors = run_steps(self._steps)
        if self._dog is not None:
            watchdog.cancel(self._dog)
        self._reverted = True
        return errors

    def is_active(self) -> bool:
        """True while the fault is in effect."""
        return self._steps is not None and not self._reverted and self._active()

    @property
    def watchdog_pid(self) -> int | None:
        """The pid of the armed watchdog (tests kill the runner and watch this)."""
        return self._dog.pid if self._dog else None

    def _arm(self) -> None:
        if self._dog is not None:
            watchdog.cancel(self._dog)
        spec = {
            "ttl": self.ttl,
            "owner": os.getpid(),
            "owner_ctime": create_time(os.getpid()),
            "steps": self._steps,
            "label": self.label,
        }
        self._dog = watchdog.start(spec, self.log)

    def _prepare(self) -> list[Step]:
        raise NotImplementedError

    def _apply(self) -> None:
        raise NotImplementedError

    def _active(self) -> bool:
        raise NotImplementedError


class NetnsSysctl(Fault):
    """Set a net.* sysctl inside a network namespace."""

    def __init__(self, ns: str, key: str, value: str, **kw: Any) -> None:
        super().__init__(f"sysctl {key}={value} in {ns}", **kw)
        self.ns, self.key, self.value = ns, key, value
        self.original: str | None = None

    def _prepare(self) -> list[Step]:
        self.original = netns.read_sysctl(self.ns, self.key)
        return [{"op": "sysctl", "netns": self.ns, "key": self.key, "value": self.original}]

    def _apply(self) -> None:
        netns.write_sysctl(self.ns, self.key, self.value)

    def _active(self) -> bool:
        return netns.exists(self.ns) and netns.read_sysctl(self.ns, self.key) == self.value


class CgroupKnob(Fault):
    """Set a cgroup knob (by its v2 name) on a scratch cgroup."""

    def __init__(self, cg: CgroupFS, path: str, knob: str, value: str, **kw: Any) -> None:
        super().__init__(f"{path}:{knob}={value}", **kw)
        self.cg, self.path, self.knob, self.value = cg, path, knob, value
        self.original: str | None = None

    def _file(self) -> Path:
        return self.cg._dir(self.path, self.knob) / self.cg.knob_name(self.knob)

    def _prepare(self) -> list[Step]:
        self.original = self._file().read_text().strip()
        return [{"op": "write", "path": str(self._file()), "value": self.original}]

    def _apply(self) -> None:
        self.cg.write(self.path, self.knob, self.value)

    def _active(self) -> bool:
        try:
            return self._file().read_text().strip() != self.original
        except OSError:
            return False


class Workload(Fault):
    """A process (and its process group) started confined; revert kills the group."""

    def __init__(
        self,
        label: str,
        argv: Sequence[str],
        *,
        ns: str | None = None,
        cg: CgroupFS | None = None,
        cgroup: str | None = None,
        rlimits: Mapping[int, tuple[int, int]] | None = None,
        env: Mapping[str, str] | None = None,
        out: Path | None = None,
        **kw: Any,
    ) -> None:
        super().__init__(label, **kw)
        self.argv, self.ns, self.rlimits, self.env, self.out = list(argv), ns, rlimits, env, out
        self.procs_files = cg.procs_files(cgroup) if cg and cgroup else []
        self.proc: subprocess.Popen[bytes] | None = None
        self.ctime: float | None = None

    @property
    def pid(self) -> int:
        """The workload's pid (it leads its own process group)."""
        assert self.proc is not None, "not started"
        return self.proc.pid

    def inject(self) -> None:
        """Start the process once; its pid is known only after the spawn, so arm then."""
        if self.is_active():
            return
        self.proc = spawn(
            self.argv,
            netns=self.ns,
            procs_files=self.procs_files,
            rlimits=self.rlimits,
            env=self.env,
            log=self.out,
        )
        self.ctime = create_time(self.proc.pid)
        self._steps = [{"op": "kill", "pid": self.proc.pid, "ctime": self.ctime}]
        self._reverted = False
        self._arm()

    def revert(self) -> list[str]:
        """Kill the process group and reap the leader."""
        errors = super().revert()
        if self.proc is not None:
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                errors.append(f"{self.label}: pid {self.proc.pid} did not exit")
        return errors

    def _active(self) -> bool:
        return (
            self.proc is not None
            and self.proc.poll() is None
            and same_process(self.proc.pid, self.ctime)
        )


class GpuWorkload(Workload):
    """A workload that registers itself as a process of a simulated GPU; revert also
    removes its entry, which a SIGKILLed process cannot do itself."""

    def __init__(
        self, label: str, argv: Sequence[str], *, state: Path, index: int = 0, **kw: Any
    ) -> None:
        super().__init__(label, argv, **kw)
        self.state, self.index = state, index

    def inject(self) -> None:
        if self.is_active():
            return
        super().inject()
        assert self._steps is not None
        self._steps.append(
            {"op": "gpu_proc_rm", "path": str(self.state), "index": self.index, "pid": self.pid}
        )
        self._arm()


class GpuPatch(Fault):
    """Set fields of one simulated GPU (heat, demand); revert puts the old values back."""

    def __init__(self, path: Path, index: int, fields: dict[str, Any], **kw: Any) -> None:
        super().__init__(f"gpu{index} {fields}", **kw)
        self.path, self.index, self.fields = path, index, fields

    def _prepare(self) -> list[Step]:
        dev = gpusim.device(self.path, self.index)
        old = {k: dev.get(k) for k in self.fields}
        return [{"op": "gpu_patch", "path": str(self.path), "index": self.index, "fields": old}]

    def _apply(self) -> None:
        gpusim.patch_device(self.path, self.index, self.fields)

    def _active(self) -> bool:
        dev = gpusim.device(self.path, self.index)
        return all(dev.get(k) == v for k, v in self.fields.items())


class FileFlag(Fault):
    """A file whose presence a workload reads as a condition (load, pressure)."""

    def __init__(self, path: Path, content: str = "1", **kw: Any) -> None:
        super().__init__(f"flag {path.name}", **kw)
        self.path, self.content = path, content

    def _prepare(self) -> list[Step]:
        return [{"op": "unlink", "path": str(self.path)}]

    def _apply(self) -> None:
        self.path.write_text(self.content)

    def _active(self) -> bool:
        return self.path.exists()


class KmsgLines(Fault):
    """Kernel-log lines written to /dev/kmsg or appended to a kmsg-format file.

    Logged lines cannot be unlogged: revert only marks the fault over. Each /dev/kmsg write
    opens the device afresh, because the ``printk_devkmsg=ratelimit`` budget is kept per
    open file (kernel/printk/printk.c, devkmsg_write).
    """

    def __init__(self, lines: Sequence[str], target: Path = Path("/dev/kmsg"), **kw: Any) -> None:
        super().__init__(f"{len(lines)} kmsg lines -> {target}", **kw)
        self.lines, self.target = list(lines), target

    def _prepare(self) -> list[Step]:
        return []

    def _arm(self) -> None:  # nothing to undo, nothing to watch
        pass

    def _apply(self) -> None:
        if str(self.target) == "/dev/kmsg":
            for line in self.lines:
                with open(self.target, "w") as fh:
                    fh.write(line if line.endswith("\n") else line + "\n")
        else:
            with open(self.target, "a") as fh:
                fh.write("".join(ln if ln.endswith("\n") else ln + "\n" for ln in self.lines))

    def _active(self) -> bool:
        return True
