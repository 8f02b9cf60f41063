"""Run driver calls on a worker thread with a deadline, so a hung driver cannot stall the loop.

A call that misses its deadline leaves its worker stuck inside the driver; that
worker is abandoned (it is a daemon thread, so it never blocks exit) and a fresh
one serves the next call. While ``max_stuck`` workers are still stuck, calls fail
at once instead of piling up more threads.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, TypeVar

T = TypeVar("T")
_Job = tuple[Callable[..., Any], tuple[Any, ...], Future[Any]]


class CallTimeout(Exception):
    """The call did not return in time (or too many earlier calls are still stuck)."""


class _Worker:
    def __init__(self) -> None:
        self.queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self.thread = threading.Thread(target=self._run, name="gpu-call", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while True:
            job = self.queue.get()
            if job is None:
                return  # abandoned after a timeout; the stuck call has returned now
            fn, args, fut = job
            if not fut.set_running_or_notify_cancel():
                continue
            try:
                fut.set_result(fn(*args))
            except BaseException as exc:  # handed back to the caller
                fut.set_exception(exc)


class BoundedCaller:
    """``call(fn, *args)`` returns fn's result or raises ``CallTimeout`` after ``timeout`` s."""

    def __init__(self, timeout: float, max_stuck: int = 2) -> None:
        self.timeout = timeout
        self.max_stuck = max_stuck
        self._worker: _Worker | None = None
        self._stuck: list[tuple[_Worker, Future[Any]]] = []
        self._lock = threading.Lock()

    def call(self, fn: Callable[..., T], *args: Any) -> T:
        with self._lock:
            self._stuck = [(w, f) for w, f in self._stuck if not f.done()]
            if len(self._stuck) >= self.max_stuck:
                raise CallTimeout(f"{len(self._stuck)} earlier calls still hung in the driver")
            if self._worker is None:
                self._worker = _Worker()
            worker = self._worker
            fut: Future[T] = Future()
            worker.queue.put((fn, args, fut))
        try:
            return fut.result(timeout=self.timeout)
        except FutureTimeout:
            with self._lock:
                self._stuck.append((worker, fut))
                if self._worker is worker:
                    self._worker = None
                    worker.queue.put(None)
            raise CallTimeout(f"no answer within {self.timeout}s") from None
