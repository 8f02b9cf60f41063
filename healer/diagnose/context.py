"""What a diagnoser may see of this host: its playbook, and for the LLM, read-only tools.

``healer serve`` builds the LLM's context over the samples it reads from the agent's live
file (healer.live.LiveReader keeps an hour of them); the root agent's playbook diagnoser
needs only the playbook.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from healer.diagnose.base import DiagnoseContext
from healer.diagnose.evidence import host_context
from healer.diagnose.tools import ToolBox
from healer.models import Incident, KmsgRecord, ProcessInfo, Sample
from healer.settings import Settings
from playbooks.loader import Library

TOOL_KMSG_SECONDS = 900.0  # the kernel-log span the LLM's grep_kmsg tool searches
TOOL_SERIES_SECONDS = 3600.0  # the metric span the LLM's metric_window tool summarises


class Window(Protocol):
    """The samples a diagnoser's tools read (healer.window.MetricWindow)."""

    def latest(self) -> Sample | None: ...

    def kmsg(self, seconds: float) -> list[KmsgRecord]: ...

    def processes(self) -> tuple[ProcessInfo, ...] | None: ...

    def series(self, name: str, seconds: float) -> Sequence[tuple[float, float]]: ...


def playbook_context(library: Library) -> Callable[[Incident], DiagnoseContext]:
    """The playbook diagnoser's context: the incident's playbook, nothing of the host."""
    return lambda incident: DiagnoseContext(playbook=library.get(incident.playbook))


def llm_context(settings: Settings, library: Library,
                window: Window) -> Callable[[Incident], DiagnoseContext]:
    """The LLM's context: the playbook, read-only tools over ``window``, host facts."""

    def latest_gpus() -> tuple[object, ...]:
        sample = window.latest()
        return sample.gpus if sample else ()

    tools = ToolBox(
        procfs_root=settings.procfs_root, sysfs_root=settings.sysfs_root,
        kmsg=lambda: [r.message for r in window.kmsg(TOOL_KMSG_SECONDS)],
        processes=lambda: window.processes() or (),
        gpus=latest_gpus,  # type: ignore[arg-type]
        metric=lambda name: window.series(name, TOOL_SERIES_SECONDS),
    )
    release = settings.procfs_root / "sys" / "kernel" / "osrelease"

    def context_for(incident: Incident) -> DiagnoseContext:
        sample = window.latest()
        try:
            kernel: str | None = release.read_text()[:100]
        except OSError:
            kernel = None
        host = host_context(sample.metrics if sample else {}, sample.gpus if sample else (),
                            kernel)
        return DiagnoseContext(playbook=library.get(incident.playbook), tools=tools, host=host)

    return context_for
