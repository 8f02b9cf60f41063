"""The diagnosis cache: incident fingerprint + evidence hash -> the validated LLM answer.

An in-memory LRU with a TTL, backed optionally by a durable key-value store (the
repository's ``kv_get``/``kv_put``), so a storm, a repeat or a restart costs no new call.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Protocol

log = logging.getLogger("healer.diagnose.cache")

NAMESPACE = "llm-diagnosis"


class KVStore(Protocol):
    """A durable string store with expiry."""

    def get(self, key: str) -> str | None: ...

    def put(self, key: str, value: str, ttl_seconds: float) -> None: ...


class RepositoryKV:
    """Adapts ``Repository.kv_get/kv_put(namespace, key, ...)`` to ``KVStore``."""

    def __init__(self, repo: Any, namespace: str = NAMESPACE) -> None:
        self._repo = repo
        self._ns = namespace

    def get(self, key: str) -> str | None:
        value = self._repo.kv_get(self._ns, key)
        return None if value is None else str(value)

    def put(self, key: str, value: str, ttl_seconds: float) -> None:
        self._repo.kv_put(self._ns, key, value, ttl_seconds=ttl_seconds)


def cache_key(fingerprint: str, evidence_hash: str, model: str) -> str:
    """Stable key; the model name is part of it so switching models asks again."""
    return hashlib.sha256(f"{model}\x00{fingerprint}\x00{evidence_hash}".encode()).hexdigest()


class DiagnosisCache:
    """LRU of JSON strings with a TTL; thread-safe. Durable-store errors only log."""

    def __init__(self, maxsize: int = 256, ttl_seconds: float = 3600.0,
                 durable: KVStore | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.maxsize = maxsize
        self.ttl_seconds = ttl_seconds
        self._durable = durable
        self._clock = clock
        self._lock = threading.Lock()
        self._items: OrderedDict[str, tuple[float, str]] = OrderedDict()

    def get(self, key: str) -> str | None:
        with self._lock:
            item = self._items.get(key)
            if item is not None:
                if self._clock() - item[0] < self.ttl_seconds:
                    self._items.move_to_end(key)
                    return item[1]
                del self._items[key]
        if self._durable is None:
            return None
        try:
            value = self._durable.get(key)
        except Exception as exc:  # a broken store degrades to no cache
            log.warning("llm cache read failed: %s", type(exc).__name__)
            return None
        if value is not None:
            self._remember(key, value)
        return value

    def put(self, key: str, value: str) -> None:
        self._remember(key, value)
        if self._durable is not None:
            try:
                self._durable.put(key, value, self.ttl_seconds)
            except Exception as exc:
                log.warning("llm cache write failed: %s", type(exc).__name__)

    def _remember(self, key: str, value: str) -> None:
        with self._lock:
            self._items[key] = (self._clock(), value)
            self._items.move_to_end(key)
            while len(self._items) > self.maxsize:
                self._items.popitem(last=False)
