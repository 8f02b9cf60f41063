"""The playbook format: one problem class per YAML file, loaded into frozen pydantic models.

Every model forbids unknown keys, so a typo fails loudly; the loader maps each error
to ``file:line: key: problem``. Computed remedy fields are parsed with
``playbooks.operators`` at load time; YAML never names a Python import path.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from guardrails import linear
from guardrails.actions import ACTION_KINDS, CGROUP_KNOBS, SYSCTL_KEY_RE
from playbooks.operators import Expr, ExprError, parse_expr

ROOT_CAUSE_RE = r"^[a-z][a-z0-9]*(?:-[a-z0-9]+)*$"
# A metric name, optionally with {label} placeholders matched against the window's names.
METRIC_RE = r"^[a-z][a-z0-9_]*(?:\.(?:[a-z0-9_]+|\{[a-z_]+\}))+$"
Op = Literal["gt", "ge", "lt", "le"]
Severity = Literal["info", "warning", "critical"]
SEVERITY_RANK: dict[str, int] = {"info": 0, "warning": 1, "critical": 2}


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def _check_regex(v: str) -> str:
    """Kernel-log patterns meet attacker-chosen text: RE2 only (linear time), never ``re``."""
    try:
        compiled = linear.compile(v)
    except linear.PatternError as exc:
        raise ValueError(f"invalid regex (RE2, linear time: no lookarounds, no "
                         f"backreferences): {exc.problem}") from None
    if not compiled.groupindex and "(?P<" in v:
        raise ValueError("named groups did not compile")
    return v


def group_names(regex: str) -> set[str]:
    """The named groups of a (validated) kernel-log pattern."""
    return set(linear.compile(regex).groupindex)


class Threshold(_Model):
    """A metric compared with a value, held for ``for_seconds``; clears with hysteresis."""

    kind: Literal["threshold"]
    metric: str = Field(pattern=METRIC_RE)
    divide_by: str | None = Field(default=None, pattern=METRIC_RE)  # ratio of two metrics
    op: Op
    value: float
    for_seconds: float = Field(default=0, ge=0)
    clear_value: float | None = None  # default: the firing value itself
    clear_for_seconds: float = Field(default=0, ge=0)


class Rate(_Model):
    """A counter's per-second rate over ``seconds``, computed from the window."""

    kind: Literal["rate"]
    metric: str = Field(pattern=METRIC_RE)
    seconds: float = Field(default=10, gt=0)
    gt: float = 0


class Baseline(_Model):
    """Deviation from a learned baseline (EWMA mean/variance or median/MAD)."""

    kind: Literal["baseline"]
    metric: str = Field(pattern=METRIC_RE)
    method: Literal["ewma", "mad"] = "ewma"
    alpha: float = Field(default=0.05, gt=0, le=1)
    k: float = Field(default=4.0, gt=0)
    min_history: int = Field(default=60, ge=5)
    history_seconds: float = Field(default=3600, gt=0)
    direction: Literal["up", "down", "both"] = "up"
    min_delta: float = Field(default=0, ge=0)  # ignore deviations smaller than this


class CaptureContext(_Model):
    """A preceding line whose named groups are merged into the next match (the kernel's
    memcg OOM report prints ``oom-kill:... oom_memcg=/path`` just before ``Killed process``)."""

    contains: str = Field(min_length=3)
    regex: str
    max_lines: int = Field(default=50, ge=1, le=1000)

    @field_validator("regex")
    @classmethod
    def _regex(cls, v: str) -> str:
        return _check_regex(v)


KmsgRole = Literal["line", "start", "part", "end"]


