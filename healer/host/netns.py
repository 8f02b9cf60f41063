"""Run code inside a named network namespace from one dedicated thread.

setns(2) with CLONE_NEWNET changes the namespace of the calling *thread* only, so a
single worker thread enters ``/run/netns/<name>`` (the bind mount ``ip netns add``
creates) once and then runs every submitted callable. In that thread
``/proc/thread-self/net/*`` shows the namespace's counters, and files under
``/proc/sys/net/`` opened there read and write the namespace's sysctls (sysctl
tables for net are looked up in current->nsproxy->net_ns at open time).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

from healer.errors import HealerError

CLONE_NEWNET = 0x40000000  # include/uapi/linux/sched.h
T = TypeVar("T")
_STOP = object()


class NetnsError(HealerError):
    """The namespace does not exist or could not be entered."""


def _setns(fd: int) -> None:
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


class NetnsRunner:
    """A worker thread living in network namespace ``name``; ``call`` runs functions there."""

    def __init__(self, name: str, netns_dir: Path = Path("/run/netns")) -> None:
        if not name or "/" in name or name in (".", ".."):
            raise NetnsError(f"bad netns name {name!r}")
        self.name = name
        self._path = netns_dir / name
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._ready: Future[None] = Future()
        self._thread = threading.Thread(target=self._run, name=f"netns-{name}", daemon=True)
        self._thread.start()
        try:
            self._ready.result(timeout=10)
        except OSError as exc:
            raise NetnsError(f"cannot enter netns {name}: {exc}") from exc

    def _run(self) -> None:
        try:
            fd = os.open(self._path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                _setns(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            self._ready.set_exception(exc)
            return
        self._ready.set_result(None)
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            fn, args, fut = item
            if fut.set_running_or_notify_cancel():
                try:
                    fut.set_result(fn(*args))
                except BaseException as exc:  # handed to the caller, re-raised there
                    fut.set_exception(exc)

    def call(self, fn: Callable[..., T], *args: Any, timeout: float | None = 10.0) -> T:
        """Run ``fn(*args)`` in the namespace thread and return its result (or raise its error)."""
        if not self._thread.is_alive():
            raise NetnsError(f"netns {self.name}: worker thread is gone")
        fut: Future[T] = Future()
        self._queue.put((fn, args, fut))
        return fut.result(timeout=timeout)

    def close(self) -> None:
        """Stop the worker thread."""
        self._queue.put(_STOP)
        self._thread.join(timeout=5)
