"""Which scopes a sandboxed healer may act in, per action (the I/O half of P-confine).

``guardrails`` stays pure: it only compares an action's scopes with the ``confine``
tuple it is given. Whether a pid belongs to the sandbox needs /proc, so that is decided
here and the pid is added to the tuple for that one check:
- ``netns:<name>`` and ``cgroup:<path>`` come straight from Settings; the cgroup path is
  relative to the cgroup mount (``/healer-chaos-1``), the spelling the kernel prints
  (``oom_memcg=/healer-chaos-1/oom``) and playbooks turn into actions;
- ``pid:<n>`` is added exactly when /proc/<n>/cgroup places the process at or below
  ``cgroup_root`` in some hierarchy (cgroups(7): v1 ``N:controllers:/path``, v2 ``0::/path``;
  only root can move a task into the sandbox's cgroups, so membership is the sandbox's word);
- ``gpu:*`` is added only when the GPU backend is the simulated one: its state file is
  sandbox state. A real GPU under confinement stays outside and is denied.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from guardrails.actions import Action
from guardrails.scopes import object_scopes


def normalize_cgroup(path: object) -> str:
    """``/a/b`` from any spelling of a cgroup path relative to its mount."""
    parts = [p for p in str(path).split("/") if p]
    return "/" + "/".join(parts)


def cgroup_paths(text: str) -> Iterator[str]:
    """The cgroup path of every hierarchy line in a /proc/<pid>/cgroup text."""
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) == 3 and parts[2].startswith("/"):
            yield parts[2].strip()


def under(path: str, root: str) -> bool:
    """True when cgroup ``path`` is ``root`` or lies below it."""
    path, root = normalize_cgroup(path), normalize_cgroup(root)
    return root == "/" or path == root or path.startswith(root + "/")


@dataclass(frozen=True)
class Confinement:
    """The sandbox: fixed scopes, plus pids and simulated GPUs decided per action."""

    scopes: tuple[str, ...] = ()
    cgroup_root: str | None = None
    procfs_root: Path = Path("/proc")
    simulated_gpu: bool = False

    @classmethod
    def of(cls, netns: str | None, cgroup_root: object | None, *,
           procfs_root: Path = Path("/proc"), gpu_backend: str = "auto") -> Confinement:
        """The confinement Settings describe (no scopes at all: unconfined)."""
        root = normalize_cgroup(cgroup_root) if cgroup_root is not None else None
        scopes = confine_from(netns, root)
        return cls(scopes=scopes, cgroup_root=root, procfs_root=procfs_root,
                   simulated_gpu=bool(scopes) and gpu_backend == "simulated")

    def for_action(self, action: Action) -> tuple[str, ...]:
        """The ``confine`` tuple for one guard check of ``action`` (empty: unconfined)."""
        if not self.scopes:
            return ()
        extra: dict[str, None] = {}  # ordered set
        for scope in object_scopes(action):
            kind, _, value = scope.partition(":")
            if kind == "pid" and value.isdigit() and self.pid_inside(int(value)):
                extra[scope] = None
            elif kind == "gpu" and self.simulated_gpu:
                extra["gpu:*"] = None
        return self.scopes + tuple(extra)

    def pid_inside(self, pid: int) -> bool:
        """True when the process lives at or below ``cgroup_root`` (False when unreadable)."""
        if self.cgroup_root is None or pid <= 0:
            return False
        try:
            text = (self.procfs_root / str(pid) / "cgroup").read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            return False  # gone or unreadable: outside, so the guard denies
        return any(under(path, self.cgroup_root) for path in cgroup_paths(text))


def confine_from(netns: str | None, cgroup_root: object | None) -> tuple[str, ...]:
    """The fixed scopes a sandboxed healer may act in (empty: unconfined)."""
    scopes: list[str] = []
    if netns:
        scopes.append(f"netns:{netns}")
    if cgroup_root is not None:
        scopes.append(f"cgroup:{normalize_cgroup(cgroup_root)}")
    return tuple(scopes)
