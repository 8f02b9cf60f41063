"""How an agent joins a fleet: the host token's variable, and ``FleetConfig`` from Settings.

Kept apart from ``healer.fleet.link``: a single host builds no link, so the root agent
loads the fleet's protocol, transport and threads (about 1 MB) only when it joins one.
"""

from __future__ import annotations

import importlib.metadata
from dataclasses import dataclass, field
from pathlib import Path

from healer.errors import ConfigError
from healer.settings import Settings

TOKEN_ENV = "HEALER_AGENT_TOKEN"  # the host token: read by the root agent, passed on to none
HEARTBEAT_SECONDS = 5.0
UNREACHABLE_AFTER = 3 * HEARTBEAT_SECONDS  # no answer this long: the control plane is gone


def agent_version() -> str:
    """This agent's version, as ``X-Healer-Agent-Version`` carries it."""
    try:
        return importlib.metadata.version("healer")
    except importlib.metadata.PackageNotFoundError:
        return "0.0.0"


@dataclass(frozen=True)
class FleetConfig:
    """What the link needs; ``token`` is the host token, never logged or passed on."""

    url: str
    host_id: str
    token: str = field(repr=False)
    mode: str = "auto"
    labels: dict[str, str] = field(default_factory=dict)
    ca_file: Path | None = None
    version: str = field(default_factory=agent_version)
    outbox_bytes: int = 64 * 1024 * 1024
    sample_seconds: float = 60.0
    unreachable_after: float = UNREACHABLE_AFTER  # no answer this long: tell a person

    @classmethod
    def of(cls, settings: Settings, token: str) -> FleetConfig:
        """From the agent's settings (``control_plane_url`` must be set)."""
        assert settings.control_plane_url is not None
        return cls(url=settings.control_plane_url, host_id=settings.host_id, token=token,
                   mode=settings.mode, labels=dict(settings.host_labels),
                   ca_file=settings.ca_file, outbox_bytes=settings.fleet_outbox_bytes,
                   sample_seconds=settings.fleet_sample_seconds)


def fleet_config(settings: Settings, token: str | None) -> FleetConfig | None:
    """The fleet's config when ``control_plane_url`` is set (None: a single host);
    ConfigError without a host token."""
    if settings.control_plane_url is None:
        return None
    if not token:
        raise ConfigError(TOKEN_ENV, "a control plane needs this host's token in the "
                          "environment (`healer host add ID` prints it)")
    return FleetConfig.of(settings, token)