class Kmsg(_Model):
    """A kernel-log pattern: literal pre-filter, then a regex with named groups; count in window.

    ``role`` places the line in a multi-line report (the playbook's ``report``): ``line``
    is an event on its own; ``start`` opens a report (or joins the open one of its group
    unless that report already holds a line of this signal); ``end`` joins and closes it,
    or is a one-line report when none is open; ``part`` joins the open report and never
    opens anything by itself (a continuation line the playbook claims).
    """

    kind: Literal["kmsg"]
    # Pre-filter: a literal every matching line holds, or a list of them (any one).
    contains: str | tuple[str, ...]
    regex: str
    count: int = Field(default=1, ge=1)
    window_seconds: float = Field(default=60, gt=0)
    where: dict[str, list[str]] = Field(default_factory=dict)  # capture -> allowed values
    context: tuple[CaptureContext, ...] = ()
    role: KmsgRole = "line"
    severity: Severity | None = None  # this signal's lines are this bad (default: playbook's)

    @field_validator("regex")
    @classmethod
    def _regex(cls, v: str) -> str:
        return _check_regex(v)

    @field_validator("contains")
    @classmethod
    def _contains(cls, v: str | tuple[str, ...]) -> str | tuple[str, ...]:
        for literal in (v,) if isinstance(v, str) else v:
            if len(literal) < 3 or "\n" in literal:
                raise ValueError(f"a pre-filter literal is 3 or more characters on one line: "
                                 f"{literal!r}")
        if not v:
            raise ValueError("give at least one pre-filter literal")
        return v

    @property
    def literals(self) -> tuple[str, ...]:
        """The pre-filter literals; a line must hold one of them to be matched."""
        return (self.contains,) if isinstance(self.contains, str) else self.contains

    @field_validator("where", mode="before")
    @classmethod
    def _where(cls, v: Any) -> Any:
        if isinstance(v, dict):
            return {k: [str(x) for x in vals] if isinstance(vals, list) else vals
                    for k, vals in v.items()}
        return v

    @model_validator(mode="after")
    def _groups(self) -> Kmsg:
        groups = group_names(self.regex)
        missing = set(self.where) - groups
        if missing:
            raise ValueError(f"where names groups the regex lacks: {sorted(missing)}")
        return self


class Absent(_Model):
    """A metric missing from the window for ``seconds``."""

    kind: Literal["absent"]
    metric: str = Field(pattern=METRIC_RE)
    seconds: float = Field(gt=0)


ProcessField = Literal["num_fds", "cpu_percent", "rss_bytes"]


class ProcessPredicate(_Model):
    """A per-process predicate over the top processes; each match is scoped ``pid:<n>``."""

    kind: Literal["process"]
    field: ProcessField
    ratio_of: Literal["nofile_soft", "nofile_hard"] | None = None
    op: Op
    value: float
    min_field: float = 0  # ignore processes whose field is below this
    top: int = Field(default=0, ge=0)  # 0: every match; N: only the N largest
    # cgroup: the field summed over the scanned processes of each cgroup, scoped by cgroup
    # (a batch job of many workers is one hog); not with ratio_of
    per: Literal["process", "cgroup"] = "process"

    @model_validator(mode="after")
    def _per(self) -> ProcessPredicate:
        if self.per == "cgroup" and self.ratio_of is not None:
            raise ValueError("per: cgroup sums a field; ratio_of is per process")
        return self


class GpuProcessSignal(_Model):
    """Per-GPU-process behaviour: a memory trend (leak) or one process hogging the SMs."""

    kind: Literal["gpu_process"]
    mode: Literal["memory_trend", "hog"]
    seconds: float = Field(default=120, gt=0)
    min_points: int = Field(default=10, ge=3)
    slope_gt: float = 0  # bytes/s, memory_trend
    rising_fraction: float = Field(default=0.7, ge=0, le=1)
    hog_min_percent: float = 90  # hog: SM share of the top process
    victim_max_percent: float = 10  # hog: another process starved below this


class GpuThrottle(_Model):
    """Clock-event (throttle) reasons containing any of the given words, per GPU."""

    kind: Literal["gpu_throttle"]
    reasons_contain: tuple[str, ...] = Field(min_length=1)
    metric: str | None = None  # unprefixed GpuState metric, e.g. temperature_celsius
    op: Op = "ge"
    value: float = 0


class Trend(_Model):
    """Least-squares slope of a metric over a window: tells a leak from a too-low limit."""

    kind: Literal["trend"]
    metric: str = Field(pattern=METRIC_RE)
    seconds: float = Field(default=60, gt=0)
    min_points: int = Field(default=10, ge=3)
    slope_gt: float | None = None
    slope_le: float | None = None
    rising_fraction: float = Field(default=0, ge=0, le=1)  # share of rising steps required
    # Cut the window into this many equal slices; each must show the slope on its own, so
    # the series must span the whole window and a start-up ramp that levels off never fires.
    segments: int = Field(default=1, ge=1, le=12)
    when_missing: bool = False  # the result when the window lacks enough points

    @model_validator(mode="after")
    def _one(self) -> Trend:
        if (self.slope_gt is None) == (self.slope_le is None):
            raise ValueError("give exactly one of slope_gt, slope_le")
        return self


