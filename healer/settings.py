"""One validated ``Settings`` object, built once at start and passed down.

Sources, highest first: command-line flags, ``HEALER_*`` environment variables, the
TOML file given with ``--config``, then the defaults below. Nothing is built at
import time.
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from guardrails.policy import DEFAULT_COOLDOWN_SECONDS
from healer.errors import ConfigError
from healer.models import Slo

Mode = Literal["observe", "advise", "auto"]
GpuBackend = Literal["auto", "nvml", "simulated", "none"]
_LABEL_RE = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]{0,63}")  # operator config: Prometheus's label names


def _default_state_dir() -> Path:
    if os.geteuid() == 0:
        return Path("/var/lib/healer")
    return Path(os.environ.get("XDG_STATE_HOME", Path.home() / ".local/state")) / "healer"


class Settings(BaseSettings):
    """Every knob healer has; see the README's configuration table."""

    model_config = SettingsConfigDict(
        env_prefix="HEALER_", extra="forbid", validate_default=True, frozen=True
    )

    # Identity and storage
    host_id: str = Field(default_factory=socket.gethostname, min_length=1, max_length=253)
    state_dir: Path = Field(default_factory=_default_state_dir)
    database_url: str | None = None  # default: sqlite:///<state_dir>/healer.db (WAL)
    # The engine's connection pool, per process: at most size + overflow connections.
    db_pool_size: int = Field(default=5, ge=1, le=100)
    db_max_overflow: int = Field(default=10, ge=0, le=100)
    retention_days: float = Field(default=14.0, gt=0)  # per-minute rollups, incidents stay
    raw_retention_minutes: float = Field(default=60.0, gt=0)  # full-res samples near incidents

    # Loop
    mode: Mode = "auto"
    interval_seconds: float = Field(default=1.0, ge=0.05, le=3600)
    process_scan_seconds: float = Field(default=10.0, ge=1, le=3600)
    top_processes: int = Field(default=10, ge=1, le=200)
    window_seconds: int = Field(default=3600, ge=60, le=86400)
    # An open incident whose change was rolled back (or never made) is diagnosed again at
    # most this often while it keeps firing; the policy's cooldown (300 s) by default.
    rediagnose_seconds: float = Field(default=DEFAULT_COOLDOWN_SECONDS, ge=1, le=86400)
    # Unclassified kernel messages: new templates per hour before the rest share one
    # overflow incident (process names in kernel lines are anyone's choice).
    unclassified_templates_per_hour: int = Field(default=30, ge=1, le=10000)

    # Privilege separation: ``healer run`` is the root agent, and it starts ``healer serve``
    # (the dashboard, the API, Slack, the LLM client, notification delivery) as this user.
    service_user: str = Field(default="healer", min_length=1, max_length=32)
    # spawn: the agent starts and supervises ``healer serve``; external: a separate unit
    # runs it (deploy/healer-serve.service), so systemd can box it in on its own.
    serve: Literal["spawn", "external"] = "spawn"
    runtime_dir: Path | None = None  # the agent's live file; default <state_dir>/run
    agent_dir: Path | None = None  # root-only: the journal key; default <state_dir>-agent

    # Web
    host: str = "127.0.0.1"
    port: int = Field(default=8765, ge=0, le=65535)
    metrics_public: bool = True
    approval_ttl_seconds: float = Field(default=3600.0, gt=0)
    public_url: str | None = None  # base URL put into notification links
    # Reverse proxies whose X-Forwarded-For names the client (addresses or CIDR blocks);
    # from any other peer the header is ignored. Env: comma-separated.
    trusted_proxies: Annotated[list[str], NoDecode] = Field(default_factory=list)

    # Sources (injectable for tests and sandboxes)
    procfs_root: Path = Path("/proc")
    sysfs_root: Path = Path("/sys")
    kmsg_source: str = "/dev/kmsg"  # a device, a file of recorded lines, or "none"
    textfile_dir: Path | None = None
    gpu_backend: GpuBackend = "auto"
    gpu_sim_state: Path | None = None  # JSON state file of the simulated backend
    nvml_timeout_seconds: float = Field(default=0.5, gt=0, le=30)

    # Scope of action: chaos runs confine healer to a sandbox.
    netns: str | None = None  # act on this network namespace instead of the host
    cgroup_root: Path | None = None  # act only under this cgroup subtree
    sysctl_dropin: Path = Path("/etc/sysctl.d/90-healer.conf")

    # Detection, guard
    playbooks_dir: Path | None = None  # default: the shipped library
    # The operator's SLOs, "metric<=0.05" or "metric<=other.metric" (an app that reports its
    # own objective); playbooks with ``verify: {slo: true}`` verify on them. Env: comma list.
    slo_metrics: Annotated[list[str], NoDecode] = Field(default_factory=list)
    policy_file: Path | None = None  # default: the shipped policy

    # LLM (off unless a base URL or model is set)
    llm_base_url: str | None = None
    llm_model: str | None = None
    llm_api_key: SecretStr | None = None
    llm_timeout_seconds: float = Field(default=30.0, gt=0, le=600)
    llm_max_tokens_per_incident: int = Field(default=8000, ge=256)
    llm_max_concurrency: int = Field(default=2, ge=1, le=32)
    # LLM diagnoses (one conversation each: tool rounds, the answer, one repair) started in
    # any hour, across every process sharing the database; cached answers cost none.
    llm_diagnoses_per_hour: int = Field(default=20, ge=1, le=10000)

    # Notifications
    slack_webhook_url: str | None = None
    webhook_url: str | None = None
    webhook_secret: SecretStr | None = None
    slack_signing_secret: SecretStr | None = None
    # channel ("slack", "webhook", "log") -> patterns "event", "event@severity", "*",
    # "*@critical" (severity = that level or higher). Unset channel: every event.
    notify_routes: dict[str, list[str]] = Field(default_factory=dict)

    # Fleet (docs/fleet-protocol.md): the control plane this agent reports to and asks for
    # leases; None runs the single-host daemon. The host token comes from the environment
    # (HEALER_AGENT_TOKEN), never from here: these settings reach the unprivileged side.
    control_plane_url: str | None = None
    ca_file: Path | None = None  # CA bundle the control plane's certificate must chain to
    # Failure domains for the fleet's in-flight caps, "rack=r12,zone=a" in the environment.
    host_labels: Annotated[dict[str, str], NoDecode] = Field(default_factory=dict)
    fleet_outbox_bytes: int = Field(default=64 * 1024 * 1024, ge=1024 * 1024)
    fleet_sample_seconds: float = Field(default=60.0, ge=1, le=3600)

    log_level: Literal["debug", "info", "warning", "error"] = "info"

    @field_validator("host_id")
    @classmethod
    def _host_id(cls, v: str) -> str:
        if any(c.isspace() for c in v):
            raise ValueError("must not contain whitespace")
        return v

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _proxy_list(cls, v: Any) -> Any:
        if isinstance(v, str):  # HEALER_TRUSTED_PROXIES="127.0.0.1,10.0.0.0/8"
            return [part.strip() for part in v.split(",") if part.strip()]
        return v

    @field_validator("trusted_proxies")
    @classmethod
    def _proxies(cls, v: list[str]) -> list[str]:
        for entry in v:
            ipaddress.ip_network(entry, strict=False)  # ValueError names the bad entry
        return v

    @field_validator("slo_metrics", mode="before")
    @classmethod
    def _slo_list(cls, v: Any) -> Any:
        if isinstance(v, str):  # HEALER_SLO_METRICS="a<=0.05,b>=10"
            return [part.strip() for part in v.split(",") if part.strip()]
        return v

    @field_validator("slo_metrics")
    @classmethod
    def _slo_metrics(cls, v: list[str]) -> list[str]:
        for text in v:
            Slo.parse(text)  # ValueError names the bad entry
        return v

    @field_validator("control_plane_url")
    @classmethod
    def _control_plane(cls, v: str | None) -> str | None:
        return None if v is None else check_control_plane_url(v)

    @field_validator("host_labels", mode="before")
    @classmethod
    def _label_text(cls, v: Any) -> Any:
        if isinstance(v, str):  # HEALER_HOST_LABELS="rack=r12,zone=a"
            pairs = [part.strip().partition("=") for part in v.split(",") if part.strip()]
            if any(not sep for _, sep, _ in pairs):
                raise ValueError("give labels as name=value pairs, separated by commas")
            return {k.strip(): val.strip() for k, _, val in pairs}
        return v

    @field_validator("host_labels")
    @classmethod
    def _labels(cls, v: dict[str, str]) -> dict[str, str]:
        for key, value in v.items():
            if not _LABEL_RE.fullmatch(key) or len(value) > 128:
                raise ValueError(f"label {key[:40]!r}: names are [a-zA-Z_][a-zA-Z0-9_]*, "
                                 "values at most 128 characters")
        return v

    @model_validator(mode="after")
    def _llm_key_fallback(self) -> Settings:
        if self.llm_api_key is None and (self.llm_base_url or self.llm_model):
            key = os.environ.get("OPENAI_API_KEY")
            if key:
                object.__setattr__(self, "llm_api_key", SecretStr(key))
        return self

    @property
    def llm_enabled(self) -> bool:
        return bool(self.llm_base_url or self.llm_model)

    @property
    def live_dir(self) -> Path:
        """Where the agent publishes its live file (the unit points it at /run/healer)."""
        return self.runtime_dir if self.runtime_dir is not None else self.state_dir / "run"

    @property
    def key_dir(self) -> Path:
        """The agent's own directory (mode 0700) for the journal key, beside the state
        directory rather than in it (/var/lib/healer-agent for /var/lib/healer), so the
        unprivileged side, which may write the database, can never read it."""
        if self.agent_dir is not None:
            return self.agent_dir
        return self.state_dir.parent / f"{self.state_dir.name}-agent"

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{self.state_dir / 'healer.db'}"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml = settings_cls.model_config.get("toml_file")
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if toml:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=toml))
        return tuple(sources)


