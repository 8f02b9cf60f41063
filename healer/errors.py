"""healer's error tree. Decisions (deny, needs_approval) are values, never errors.

    HealerError                       base; carries a one-line message
    ├── ConfigError(key)              bad settings, policy or playbook file -> exit 2
    ├── CollectorError(collector)     one collector failed one cycle; the loop goes on
    │   └── ParseError(path)          a /proc or kmsg text did not parse
    ├── GpuError(index)               NVML failed or timed out for one device
    ├── ActuatorError(scope, target)  a write or read-back failed
    │   └── NotPermitted              the kernel said EPERM/EACCES (not root, read-only fs)
    ├── StoreError                    the database failed (translated from sqlalchemy)
    └── LLMError                      the endpoint failed, timed out or answered garbage
        └── CircuitOpen               the breaker is open; no call was made

Foreign errors (OSError, pynvml.NVMLError, openai.APIError, sqlalchemy errors) are
translated at the edge with ``raise ... from``.
"""

from __future__ import annotations


class HealerError(Exception):
    """Base of every error healer raises on purpose."""


class ConfigError(HealerError):
    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"{key}: {problem}")
        self.key = key
        self.problem = problem


class CollectorError(HealerError):
    def __init__(self, collector: str, problem: str) -> None:
        super().__init__(f"collector {collector}: {problem}")
        self.collector = collector


class ParseError(CollectorError):
    def __init__(self, path: str, problem: str) -> None:
        super().__init__(path, problem)
        self.path = path


class GpuError(HealerError):
    def __init__(self, index: int | None, problem: str) -> None:
        super().__init__(f"gpu {index}: {problem}")
        self.index = index


class ActuatorError(HealerError):
    def __init__(self, scope: str, target: str, problem: str) -> None:
        super().__init__(f"{target} in {scope}: {problem}")
        self.scope = scope
        self.target = target


class NotPermitted(ActuatorError):
    """The kernel refused the write: not root, or a read-only mount."""


class StoreError(HealerError):
    pass


class LLMError(HealerError):
    pass


class CircuitOpen(LLMError):
    pass
