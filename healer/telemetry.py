"""Every Prometheus metric healer exports, declared in one place.

A ``Telemetry`` holds two private registries (tests build their own), one per process:
``agent`` for the root agent's loop (cycles, collectors, the kernel log, guard verdicts,
journal transitions, incidents), which the agent publishes as exposition text in its live
file (it listens on no port); and ``serve`` for the unprivileged side (the LLM client,
notification delivery, and the host gauges it builds from the agent's latest sample).
``healer serve`` answers ``/metrics`` with both. The host sample: dotted metric names become
``healer_host_<name>`` with dots as underscores; ``gpu.<i>.<name>`` becomes
``healer_gpu_<name>{gpu="<i>"}`` (see ``prom_name``). As node_exporter does, a name
ending in ``_total`` (a kernel counter) is exported as a Prometheus counter, everything
else as a gauge, so ``promtool check metrics`` finds no ``_total`` gauge.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector as PromCollector

_GPU_RE = re.compile(r"^gpu\.(\d+)\.(.+)$")
_BAD = re.compile(r"[^a-zA-Z0-9_]")
# promtool's lint reads these name parts as abbreviated units (kernel names have them:
# SReclaimable, SecPageTables, DirectMap2M), and keeps these suffixes for histograms.
_UNIT_ABBREVIATIONS = frozenset({"s", "ms", "us", "ns", "sec", "b", "kb", "mb", "gb", "tb",
                                 "pb", "m", "h", "d"})
_RESERVED_SUFFIXES = ("_count", "_sum", "_bucket")


def prom_name(dotted: str) -> str:
    """The exposition name of a dotted metric: ``mem.available_bytes`` ->
    ``mem_available_bytes``. A name part that reads as an abbreviated unit is joined to a
    number before it (``direct_map2_m_bytes`` -> ``direct_map2m_bytes``), else to the part
    after it (``mem.s_reclaimable_bytes`` -> ``mem_sreclaimable_bytes``); a histogram
    suffix gets ``_value`` (``cpu.count`` -> ``cpu_count_value``)."""
    out: list[str] = []
    glue = False
    for part in _BAD.sub("_", dotted).split("_"):
        unit = part.lower() in _UNIT_ABBREVIATIONS
        if out and (glue or (unit and out[-1][-1:].isdigit())):
            out[-1] += part
            glue = False
            continue
        out.append(part)
        glue = unit
    name = "_".join(out)
    return name + "_value" if name.endswith(_RESERVED_SUFFIXES) else name


class _HostGauges(PromCollector):
    """Exports the latest sample; replaced atomically each cycle."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._latest: dict[str, float] = {}

    def update(self, metrics: dict[str, float]) -> None:
        with self._lock:
            self._latest = dict(metrics)

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            latest = self._latest
        gpu: dict[str, GaugeMetricFamily | CounterMetricFamily] = {}
        for name, value in sorted(latest.items()):
            m = _GPU_RE.match(name)
            if m:
                fam_name = "healer_gpu_" + prom_name(m.group(2))
                fam = gpu.get(fam_name)
                if fam is None:
                    fam = _family(fam_name, f"GPU {m.group(2)}", labels=["gpu"])
                    gpu[fam_name] = fam
                fam.add_metric([m.group(1)], value)
            else:
                fam = _family("healer_host_" + prom_name(name), name)
                fam.add_metric([], value)
                yield fam
        yield from gpu.values()


def _family(name: str, documentation: str, labels: list[str] | None = None
            ) -> GaugeMetricFamily | CounterMetricFamily:
    """A counter for ``*_total`` names (the family name drops the suffix; the sample keeps
    it), a gauge for everything else."""
    if name.endswith("_total"):
        return CounterMetricFamily(name.removesuffix("_total"), documentation, labels=labels)
    return GaugeMetricFamily(name, documentation, labels=labels)


