"""The guard policy: a YAML file loaded into strict pydantic models.

The shipped default is ``guardrails/default_policy.yaml``; its comments document every
field. ``extra="forbid"`` everywhere, so a typo in a key fails loudly with the file and
the key named (``PolicyError``). Globs are compiled once, when the policy loads, so
``check`` only runs precompiled regular expressions.
"""

from __future__ import annotations

import re
from datetime import datetime
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from guardrails import linear
from guardrails.actions import ACTION_KINDS, canonical_cgroup
from guardrails.context import Mode
from guardrails.errors import PolicyError

_QUORUM_RE = re.compile(r"^quorum:([1-9][0-9]?)$")
_HHMM_RE = re.compile(r"^([01][0-9]|2[0-3]):([0-5][0-9])$")
Day = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
DAYS: tuple[Day, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
# Journal states that mean "this change really happened" for rate limits and cooldowns.
APPLIED_STATES = (
    "applying",
    "verifying",
    "verified",
    "rolled_back",
    "rollback_failed",
    "superseded",
)
# The default cooldown per target; healer's re-diagnosis interval defaults to it too.
DEFAULT_COOLDOWN_SECONDS = 300.0
_MATCH_CACHE_MAX = 4096  # bound the per-policy rule lookup cache against adversarial keys


def approvals_needed(approval: str) -> int | None:
    """Approvals an approval class needs: auto 0, approve 1, quorum:N N, forbid None."""
    if approval == "auto":
        return 0
    if approval == "approve":
        return 1
    if approval == "forbid":
        return None
    m = _QUORUM_RE.match(approval)
    if m is None:
        raise ValueError(f"approval must be auto, approve, quorum:N or forbid, got {approval!r}")
    return int(m.group(1))


def _valid_approval(v: str) -> str:
    approvals_needed(v)
    return v


def _not_auto(v: str) -> str:
    if v == "auto":
        raise ValueError("may not be 'auto': unmatched or untrusted changes always need a human")
    return v


def _valid_glob(v: str) -> str:
    if not v or len(v) > 256:
        raise ValueError("a glob must be 1..256 characters")
    linear.glob(v)  # compiles on RE2, or the policy does not load
    return v


def _valid_cgroup_glob(v: str) -> str:
    _valid_glob(v)
    if not v.startswith("/"):
        raise ValueError(f"a cgroup root must be an absolute path glob, got {v!r}")
    return v


Approval = Annotated[str, AfterValidator(_valid_approval)]
HumanApproval = Annotated[str, AfterValidator(_valid_approval), AfterValidator(_not_auto)]
Glob = Annotated[str, AfterValidator(_valid_glob)]
CgroupGlob = Annotated[str, AfterValidator(_valid_cgroup_glob)]


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Rule(_Strict):
    """Bounds and an approval class for the actions whose subject matches ``match``."""

    id: str = Field(pattern=r"^[A-Za-z][A-Za-z0-9_.-]{0,63}$")
    match: Glob = "*"
    min: float | None = None
    max: float | None = None
    # value >= facts[name] * factor / value <= facts[name] * factor; a missing fact
    # means the bound cannot be shown to hold, so the change needs a human.
    min_facts: dict[str, float] = Field(default_factory=dict)
    max_facts: dict[str, float] = Field(default_factory=dict)
    # Bounded steps, as bpftune tunes: new <= max(current * (1 + pct/100), step_floor)
    # upward and new >= current * (1 - pct/100) downward. step_floor lets one step lift a
    # tiny value (somaxconn 16) straight to a sane floor (4096).
    max_step_percent: float | None = Field(default=None, ge=0)
    step_floor: float | None = None
    direction: Literal["up", "down", "any"] = "any"
    approval: Approval = "approve"
    note: str = ""

    @property
    def needs_current(self) -> bool:
        """True when judging this rule needs the live value (step or direction)."""
        return self.max_step_percent is not None or self.direction != "any"


class KindRules(_Strict):
    """Rules per action kind, first match wins; one field per catalog kind."""

    sysctl_write: tuple[Rule, ...] = ()
    cgroup_limit: tuple[Rule, ...] = ()
    process_rlimit: tuple[Rule, ...] = ()
    process_nice: tuple[Rule, ...] = ()
    gpu_power_limit: tuple[Rule, ...] = ()
    gpu_locked_clocks: tuple[Rule, ...] = ()
    gpu_compute_mode: tuple[Rule, ...] = ()
    gpu_mps_thread_percentage: tuple[Rule, ...] = ()
    gpu_timeslice: tuple[Rule, ...] = ()
    notify: tuple[Rule, ...] = ()
    escalate: tuple[Rule, ...] = ()


def _minutes(v: str) -> int:
    m = _HHMM_RE.match(v)
    if m is None:
        raise ValueError(f"time must be HH:MM (UTC), got {v!r}")
    return int(m.group(1)) * 60 + int(m.group(2))


def _hhmm(v: str) -> str:
    _minutes(v)
    return v


HHMM = Annotated[str, AfterValidator(_hhmm)]


class Window(_Strict):
    """A maintenance window in UTC; end before start wraps past midnight."""

    days: tuple[Day, ...] = DAYS
    start: HHMM
    end: HHMM

    def contains(self, now: datetime) -> bool:
        """True when ``now`` (tz-aware) falls inside this window."""
        hm = now.hour * 60 + now.minute
        start, end = _minutes(self.start), _minutes(self.end)
        day = DAYS[now.weekday()]
        if start <= end:
            return day in self.days and start <= hm < end
        yesterday = DAYS[(now.weekday() - 1) % 7]
        return (day in self.days and hm >= start) or (yesterday in self.days and hm < end)


class Maintenance(_Strict):
    windows: tuple[Window, ...] = ()
    # When true, changes that need a human apply only inside a window (auto ones any time).
    only_in_windows: bool = False


class Limits(_Strict):
    cooldown_seconds: float = Field(default=DEFAULT_COOLDOWN_SECONDS, ge=0)
    max_per_target_per_hour: int = Field(default=4, ge=1)
    max_changes_per_cycle: int = Field(default=3, ge=1)
    max_changes_per_hour: int = Field(default=20, ge=1)
    # Re-proposing the exact value that was rolled back this recently is denied.
    rollback_memory_seconds: float = Field(default=86400.0, ge=0)
    counted_states: tuple[str, ...] = APPLIED_STATES


class ProvenanceRules(_Strict):
    """The least approval class per source of a proposal."""

    playbook: Approval = "auto"
    operator: Approval = "auto"
    llm: Approval = "auto"
    llm_outside_playbook: HumanApproval = "approve"


_LABEL_NAME = r"^[A-Za-z_][A-Za-z0-9_]{0,63}$"


class FleetPolicy(_Strict):
    """The fleet's guardrails (guardrails.fleet.decide): how many hosts a control plane
    lets start one remedy, and when. An agent without a control plane ignores them."""

    # A rollout starts no sooner than this after the first report of its fingerprint.
    systemic_hold_seconds: float = Field(default=30.0, ge=0, le=86400)
    # Systemic: at least this share of the reporting hosts, and at least min_hosts of them,
    # reported the same fingerprint within the window.
    systemic_percent: float = Field(default=30.0, gt=0, le=100)
    systemic_min_hosts: int = Field(default=5, ge=1)
    systemic_window_seconds: float = Field(default=300.0, gt=0, le=86400)
    # After the canary verified: waves of this share of the hosts affected when each starts.
    wave_percent: float = Field(default=10.0, gt=0, le=100)
    # A wave that has not verified after this many verify windows lets the next one start.
    wave_timeout_windows: float = Field(default=2.0, gt=0, le=100)
    # At most this many hosts, and this share of the reporting hosts (at least one), apply
    # or verify one remedy at once; per failure-domain label (the agents' host_labels), at
    # most N hosts that share the label's value.
    in_flight_max: int = Field(default=5, ge=1)
    in_flight_percent: float = Field(default=10.0, gt=0, le=100)
    in_flight_per_label: dict[Annotated[str, Field(pattern=_LABEL_NAME)],
                              Annotated[int, Field(ge=1)]] = Field(default_factory=dict)
    # A host may start while failed verifications (one per host) in the window, plus the
    # hosts in flight, number fewer than breaker_failures; at that many failures the
    # breaker trips and stays open until a person resumes the remedy.
    breaker_failures: int = Field(default=3, ge=1)
    breaker_window_seconds: float = Field(default=3600.0, gt=0)
    lease_ttl_seconds: float = Field(default=15.0, ge=2, le=600)
    # A host counts as reporting while its last heartbeat is this recent.
    reporting_seconds: float = Field(default=30.0, gt=0, le=3600)
    # A rollout ends once no host has had its incident open for this long.
    rollout_quiet_seconds: float = Field(default=3600.0, gt=0)


class Policy(_Strict):
    """A loaded, validated guard policy with its globs compiled."""

    version: Literal[1] = 1
    max_mode: Mode = "auto"
    protected: tuple[Glob, ...] = ()
    protected_targets: tuple[Glob, ...] = ()
    # cgroup subtrees where limits may change without a person: a glob per root (``*``
    # stays within one path component), matching the cgroup itself or an ancestor. Any
    # cgroup elsewhere (containers, pods, user slices: limits someone else set on purpose)
    # needs approval (rule C-auto-roots). None listed: every cgroup change needs a person.
    cgroup_auto_roots: tuple[CgroupGlob, ...] = ()
    unknown_sysctl: HumanApproval = "approve"
    default_approval: HumanApproval = "approve"
    rules: KindRules = KindRules()
    limits: Limits = Limits()
    maintenance: Maintenance = Maintenance()
    provenance: ProvenanceRules = ProvenanceRules()
    fleet: FleetPolicy = FleetPolicy()

    @model_validator(mode="after")
    def _unique_ids(self) -> Policy:
        seen: set[str] = set()
        for kind in ACTION_KINDS:
            for rule in getattr(self.rules, kind):
                if rule.id in seen:
                    raise ValueError(f"duplicate rule id {rule.id!r} under rules.{kind}")
                seen.add(rule.id)
        if self.maintenance.only_in_windows and not self.maintenance.windows:
            raise ValueError("maintenance.only_in_windows needs at least one window")
        return self

    def model_post_init(self, context: Any, /) -> None:
        _ = self.index  # compile the globs at load time, not on the first check

    @cached_property
    def index(self) -> PolicyIndex:
        """The compiled globs and the rule lookup cache (a plain object: cheap to use)."""
        return PolicyIndex(self)

    def is_protected(self, key: str) -> bool:
        """True when a sysctl key matches a protected glob."""
        return self.index.is_protected(key)

    def is_protected_target(self, target: str) -> bool:
        """True when an action target (kind:scope:key) matches a protected target glob."""
        return self.index.is_protected_target(target)

    def rule_for(self, kind: str, subject: str) -> Rule | None:
        """The first rule of ``kind`` whose glob matches ``subject``; None when none does."""
        return self.index.rule_for(kind, subject)


class PolicyIndex:
    """Precompiled globs of one policy (RE2: subjects and targets carry untrusted text),
    so ``check`` runs linear-time matches and dict lookups only."""

    __slots__ = ("_auto_roots", "_cache", "_compiled", "_protected", "_protected_targets")

    def __init__(self, policy: Policy) -> None:
        self._protected = linear.glob_union(policy.protected)
        self._protected_targets = linear.glob_union(policy.protected_targets)
        roots = "|".join(f"(?:{linear.glob_to_regex(g, sep='/')})"
                         for g in policy.cgroup_auto_roots)
        self._auto_roots = linear.compile(f"(?:{roots})(?:/.*)?") if roots else None
        self._compiled: dict[str, tuple[tuple[linear.Pattern, Rule], ...]] = {
            kind: tuple((linear.glob(r.match), r) for r in getattr(policy.rules, kind))
            for kind in ACTION_KINDS
        }
        self._cache: dict[tuple[str, str], Rule | None] = {}

    def is_protected(self, key: str) -> bool:
        """True when a sysctl key matches a protected glob."""
        return self._protected is not None and self._protected.fullmatch(key) is not None

    def is_protected_target(self, target: str) -> bool:
        """True when an action target (kind:scope:key) matches a protected target glob."""
        return (self._protected_targets is not None
                and self._protected_targets.fullmatch(target) is not None)

    def in_auto_roots(self, path: str) -> bool:
        """True when cgroup ``path`` (canonicalised) is an auto root or lies below one."""
        if self._auto_roots is None:
            return False
        try:
            path = canonical_cgroup(path)
        except ValueError:
            return False
        return self._auto_roots.fullmatch(path) is not None

    def rule_for(self, kind: str, subject: str) -> Rule | None:
        """First matching rule, memoised (bounded) per (kind, subject)."""
        cache_key = (kind, subject)
        try:
            return self._cache[cache_key]
        except KeyError:
            pass
        found = next((r for p, r in self._compiled.get(kind, ()) if p.fullmatch(subject)),
                     None)
        if len(self._cache) >= _MATCH_CACHE_MAX:
            self._cache.clear()
        self._cache[cache_key] = found
        return found



def default_policy_path() -> Path:
    """The shipped default policy file."""
    return Path(str(resources.files("guardrails").joinpath("default_policy.yaml")))


def load_policy(path: str | Path | None = None) -> Policy:
    """Load and validate a policy file (None: the shipped default); raises PolicyError."""
    source = Path(path) if path is not None else default_policy_path()
    try:
        text = source.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PolicyError(str(source), "", f"cannot read: {exc}") from exc
    return parse_policy(text, str(source))


def parse_policy(text: str, path: str = "<policy>") -> Policy:
    """Validate policy YAML text; ``path`` is only used in error messages."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise PolicyError(path, "", f"not valid YAML: {exc}") from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise PolicyError(path, "", "the top level must be a mapping")
    try:
        return Policy.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(p) for p in first["loc"]) or "(top level)"
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        raise PolicyError(path, key, f"{first['msg']}{more}") from exc