def is_loopback(host: str) -> bool:
    """``localhost`` or a loopback address (127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_control_plane_url(url: str) -> str:
    """``url`` when it can carry the host token: https, or http to a loopback address only;
    ValueError saying why not."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (raises on a malformed port)
    except ValueError as exc:
        raise ValueError(f"not a URL: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{url!r} is not an http:// or https:// URL with a host")
    if parts.scheme == "http" and not is_loopback(parts.hostname):
        raise ValueError(f"plain HTTP to {parts.hostname} would send the host token in clear: "
                         "use https:// (with --ca-file for a private CA); http:// is accepted "
                         "only to a loopback address")
    if parts.query or parts.fragment or parts.username or parts.password:
        raise ValueError("give the base URL only: no query, fragment or credentials")
    return url


def load_settings(config: Path | None = None, **flags: Any) -> Settings:
    """Build Settings from flags, env and an optional TOML file; raise ConfigError on bad input."""
    overrides = {k: v for k, v in flags.items() if v is not None}
    cls: type[Settings] = Settings
    if config is not None:
        if not config.is_file():
            raise ConfigError("config", f"no such file: {config}")
        config_dict = {**Settings.model_config, "toml_file": config}
        cls = type("FileSettings", (Settings,), {"model_config": config_dict})
    try:
        return cls(**overrides)
    except ValidationError as exc:
        err = exc.errors()[0]
        key = ".".join(str(p) for p in err["loc"]) or "config"
        raise ConfigError(key, err["msg"]) from None
    except (OSError, ValueError) as exc:  # tomllib.TOMLDecodeError is a ValueError
        raise ConfigError("config", str(exc).splitlines()[0]) from None
