"""The typed action catalog: every change healer may ever propose.

Actions are frozen pydantic models, discriminated by ``kind`` (the catalog name in
snake_case). Anything that does not parse into one of these is not an action; the
guard turns a parse failure into a ``deny`` rather than an exception.

JSON shape (ARCHITECTURE.md): ``{"kind": "sysctl_write", "scope": "host",
"key": "net.core.somaxconn", "value": "4096"}``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, TypeAdapter, field_validator

from guardrails import linear

# Scopes: host, netns:<name>, cgroup:<path>, pid:<n>, gpu:<index>. Scopes and the paths
# inside them arrive in kernel lines and LLM output, so they are matched by RE2 (linear
# time; a backtracking `(?:[...]+/?)*` here once took seconds per check on a crafted
# systemd unit name). netns names follow iproute2's rules (no slash, no dot-dot); cgroup
# paths are absolute, relative to the cgroup mount, and canonical (see canonical_cgroup).
SCOPE_RE = linear.compile(
    r"^(?:host"
    r"|netns:[A-Za-z0-9][A-Za-z0-9_.-]{0,63}"
    r"|cgroup:/[A-Za-z0-9_.@:/\\-]*"
    r"|pid:[1-9][0-9]{0,9}"
    r"|gpu:[0-9]{1,2})$"
)

# A sysctl name as the kernel spells it under /proc/sys: dot-separated path
# components of [A-Za-z0-9_-]. Interface names in net.ipv4.conf.<if>.* may hold
# other characters, but healer never needs to tune those.
SCOPE_MAX = 1024  # PATH_MAX-ish; cgroup paths the kernel prints are far shorter

SYSCTL_KEY_RE = linear.compile(r"^[a-z][a-z0-9_]*(?:\.[A-Za-z0-9_-]+){1,6}$")
# Integers or short whitespace-separated integer vectors (e.g. net.ipv4.tcp_rmem): the
# only sysctl values healer writes. No shell metacharacters, no paths, no newlines.
SYSCTL_VALUE_RE = linear.compile(r"^-?[0-9]{1,20}(?:[ \t]+-?[0-9]{1,20}){0,3}$")
CGROUP_VALUE_RE = linear.compile(r"^(?:max|[0-9]{1,20})$")

# The knobs healer may touch, cgroup v2 name -> v1 name (None: no v1 twin).
CGROUP_KNOBS: dict[str, str | None] = {
    "memory.max": "memory.limit_in_bytes",
    "memory.high": None,
    "pids.max": "pids.max",
    "cpu.weight": "cpu.shares",
    "memory.limit_in_bytes": "memory.limit_in_bytes",
    "cpu.shares": "cpu.shares",
}

COMPUTE_MODES = ("default", "exclusive_process", "prohibited")
TIMESLICE_LEVELS = ("default", "short", "medium", "long")


def _check_sysctl_key(key: str) -> str:
    if not SYSCTL_KEY_RE.match(key):
        raise ValueError(f"malformed sysctl key {key!r}")
    return key


# A sysctl name, validated the same way wherever one arrives (actions, LLM tool arguments).
SysctlKey = Annotated[str, AfterValidator(_check_sysctl_key)]


def canonical_cgroup(path: str) -> str:
    """One spelling per cgroup: ``/a/b`` for ``/a//b/``, ``/./a/b`` and ``a/b``; ``/`` for ``/.``.

    The actuator resolves all of these to the same directory, so rules (protected targets,
    auto roots, confinement) must see the same string. ``..`` is refused, never resolved.
    """
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise ValueError(f"'..' in cgroup path {path!r}")
    return "/" + "/".join(parts)


def check_scope(scope: str) -> str:
    """``scope`` in canonical form; ValueError when malformed."""
    if len(scope) > SCOPE_MAX or not SCOPE_RE.match(scope):
        raise ValueError(f"malformed scope {scope[:80]!r}")
    if scope.startswith("cgroup:"):
        return "cgroup:" + canonical_cgroup(scope.removeprefix("cgroup:"))
    return scope


def check_sysctl_value(value: str) -> str:
    """A sysctl value healer may write, whitespace-stripped; ValueError otherwise."""
    v = value.strip()
    if not SYSCTL_VALUE_RE.match(v):
        raise ValueError(f"sysctl value must be integers, got {value[:40]!r}")
    return v


def check_cgroup_value(value: str) -> str:
    """A cgroup limit healer may write: an integer or ``max``; ValueError otherwise."""
    if not CGROUP_VALUE_RE.match(value):
        raise ValueError(f"cgroup value must be an integer or 'max', got {value[:40]!r}")
    return value


class _Action(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", str_max_length=4096)

    scope: str = "host"

    @field_validator("scope")
    @classmethod
    def _scope(cls, v: str) -> str:
        return check_scope(v)

    @property
    def target(self) -> str:
        """What this action changes, as ``kind:scope:key``; rate limits and history key on it."""
        return f"{self.kind}:{self.scope}:{self.key_name}"  # type: ignore[attr-defined]

    @property
    def key_name(self) -> str:
        """A short name of what is changed within the scope."""
        return ""

    @property
    def disruptive(self) -> bool:
        """True when applying this can interrupt running work."""
        return False


class SysctlWrite(_Action):
    kind: Literal["sysctl_write"] = "sysctl_write"
    key: SysctlKey
    value: str = Field(max_length=256)

    @field_validator("value")
    @classmethod
    def _value(cls, v: str) -> str:
        return check_sysctl_value(v)

    @property
    def key_name(self) -> str:
        return self.key


class CgroupLimit(_Action):
    kind: Literal["cgroup_limit"] = "cgroup_limit"
    path: str
    knob: str
    value: str = Field(max_length=32)

    @field_validator("path")
    @classmethod
    def _path(cls, v: str) -> str:
        return check_scope(f"cgroup:{v}").removeprefix("cgroup:")

    @field_validator("knob")
    @classmethod
    def _knob(cls, v: str) -> str:
        if v not in CGROUP_KNOBS:
            raise ValueError(f"unknown cgroup knob {v!r}")
        return v

    @field_validator("value")
    @classmethod
    def _value(cls, v: str) -> str:
        return check_cgroup_value(v)

    @property
    def key_name(self) -> str:
        return f"{self.path}:{self.knob}"


# A process is (pid, start time): pids are reused, so a change, its rollback and its crash
# restore must reach the process that was diagnosed, not whichever took its number since.
# Clock ticks after boot, as /proc/<pid>/stat field 22 gives it (proc(5)); the engine pins
# it when the change is proposed, and actuators treat a mismatch as "the process is gone".
StartTime = Annotated[int | None, Field(default=None, ge=0, lt=2**63)]


class ProcessRlimit(_Action):
    kind: Literal["process_rlimit"] = "process_rlimit"
    pid: int = Field(gt=0, lt=2**22 + 1)
    resource: Literal["nofile", "nproc", "memlock", "core", "stack"]
    soft: int = Field(ge=0, lt=2**63)
    start_time: StartTime = None

    @property
    def key_name(self) -> str:
        return f"{self.pid}:{self.resource}"


class ProcessNice(_Action):
    kind: Literal["process_nice"] = "process_nice"
    pid: int = Field(gt=0, lt=2**22 + 1)
    nice: int = Field(ge=-20, le=19)
    start_time: StartTime = None

    @property
    def key_name(self) -> str:
        return f"{self.pid}:nice"


class GpuPowerLimit(_Action):
    kind: Literal["gpu_power_limit"] = "gpu_power_limit"
    index: int = Field(ge=0, lt=64)
    watts: float = Field(gt=0, le=2000)

    @property
    def key_name(self) -> str:
        return f"{self.index}:power_limit"


class GpuLockedClocks(_Action):
    """Lock SM clocks to [min_mhz, max_mhz]; both 0 means reset to default."""

    kind: Literal["gpu_locked_clocks"] = "gpu_locked_clocks"
    index: int = Field(ge=0, lt=64)
    min_mhz: int = Field(ge=0, le=5000)
    max_mhz: int = Field(ge=0, le=5000)

    @property
    def key_name(self) -> str:
        return f"{self.index}:locked_clocks"

    @property
    def disruptive(self) -> bool:
        return True


class GpuComputeMode(_Action):
    kind: Literal["gpu_compute_mode"] = "gpu_compute_mode"
    index: int = Field(ge=0, lt=64)
    mode: Literal["default", "exclusive_process", "prohibited"]

    @property
    def key_name(self) -> str:
        return f"{self.index}:compute_mode"

    @property
    def disruptive(self) -> bool:
        return True


class GpuMpsThreadPercentage(_Action):
    kind: Literal["gpu_mps_thread_percentage"] = "gpu_mps_thread_percentage"
    index: int = Field(ge=0, lt=64)
    client: int = Field(gt=0, lt=2**22 + 1, description="pid of the MPS client")
    percent: int = Field(ge=1, le=100)

    @property
    def key_name(self) -> str:
        return f"{self.index}:mps:{self.client}"


class GpuTimeslice(_Action):
    kind: Literal["gpu_timeslice"] = "gpu_timeslice"
    index: int = Field(ge=0, lt=64)
    level: Literal["default", "short", "medium", "long"]

    @property
    def key_name(self) -> str:
        return f"{self.index}:timeslice"


class Notify(_Action):
    kind: Literal["notify"] = "notify"
    message: str = Field(max_length=2000)

    @property
    def key_name(self) -> str:
        return "notify"


class Escalate(_Action):
    """A human must act (GPU reset, drain, process restart); healer only asks."""

    kind: Literal["escalate"] = "escalate"
    message: str = Field(max_length=2000)

    @property
    def key_name(self) -> str:
        return "escalate"


Action = Annotated[
    SysctlWrite
    | CgroupLimit
    | ProcessRlimit
    | ProcessNice
    | GpuPowerLimit
    | GpuLockedClocks
    | GpuComputeMode
    | GpuMpsThreadPercentage
    | GpuTimeslice
    | Notify
    | Escalate,
    Field(discriminator="kind"),
]

ACTION_KINDS: tuple[str, ...] = (
    "sysctl_write",
    "cgroup_limit",
    "process_rlimit",
    "process_nice",
    "gpu_power_limit",
    "gpu_locked_clocks",
    "gpu_compute_mode",
    "gpu_mps_thread_percentage",
    "gpu_timeslice",
    "notify",
    "escalate",
)

_ADAPTER: TypeAdapter[Action] = TypeAdapter(Action)


def parse_action(data: Any) -> Action:
    """Parse a dict or JSON string into a catalog action; raises ``pydantic.ValidationError``."""
    if isinstance(data, str | bytes):
        return _ADAPTER.validate_json(data)
    return _ADAPTER.validate_python(data)


def action_to_dict(action: Action) -> dict[str, Any]:
    """The ARCHITECTURE.md JSON shape of an action (an unpinned ``start_time`` is left out)."""
    return action.model_dump(mode="json", exclude_none=True)