class AlertSignal(_Model):
    """An Alertmanager alert about this host, relayed by the fleet's control plane: its
    ``alertname``, and labels that must each hold one of the listed values (exact
    matches on untrusted text, no patterns)."""

    kind: Literal["alert"]
    alertname: str = Field(min_length=1, max_length=200)
    labels: dict[str, tuple[str, ...]] = Field(default_factory=dict)

    def matches(self, alertname: str, labels: Mapping[str, str]) -> bool:
        """Whether an alert with this name and these labels is this signal's."""
        return alertname == self.alertname and all(
            labels.get(name) in allowed for name, allowed in self.labels.items())


Signal = Annotated[
    Threshold | Rate | Baseline | Kmsg | Absent | ProcessPredicate | GpuProcessSignal
    | GpuThrottle | Trend | AlertSignal,
    Field(discriminator="kind"),
]


class Detect(_Model):
    all: tuple[Signal, ...] = ()
    any: tuple[Signal, ...] = ()

    @model_validator(mode="after")
    def _one(self) -> Detect:
        if bool(self.all) == bool(self.any):
            raise ValueError("give exactly one of all, any (a non-empty list of signals)")
        return self

    @property
    def signals(self) -> tuple[Signal, ...]:
        return self.all or self.any


class EvidenceSpec(_Model):
    metrics: tuple[str, ...] = ()
    window_seconds: float = Field(default=300, gt=0, le=3600)
    kmsg: bool = True
    sysctls: tuple[str, ...] = ()
    cgroup_knobs: tuple[str, ...] = ()  # read in the incident's cgroup, e.g. pids.max
    processes: bool = False
    gpu: bool = False

    @field_validator("sysctls")
    @classmethod
    def _keys(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for key in v:
            if not SYSCTL_KEY_RE.match(key):
                raise ValueError(f"malformed sysctl key {key!r}")
        return v

    @field_validator("cgroup_knobs")
    @classmethod
    def _knobs(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for knob in v:
            if knob not in CGROUP_KNOBS:
                raise ValueError(f"unknown cgroup knob {knob!r}")
        return v


# Action fields computed from expressions; all others are text templates ({label}).
NUMERIC_FIELDS = frozenset(
    {"value", "soft", "nice", "watts", "min_mhz", "max_mhz", "percent", "pid", "client", "index"}
)
INT_FIELDS = NUMERIC_FIELDS - {"watts"}


class ActionTemplate(BaseModel):
    """A catalog action whose numeric fields are expressions and text fields templates."""

    model_config = ConfigDict(frozen=True, extra="allow", arbitrary_types_allowed=True)

    kind: str
    scope: str | None = None  # default: the incident's scope

    @field_validator("kind")
    @classmethod
    def _kind(cls, v: str) -> str:
        if v not in ACTION_KINDS:
            raise ValueError(f"unknown action kind {v!r}; known: {', '.join(ACTION_KINDS)}")
        return v

    @model_validator(mode="after")
    def _fields(self) -> ActionTemplate:
        for name, raw in (self.model_extra or {}).items():
            if name in NUMERIC_FIELDS:
                try:
                    parse_expr(raw)
                except ExprError as exc:
                    raise ValueError(f"{name}: {exc}") from exc
            elif not isinstance(raw, str):
                raise ValueError(f"{name}: expected text, got {type(raw).__name__}")
        return self

    @property
    def fields(self) -> dict[str, Any]:
        """The action's own fields as written in YAML (expressions unparsed)."""
        return dict(self.model_extra or {})

    def expressions(self) -> dict[str, Expr]:
        """Numeric fields parsed into expression trees."""
        return {k: parse_expr(v) for k, v in self.fields.items() if k in NUMERIC_FIELDS}


# Kinds a convergence can step, and the field holding their one number (a limit).
CONVERGE_FIELDS = {"sysctl_write": "value", "cgroup_limit": "value", "process_rlimit": "soft"}


class Demand(_Model):
    """A number of the verdict that measures what the limit must hold: the kernel's evidence.

    ``usage``: the demand as observed (a killed task's rss); worthless when the very limit
    being raised capped it, and then ignored. ``shortfall``: what the limit lacked (queue
    drops per second), added on top of it.
    """

    number: str = Field(pattern=r"^[a-z][a-z0-9_]*(?:\.[a-z0-9_]+)+$")  # a verdict number
    scale: float = Field(default=1.0, gt=0)  # into the action's units (kB -> bytes: 1024)
    kind: Literal["usage", "shortfall"]


class Converge(_Model):
    """Step a capacity raise again while its verdict is "insufficient" (healer/act/converge.py).

    Step 1 is the remedy's own value; step k+1 multiplies the live value by ``factor``**k
    (or more, when ``demand`` says so), always within the guard policy's step, range and
    facts. After ``max_steps`` steps, or at the policy's ceiling, a person is asked.
    """

    max_steps: int = Field(default=4, ge=1, le=16)
    factor: float = Field(default=2.0, gt=1, le=16)
    headroom: float = Field(default=1.25, ge=1, le=4)  # times the demand the evidence shows
    demand: tuple[Demand, ...] = ()


class Remedy(_Model):
    action: ActionTemplate
    current: str | None = None  # the fact `current` refers to; sysctl_write: its key
    current_default: float | None = None
    rationale: str = Field(min_length=1)
    expected_effect: str = Field(min_length=1)
    reversible: bool = True  # False forces human approval downstream
    max_per_incident: int | None = Field(default=None, ge=1)  # e.g. one limit step for a leak
    converge: Converge | None = None  # a capacity raise that steps until the fault is gone

    @model_validator(mode="after")
    def _converge(self) -> Remedy:
        field = CONVERGE_FIELDS.get(self.action.kind)
        if self.converge is not None and field not in self.action.fields:
            raise ValueError(f"converge: only for a numeric limit "
                             f"({', '.join(CONVERGE_FIELDS)}), not {self.action.kind}")
        return self


_DIRECTION_RE = r"^(?:down|up|to_zero|below:-?[0-9.]+|above:-?[0-9.]+)$"


class Guard(_Model):
    metric: str = Field(pattern=METRIC_RE)
    max_regression_percent: float | None = Field(default=None, ge=0)
    max_increase: float | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _one(self) -> Guard:
        if (self.max_regression_percent is None) == (self.max_increase is None):
            raise ValueError("give exactly one of max_regression_percent, max_increase")
        return self


class Verify(_Model):
    """Success: ``metric`` moves in ``direction`` and/or no new matching kernel-log lines."""

    metric: str | None = Field(default=None, pattern=METRIC_RE)
    rate_seconds: float | None = Field(default=None, gt=0)  # verify the counter's rate
    direction: str | None = Field(default=None, pattern=_DIRECTION_RE)
    quiet_kmsg: bool = False  # no new line matching this playbook's kmsg signals
    # The operator's declared SLOs (Settings.slo_metrics), when any, replace metric/direction
    # as the target: every objective must hold over the window (healer/verify/slo.py).
    slo: bool = False
    window_seconds: float = Field(default=30, gt=0)
    guards: tuple[Guard, ...] = ()

    @model_validator(mode="after")
    def _target(self) -> Verify:
        if (self.metric is None) != (self.direction is None):
            raise ValueError("metric and direction go together")
        if self.metric is None and not self.quiet_kmsg:
            # slo: true still needs a fallback for a host that declares no SLOs
            raise ValueError("give a metric and direction, or quiet_kmsg: true")
        return self


class Report(_Model):
    """A multi-line kernel report (an OOM report, an oops, a stall) is one event.

    Its lines are assembled across cycles until an ``end`` line, ``silence_seconds``
    without a line, or ``max_lines``. Playbooks naming the same ``group`` share one
    report: it belongs to the highest-priority playbook among its lines' claimants, so
    the lines every member shares are declared by the group's lowest-priority playbook.
    """

    group: str = Field(pattern=ROOT_CAUSE_RE)
    silence_seconds: float = Field(default=2.0, gt=0, le=60)
    max_lines: int = Field(default=10000, ge=1, le=1_000_000)


class Escalation(_Model):
    """Severity rises to ``severity`` once ``count`` lines fall in a kernel signal's window."""

    count: int = Field(ge=2)
    severity: Severity


class Playbook(_Model):
    """One problem class: how to detect it, its root cause, remedies and verification."""

    id: str = Field(pattern=ROOT_CAUSE_RE)
    title: str = Field(min_length=1)
    severity: Severity
    # Where playbooks claim the same kernel line, the highest priority takes it (one line,
    # one incident); equal priorities go to the first playbook in file order.
    priority: int = Field(default=0, ge=-1000, le=1000)
    report: Report | None = None
    # What, within the scope, the incident is about: a capture template such as
    # "{device}". It joins the incident's identity (one incident per device), so scopes
    # stay what an action can target (guardrails' scope grammar).
    subject: str | None = Field(default=None, pattern=r"^\{[a-z_]+\}$")
    escalate: tuple[Escalation, ...] = ()
    description: str = Field(min_length=1)
    references: tuple[str, ...] = Field(min_length=1)
    detect: Detect
    scope: str = "host"  # "host" | "net" | template such as "cgroup:{cgroup}"
    evidence: EvidenceSpec = EvidenceSpec()
    remedies: tuple[Remedy, ...] = ()
    verify: Verify | None = None
    rollback: Literal["on_regression", "never"] = "on_regression"
    second_opinion: bool = False
    confidence: float = Field(default=0.7, ge=0, le=1)

    @field_validator("references")
    @classmethod
    def _urls(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for url in v:
            if not re.match(r"^https?://\S+$", url):
                raise ValueError(f"not a URL: {url!r}")
        return v

    @model_validator(mode="after")
    def _alerts(self) -> Playbook:
        alerts = [s for s in self.detect.signals if isinstance(s, AlertSignal)]
        if alerts and (len(alerts) != len(self.detect.signals) or self.detect.all):
            raise ValueError("alert signals go alone, under any: (an alert arrives as an "
                             "event, not in the metric window)")
        return self

    @property
    def from_alerts(self) -> bool:
        """Whether this playbook matches alerts (its signals are all ``kind: alert``)."""
        return any(isinstance(s, AlertSignal) for s in self.detect.signals)

    @model_validator(mode="after")
    def _kernel_report(self) -> Playbook:
        kmsg = [s for s in self.detect.signals if isinstance(s, Kmsg)]
        if any(s.role in ("start", "end") for s in kmsg) and self.report is None:
            raise ValueError("kmsg roles start/end need a report: section")
        if (self.subject or self.escalate) and len(kmsg) != len(self.detect.signals):
            raise ValueError("subject and escalate need every signal to be kmsg")
        steps = [SEVERITY_RANK[e.severity] for e in self.escalate]
        if steps != sorted(steps) or [e.count for e in self.escalate] != sorted(
                {e.count for e in self.escalate}):
            raise ValueError("escalate steps go up: counts and severities increasing")
        return self

    @field_validator("scope")
    @classmethod
    def _scope(cls, v: str) -> str:
        if not re.fullmatch(r"host|net|(?:cgroup|pid|gpu|netns):\{[a-z_]+\}", v):
            raise ValueError("scope must be host, net, or kind:{label} (cgroup, pid, gpu, netns)")
        return v

    @property
    def watches(self) -> list[str]:
        """Human summary of what the playbook reads, for ``healer playbooks list``."""
        return [describe_signal(s) for s in self.detect.signals]


def describe_signal(s: Signal) -> str:
    if isinstance(s, AlertSignal):
        return f"alert:{s.alertname}"
    if isinstance(s, Kmsg):
        return f"kmsg:{s.literals[0]!r}"
    if isinstance(s, ProcessPredicate):
        return f"process:{s.field}" + (f"/{s.ratio_of}" if s.ratio_of else "")
    if isinstance(s, GpuProcessSignal):
        return f"gpu_process:{s.mode}"
    if isinstance(s, GpuThrottle):
        return "gpu_throttle:" + "|".join(s.reasons_contain)
    return f"{s.kind}:{s.metric}"
