"""The sandbox one scenario runs in: a netns, scratch cgroups, a scratch dir, a simulated GPU.

``Sandbox.create()`` builds it from real kernel features found at runtime and arms a
watchdog that tears it all down when its TTL expires or the runner dies; ``destroy()``
tears it down now (idempotent): processes, then cgroups, then the namespace, then files.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chaos import gpusim, netns, watchdog
from chaos.cgroups import CgroupFS
from chaos.faults import Fault
from chaos.proc import create_time
from chaos.undo import SCRATCH_PREFIX, Step, run_steps


def free_port() -> int:
    """An unused TCP port on 127.0.0.1 (bind to port 0 and ask)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Sandbox:
    """Handles to every kernel object a scenario made; destroy() removes them all."""

    id: str
    root: Path
    ns: str | None = None
    cg: CgroupFS | None = None
    cgroup_root: str | None = None  # e.g. /healer-chaos-ab12cd
    keep: bool = False
    faults: list[Fault] = field(default_factory=list)
    _dog: subprocess.Popen[bytes] | None = None
    _destroyed: bool = False

    @classmethod
    def create(
        cls,
        *,
        use_netns: bool = True,
        use_cgroups: bool = True,
        ttl: float = 900.0,
        keep: bool = False,
        cg: CgroupFS | None = None,
    ) -> Sandbox:
        """Make the scratch dir, netns and cgroup root; arm the teardown watchdog."""
        sid = secrets.token_hex(3)
        root = Path(tempfile.mkdtemp(prefix=f"{SCRATCH_PREFIX}{sid}-"))
        # As root, healer run starts its web side as the unprivileged `healer` user, which
        # must be able to search its way to the state directory (mkdtemp makes 0700).
        root.chmod(0o711)
        sb = cls(id=sid, root=root, keep=keep)
        for sub in ("state", "textfiles", "logs"):
            (root / sub).mkdir()
        try:
            if use_cgroups:
                sb.cg = cg or CgroupFS.detect()
                sb.cgroup_root = f"/{SCRATCH_PREFIX}{sid}"
                sb.cg.create(sb.cgroup_root)
            if use_netns:
                sb.ns = f"{SCRATCH_PREFIX}{sid}"
                netns.create(sb.ns)
            sb._dog = watchdog.start(sb._spec(ttl), root / "logs" / "watchdog.log")
        except BaseException:
            sb.destroy()
            raise
        return sb

    @property
    def state_dir(self) -> Path:
        return self.root / "state"

    @property
    def textfile_dir(self) -> Path:
        return self.root / "textfiles"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def gpu_state(self) -> Path:
        return self.root / "gpu.json"

    def cgroup(self, name: str) -> str:
        """Create and return the path of a leaf cgroup below the sandbox root."""
        assert self.cg and self.cgroup_root, "sandbox has no cgroups"
        path = f"{self.cgroup_root}/{name}"
        self.cg.create(path)
        return path

    def gpus(self, devices: list[dict[str, Any]]) -> Path:
        """Write the simulated GPU state file."""
        gpusim.write(self.gpu_state, devices)
        return self.gpu_state

    def add(self, fault: Fault) -> Fault:
        """Track a fault so destroy() reverts it; returns it, injected."""
        self.faults.append(fault)
        fault.inject()
        return fault

    def revert_all(self) -> list[str]:
        """Revert every fault, newest first."""
        errors: list[str] = []
        for fault in reversed(self.faults):
            errors += fault.revert()
        return errors

    def _steps(self) -> list[Step]:
        steps: list[Step] = []
        if self.cg and self.cgroup_root:
            steps.append(
                {
                    "op": "cgroup_rm",
                    "version": self.cg.version,
                    "path": self.cgroup_root,
                    "roots": {k: str(v) for k, v in self.cg.roots.items()},
                }
            )
        if self.ns:
            steps.append({"op": "netns_rm", "name": self.ns})
        if not self.keep:
            steps.append({"op": "rmtree", "path": str(self.root)})
        return steps

    def _spec(self, ttl: float) -> dict[str, Any]:
        return {
            "ttl": ttl,
            "owner": os.getpid(),
            "owner_ctime": create_time(os.getpid()),
            "steps": self._steps(),
            "label": f"sandbox {self.id}",
        }

    def destroy(self) -> list[str]:
        """Revert faults, kill processes, remove cgroups, netns and files (idempotent)."""
        if self._destroyed:
            return []
        errors = self.revert_all()
        errors += run_steps(self._steps())
        if self._dog is not None:
            watchdog.cancel(self._dog)
        if not self.keep:
            shutil.rmtree(self.root, ignore_errors=True)
        self._destroyed = True
        return errors