class Telemetry:
    """healer's metric families, registered with the process that owns them."""

    def __init__(self) -> None:
        r = self.agent_registry = CollectorRegistry()
        self.cycle_seconds = Histogram(
            "healer_cycle_seconds", "Duration of one sampling cycle", registry=r,
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
        )
        self.cycle_lag_seconds = Gauge(
            "healer_cycle_lag_seconds", "How late the last cycle started", registry=r
        )
        self.collector_errors = Counter(
            "healer_collector_errors_total", "Collector failures", ["collector"], registry=r
        )
        self.kmsg_lines = Counter("healer_kmsg_lines_total", "Kernel-log records read", registry=r)
        self.kmsg_lost = Counter(
            "healer_kmsg_lost_total", "Kernel-log records overwritten before read", registry=r
        )
        self.kmsg_malformed = Counter(
            "healer_kmsg_malformed_total", "Kernel-log lines that did not parse", registry=r
        )
        self.incidents = Counter(
            "healer_incidents_total", "Incident transitions", ["playbook", "event"], registry=r
        )
        self.open_incidents = Gauge("healer_open_incidents", "Open incidents", registry=r)
        self.decisions = Counter(
            "healer_guard_decisions_total", "Guard verdicts", ["verdict"], registry=r
        )
        self.actions = Counter(
            "healer_actions_total", "Action journal transitions", ["kind", "state"], registry=r
        )
        # In a fleet (healer.fleet): the agent's side of the control-plane protocol.
        self.fleet_request_seconds = Histogram(
            "healer_fleet_request_seconds", "Requests to the control plane, answered or not",
            ["endpoint"], registry=r,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
        )
        self.fleet_reachable = Gauge(
            "healer_fleet_reachable", "1 while the control plane answers", registry=r
        )
        self.fleet_clock_skew_seconds = Gauge(
            "healer_fleet_clock_skew_seconds", "Control plane's clock minus this host's",
            registry=r,
        )
        self.fleet_outbox_reports = Gauge(
            "healer_fleet_outbox_reports", "Reports waiting for the control plane", registry=r
        )
        self.fleet_outbox_bytes = Gauge(
            "healer_fleet_outbox_bytes", "Bytes of reports waiting for the control plane",
            registry=r,
        )
        r = self.serve_registry = CollectorRegistry()
        self.llm_calls = Counter("healer_llm_calls_total", "LLM requests", registry=r)
        self.llm_failures = Counter(
            "healer_llm_failures_total", "LLM failures", ["reason"], registry=r
        )
        self.llm_latency = Histogram(
            "healer_llm_latency_seconds", "LLM request latency", registry=r,
            buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
        )
        self.llm_tokens = Counter(
            "healer_llm_tokens_total", "LLM tokens", ["direction"], registry=r
        )
        self.llm_cache_hits = Counter("healer_llm_cache_hits_total", "LLM cache hits", registry=r)
        self.llm_deferred = Counter(
            "healer_llm_deferred_total",
            "LLM diagnoses not started when due: busy (in flight elsewhere), backoff, budget",
            ["reason"], registry=r,
        )
        self.llm_circuit_open = Gauge(
            "healer_llm_circuit_open", "1 while the LLM circuit breaker is open", registry=r
        )
        self.notifications = Counter(
            "healer_notifications_total", "Notification deliveries", ["channel", "result"],
            registry=r,
        )
        # A control plane's agent requests, by lane (web.fleet.Lanes): time waiting for one
        # of the lane's threads, time running (the database's included), and requests
        # shed with 429 because the lane's queue was full.
        self.agent_request_seconds = Histogram(
            "healer_agent_request_seconds", "Agent protocol requests on this control plane",
            ["lane", "phase"], registry=r,
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        self.agent_requests_shed = Counter(
            "healer_agent_requests_shed_total", "Agent requests answered 429: lane full",
            ["lane"], registry=r,
        )
        self.host = _HostGauges()
        r.register(self.host)

    def agent_request(self, lane: str, phase: str, seconds: float) -> None:
        """One agent request's time in ``lane`` (web.fleet.Lane's ``observe``)."""
        if phase == "shed":
            self.agent_requests_shed.labels(lane).inc()
        else:
            self.agent_request_seconds.labels(lane, phase).observe(seconds)
