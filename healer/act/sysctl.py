"""Sysctls through /proc/sys, on the host or inside a named network namespace.

sysctl(8): a key's dots become slashes under /proc/sys. In a ``netns:<name>`` scope the
file is opened from a thread that has setns()'d into /run/netns/<name>, because
/proc/sys/net resolves against the opening task's network namespace
(Documentation/admin-guide/sysctl/net.rst). A key that is not per-namespace would
reach the host's global value from inside the namespace, so it is refused there: only
``net.*`` keys whose inode differs from the host's are accepted.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, TypeVar

from guardrails.actions import Action, SysctlWrite, check_sysctl_value
from guardrails.decision import Decision
from healer.act.base import require_allow, require_original, translate_os_error
from healer.errors import ActuatorError, HealerError
from healer.models import ActionRecord

T = TypeVar("T")


class NamespaceRunner(Protocol):
    """Runs a function on a thread inside one network namespace (healer.host.netns.NetnsRunner)."""

    def call(self, fn: Callable[..., T], *args: Any) -> T: ...

    def close(self) -> None: ...


def _default_runner(name: str) -> NamespaceRunner:
    from healer.host.netns import NetnsRunner  # imported late: only netns scopes need it

    return NetnsRunner(name)


def normalize(text: str) -> str:
    """One canonical spelling of a sysctl value: vectors are single-space separated."""
    return " ".join(text.split())


def key_path(procfs_root: Path, key: str) -> Path:
    """The /proc/sys file of ``key`` (sysctl(8): dots become slashes)."""
    return procfs_root / "sys" / key.replace(".", "/")


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="ascii") as fh:
            return normalize(fh.read())
    except FileNotFoundError:
        return None


def _write(path: str, value: str) -> None:
    # One write(2) of the whole value: proc_dointvec parses the buffer it is given.
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, (value + "\n").encode("ascii"))
    finally:
        os.close(fd)


def _inode(path: str) -> int | None:
    try:
        return os.stat(path).st_ino
    except FileNotFoundError:
        return None


class SysctlActuator:
    """``sysctl_write`` in the ``host`` or ``netns:<name>`` scope; any other scope is refused."""

    kinds: tuple[str, ...] = ("sysctl_write",)

    def __init__(
        self,
        procfs_root: Path = Path("/proc"),
        runner_for: Callable[[str], NamespaceRunner] = _default_runner,
        netns_dir: Path = Path("/run/netns"),
    ) -> None:
        self._root = procfs_root
        self._runner_for = runner_for
        self._netns_dir = netns_dir
        self._runners: dict[str, tuple[int, NamespaceRunner]] = {}

    def _runner(self, netns: str) -> NamespaceRunner:
        # The bind mount's inode is the namespace's identity (nsfs). A namespace deleted and
        # re-created under the same name is a new one; a cached thread would sit in the old.
        try:
            ident = os.stat(self._netns_dir / netns).st_ino
        except FileNotFoundError:
            raise FileNotFoundError(errno.ENOENT, "no such network namespace", netns) from None
        cached = self._runners.get(netns)
        if cached is not None and cached[0] == ident:
            return cached[1]
        if cached is not None:
            cached[1].close()
        runner = self._runner_for(netns)
        self._runners[netns] = (ident, runner)
        return runner

    def close(self) -> None:
        """Stop the namespace threads."""
        for _, runner in self._runners.values():
            runner.close()
        self._runners.clear()

    def _run(self, action: SysctlWrite, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn`` where the action's scope is: here for host, in the namespace otherwise."""
        scope = action.scope
        try:
            if scope == "host":
                return fn(*args)
            if scope.startswith("netns:"):
                return self._runner(scope.removeprefix("netns:")).call(fn, *args)
        except OSError as exc:
            raise translate_os_error(scope, action.target, exc, action.key) from exc
        except ActuatorError:
            raise
        except HealerError as exc:  # NetnsError: the namespace cannot be entered
            raise ActuatorError(scope, action.target, str(exc)) from exc
        raise ActuatorError(scope, action.target, "sysctls act only in host or netns scopes")

    def _path(self, action: Action) -> tuple[SysctlWrite, str]:
        if not isinstance(action, SysctlWrite):
            raise ActuatorError(action.scope, action.target, "not a sysctl action")
        path = str(key_path(self._root, action.key))
        if action.scope.startswith("netns:"):
            self._check_namespaced(action, path)
        return action, path

    def _check_namespaced(self, action: SysctlWrite, path: str) -> None:
        # A global sysctl is the same inode from every namespace; writing it from a netns
        # scope would change the host, which scopes exist to prevent.
        inside = self._run(action, _inode, path)
        if not action.key.startswith("net.") or (inside is not None and inside == _inode(path)):
            raise ActuatorError(action.scope, action.target, "not a per-namespace sysctl")

    def key_exists(self, action: Action) -> bool:
        """True when the key exists under the scope's /proc/sys (and may be acted on there)."""
        try:
            sysctl, path = self._path(action)
        except ActuatorError:
            return False
        return self._run(sysctl, os.path.exists, path)

    def read(self, action: Action) -> str | None:
        """The live value, whitespace-normalized; None when the key does not exist."""
        sysctl, path = self._path(action)
        return self._run(sysctl, _read, path)

    def in_action_units(self, action: Action, value: str) -> str:
        """Sysctl values need no translation."""
        return value

    def facts(self, action: Action) -> dict[str, float]:
        """Sysctls carry no extra limits beyond the policy's ranges."""
        return {}

    def apply(self, action: Action, decision: Decision) -> str:
        """Write the value (only under an allow), read it back and return the read-back."""
        require_allow(action, decision)
        sysctl, path = self._path(action)
        return self._write_and_read(sysctl, path, normalize(sysctl.value))

    def restore(self, record: ActionRecord) -> str:
        """Write the original back and return the read-back."""
        sysctl, path = self._path(record.action)
        return self._write_and_read(sysctl, path, require_original(record, check_sysctl_value))

    def _write_and_read(self, action: SysctlWrite, path: str, value: str) -> str:
        # Writing the value the key already holds is a no-op for the kernel, which makes
        # apply and restore idempotent; skip it anyway to leave no trace.
        if self._run(action, _read, path) != value:
            self._run(action, _write, path, value)
        back = self._run(action, _read, path)
        if back is None:
            raise ActuatorError(action.scope, action.target, "key vanished after write")
        return back
