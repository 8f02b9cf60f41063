"""The detector: every playbook's signals over one sample, turned into fire/clear events.

Signal evaluation is pure (``signals``, ``kmsg``); the detector only keeps what a window
of kernel-log matches, a threshold's hysteresis and a per-GPU-process memory history need.
An incident is keyed by scope and subject: the scope is where an action could apply, the
subject what within it the incident is about (a device, an interface, a binary; see
``Playbook.subject``). Kernel lines no playbook claims go to the unknown path (``unknown``).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from guardrails.actions import check_scope
from healer.detect import signals as S
from healer.detect.events import DetectEvent
from healer.detect.evidence import ReadCgroup, ReadSysctl, gather
from healer.detect.kmsg import Found, KmsgMatcher, SigKey
from healer.detect.subjects import SubjectCap
from healer.detect.unknown import UnknownPath
from healer.detect.view import WindowView
from healer.models import Evidence, GpuState, ProcessInfo, Sample
from playbooks.schema import (
    SEVERITY_RANK,
    Absent,
    Baseline,
    GpuProcessSignal,
    GpuThrottle,
    Kmsg,
    Playbook,
    ProcessPredicate,
    Rate,
    Signal,
    Threshold,
    Trend,
)
from playbooks.xid import XID_TABLE, normalize_pci

log = logging.getLogger("healer.detect")
Key = tuple[str, str]  # (scope, subject)
Table = dict[Key | None, S.Hit | None]  # key -> hit (None: false); key None: any other scope
Firing = dict[Key, list[tuple[Signal, S.Hit]]]
_STATEFUL = (Kmsg, Threshold)  # evaluated every cycle: their windows and hysteresis move


@dataclass
class _KWindow:
    """Kernel-log matches of one signal in one scope, over its window."""

    hits: deque[tuple[float, int]]  # (cycle ts, lines or reports that cycle)
    captures: dict[str, str]
    lines: deque[str]
    new: int = 0
    total: int = 0  # the sum over ``hits``, kept as they come and go

    def add(self, now: float, count: int) -> None:
        if self.hits and self.hits[-1][0] == now:
            self.hits[-1] = (now, self.hits[-1][1] + count)
        else:
            self.hits.append((now, count))
        self.total += count
        self.new += count

    def expire(self, before: float) -> int:
        """Drop what fell out of the window; the count left in it."""
        while self.hits and self.hits[0][0] <= before:
            self.total -= self.hits.popleft()[1]
        return self.total


class Detector:
    """Evaluates a playbook library against each sample; see ``observe``."""

    def __init__(
        self,
        playbooks: Iterable[Playbook],
        net_scope: str = "host",
        pci_map: Mapping[str, int] | None = None,
        read_sysctl: ReadSysctl | None = None,
        refresh_seconds: float = 10.0,
        read_cgroup: ReadCgroup | None = None,
        cgroup_root: str | None = None,
        unknown: UnknownPath | None = None,
    ) -> None:
        library = tuple(playbooks)
        # Alert playbooks match alerts as they arrive (``alert``), never the window.
        self.playbooks: tuple[Playbook, ...] = tuple(pb for pb in library if not pb.from_alerts)
        self.alert_playbooks = tuple(pb for pb in library if pb.from_alerts)
        # Confined (a sandboxed daemon): process signals and evidence see only the processes
        # at or below this cgroup; a host's own top process is not ours to scope or act on.
        self.cgroup_root = _norm_cgroup(cgroup_root) if cgroup_root is not None else None
        self.net_scope = net_scope
        self.read_sysctl = read_sysctl
        self.read_cgroup = read_cgroup
        self.refresh_seconds = refresh_seconds
        self._pci: dict[str, int] = {}
        for bus, idx in (pci_map or {}).items():
            key = normalize_pci(bus)
            if key is not None:
                self._pci[key] = idx
        self._index = S.MetricIndex()
        self.unknown = unknown
        self._matcher = KmsgMatcher(self.playbooks,
                                    unknown.vocabulary if unknown is not None else None)
        self._subjects = SubjectCap()
        self._kwin: dict[SigKey, dict[Key, _KWindow]] = {}  # signal -> key -> its window
        self._holds: dict[tuple[int, int, tuple[tuple[str, str], ...]], S.Hysteresis] = {}
        self._gpu_hist: dict[tuple[int, int], deque[tuple[float, float]]] = {}
        self._gpu_hist_seconds = max(
            (s.seconds for pb in self.playbooks for s in pb.detect.signals
             if isinstance(s, GpuProcessSignal)), default=0.0)
        self._active: dict[int, dict[Key, float]] = {}  # playbook -> key -> last emitted
        # playbook -> its signal keys when every signal is a kernel-log one, else None
        self._kernel_only: list[list[SigKey] | None] = [
            [(pi, si) for si in range(len(pb.detect.signals))]
            if all(isinstance(sig, Kmsg) for sig in pb.detect.signals) else None
            for pi, pb in enumerate(self.playbooks)]
        self._start: float | None = None
        self.bad_scopes = 0

    @property
    def malformed(self) -> int:
        """Kernel-log records skipped as malformed since start."""
        return self._matcher.malformed

    def observe(self, window: WindowView, sample: Sample) -> list[DetectEvent]:
        """Evaluate every playbook on this sample; returns fire and clear events."""
        now = sample.ts
        if self._start is None:
            self._start = now
        self._index.refresh(window.names())
        self._learn_gpus(sample.gpus, now)
        scan = self._matcher.scan(sample.kmsg, now)
        self._record_kmsg(scan.found, now)
        scanned = sample.processes if sample.processes is not None else window.processes()
        processes: Sequence[ProcessInfo] = self._confined(scanned or ())
        events: list[DetectEvent] = []
        for pi, pb in enumerate(self.playbooks):
            if self._idle(pi):
                continue
            tables = self._tables(pi, pb, window, sample, processes, now)
            firing = _innermost(_combine(tables, pb.detect.signals,
                                         "all" if pb.detect.all else "any",
                                         (self._default_scope(pb), "")))
            events += self._transitions(pi, pb, firing, window, sample.gpus, processes, now)
        self._prune_kmsg()
        if self.unknown is not None:
            events += self.unknown.observe(scan.unclaimed, now)
        return events

    def _idle(self, pi: int) -> bool:
        """A kernel-log-only playbook with nothing in its windows and nothing firing: its
        evaluation would find nothing (most of the library, most cycles)."""
        keys = self._kernel_only[pi]
        return keys is not None and not self._active.get(pi) and not any(
            k in self._kwin for k in keys)

    def _tables(self, pi: int, pb: Playbook, window: WindowView, sample: Sample,
                processes: Sequence[ProcessInfo], now: float) -> list[Table]:
        """Each signal's table, in signal order.

        An ``all`` playbook with one silent condition cannot fire (see ``_combine``), so
        its stateless signals (trends, rates, baselines: the costly window scans) are
        skipped then; kernel-log windows and threshold hysteresis are stateful and always
        fed. The opening kernel signals are one condition, silent only when all are.
        """
        sigs = pb.detect.signals
        tables: list[Table] = [{} for _ in sigs]
        stateful = [i for i, s in enumerate(sigs) if isinstance(s, _STATEFUL)]
        for si in stateful:
            sig = sigs[si]
            if _opens(sig) or not isinstance(sig, Kmsg):  # parts only claim lines
                tables[si] = self._table(pb, self._evaluate(pi, si, sig, window, sample,
                                                            processes, now), now)
        if pb.detect.all:
            kernel = [i for i in stateful if _opens(sigs[i])]
            fed = [i for i in stateful if not isinstance(sigs[i], Kmsg)]
            if (kernel and not any(any(tables[i].values()) for i in kernel)) or any(
                    not any(tables[i].values()) for i in fed):
                return tables
        for si, sig in enumerate(sigs):
            if si not in stateful:
                tables[si] = self._table(pb, self._evaluate(pi, si, sig, window, sample,
                                                            processes, now), now)
        return tables

    def _confined(self, processes: Sequence[ProcessInfo]) -> Sequence[ProcessInfo]:
        """The processes inside ``cgroup_root`` (all of them when unconfined)."""
        root = self.cgroup_root
        if root is None:
            return processes
        return [p for p in processes if p.cgroup is not None and _cgroup_under(p.cgroup, root)]

    # --- scopes -----------------------------------------------------------------------
    def _default_scope(self, pb: Playbook) -> str:
        return self.net_scope if pb.scope == "net" else "host"

    def _key(self, pb: Playbook, captures: Mapping[str, str], now: float) -> Key | None:
        """The incident key (scope, subject) for these captures; None without the scope."""
        scope = self._scope(pb, captures)
        if scope is None:
            return None
        if pb.subject is None:
            return scope, ""
        return scope, self._subjects.admit(pb.id, captures.get(pb.subject.strip("{}"), ""), now)

    def _scope(self, pb: Playbook, captures: Mapping[str, str]) -> str | None:
        """The incident scope for these captures; None when they lack the scope's label."""
        if pb.scope in ("host", "net"):
            return self._default_scope(pb)
        kind, _, rest = pb.scope.partition(":")
        label = rest.strip("{}")
        value = captures.get(label)
        if value is None and label == "gpu" and "pci" in captures:
            key = normalize_pci(captures["pci"])
            index = self._pci.get(key) if key else None
            return f"gpu:{index}" if index is not None else "host"  # unknown bus: the host
        if value is None:
            return None
        try:
            return check_scope(f"{kind}:{value}")  # RE2, and one spelling per cgroup
        except ValueError:
            self.bad_scopes += 1
            return "host"

    def _table(self, pb: Playbook, hits: list[S.Hit], now: float) -> Table:
        table: Table = {}
        for hit in hits:
            key = hit.key if hit.key is not None else self._key(pb, hit.captures, now)
            if self._outside_confinement(key[0] if key else None):
                continue  # e.g. another group's OOM on the shared kernel log: not ours
            if hit.ok:
                if table.get(key) is None:
                    table[key] = hit
            else:
                table.setdefault(key, None)
        return table

    def _outside_confinement(self, scope: str | None) -> bool:
        """A cgroup scope outside ``cgroup_root`` when the daemon is confined to it."""
        if self.cgroup_root is None or scope is None or not scope.startswith("cgroup:"):
            return False
        return not _cgroup_under(scope.removeprefix("cgroup:"), self.cgroup_root)

    # --- state fed by the sample ------------------------------------------------------
    def _learn_gpus(self, gpus: Sequence[GpuState], now: float) -> None:
        for gpu in gpus:
            bus = normalize_pci(gpu.pci_bus_id) if gpu.pci_bus_id else None
            if bus is not None:
                self._pci[bus] = gpu.index
        if not self._gpu_hist_seconds:
            return
        for gpu in gpus:
            for proc in gpu.processes:
                if proc.used_memory_bytes is not None:
                    hist = self._gpu_hist.setdefault((gpu.index, proc.pid), deque(maxlen=3600))
                    hist.append((now, float(proc.used_memory_bytes)))
        for key, hist in list(self._gpu_hist.items()):
            while hist and hist[0][0] < now - self._gpu_hist_seconds:
                hist.popleft()
            if not hist:
                del self._gpu_hist[key]

    def _record_kmsg(self, found: Found, now: float) -> None:
        for wins in self._kwin.values():
            for old in wins.values():
                old.new = 0
        for sigkey, aggs in found.items():
            pb = self.playbooks[sigkey[0]]
            for agg in aggs.values():
                # A line without the scope's label (a memcg OOM kill whose summary line
                # was lost) still counts: on the playbook's default scope.
                key = self._key(pb, agg.captures, now) or (self._default_scope(pb), "")
                wins = self._kwin.setdefault(sigkey, {})
                win = wins.get(key)
                if win is None:
                    win = wins[key] = _KWindow(deque(), {}, deque(maxlen=20))
                win.add(now, agg.count)
                win.captures = agg.captures
                win.lines.extend(agg.lines)

    def _prune_kmsg(self) -> None:
        for sigkey, wins in list(self._kwin.items()):
            for key in [k for k, w in wins.items() if not w.hits]:
                del wins[key]
            if not wins:
                del self._kwin[sigkey]

    # --- signals ----------------------------------------------------------------------
    def _evaluate(self, pi: int, si: int, sig: Signal, window: WindowView, sample: Sample,
                  processes: Sequence[ProcessInfo], now: float) -> list[S.Hit]:
        if isinstance(sig, Kmsg):
            return self._eval_kmsg((pi, si), sig, now)
        if isinstance(sig, Threshold):
            return self._hold(pi, si, sig, S.eval_threshold(sig, sample.metrics, self._index), now)
        if isinstance(sig, Rate):
            return S.eval_rate(sig, window, self._index)
        if isinstance(sig, Baseline):
            return S.eval_baseline(sig, window, self._index)
        if isinstance(sig, Absent):
            start = now if self._start is None else self._start
            return S.eval_absent(sig, window, now - start)
        if isinstance(sig, ProcessPredicate):
            return S.eval_process(sig, processes)
        if isinstance(sig, GpuThrottle):
            return S.eval_gpu_throttle(sig, sample.gpus)
        if isinstance(sig, GpuProcessSignal):
            if sig.mode == "hog":
                return S.eval_gpu_hog(sig, sample.gpus)
            return S.eval_gpu_memory_trend(sig, self._gpu_hist)
        assert isinstance(sig, Trend)
        return S.eval_trend(sig, window, self._index, now)

    def _eval_kmsg(self, sigkey: SigKey, sig: Kmsg, now: float) -> list[S.Hit]:
        hits = []
        for key, win in self._kwin.get(sigkey, {}).items():
            total = win.expire(now - sig.window_seconds)
            if total and sig.role != "part":
                hits.append(S.Hit(float(total), dict(win.captures), total >= sig.count,
                                  count=win.new, window_count=total, lines=tuple(win.lines),
                                  key=key))
        return hits

    def _hold(self, pi: int, si: int, sig: Threshold, hits: list[S.Hit], now: float
              ) -> list[S.Hit]:
        clear_value = sig.value if sig.clear_value is None else sig.clear_value
        for hit in hits:
            hold = self._holds.setdefault((pi, si, tuple(sorted(hit.captures.items()))),
                                          S.Hysteresis())
            clearing = not S.compare(sig.op, hit.value, clear_value)
            hit.ok = hold.update(hit.ok, clearing, now, sig.for_seconds, sig.clear_for_seconds)
        return hits

    # --- events -----------------------------------------------------------------------
    def _transitions(self, pi: int, pb: Playbook, firing: Firing, window: WindowView,
                     gpus: Sequence[GpuState], processes: Sequence[ProcessInfo],
                     now: float) -> list[DetectEvent]:
        events = []
        for key, hits in firing.items():
            scope, subject = key
            new = sum(h.count for sig, h in hits if isinstance(sig, Kmsg))
            in_window = sum(h.window_count for sig, h in hits if isinstance(sig, Kmsg))
            metric_hit = any(not isinstance(sig, Kmsg) for sig, _ in hits)
            active = self._active.setdefault(pi, {})
            last = active.get(key)
            if last is None:
                count = in_window or 1
            elif new:
                count = new
            elif metric_hit and now - last >= self.refresh_seconds:
                count = 0 if any(isinstance(s, Kmsg) for s in pb.detect.signals) else 1
            else:
                continue
            active[key] = now
            evidence = gather(pb, scope, hits, window, self._index, gpus, processes,
                              self.read_sysctl, self.read_cgroup)
            events.append(DetectEvent("fire", pb.id, scope, _severity(pb, hits), evidence,
                                      count, now, subject))
        active = self._active.get(pi, {})
        for gone in [k for k in active if k not in firing]:
            del active[gone]
            events.append(DetectEvent("clear", pb.id, gone[0], pb.severity, Evidence(), 0, now,
                                      gone[1]))
        return events


def _opens(sig: Signal) -> bool:
    """A kernel-log signal that can open an incident (any role but ``part``)."""
    return isinstance(sig, Kmsg) and sig.role != "part"


def _norm_cgroup(path: str) -> str:
    return "/" + "/".join(p for p in str(path).split("/") if p)


def _cgroup_under(path: str, root: str) -> bool:
    """``path`` is ``root`` or below it (``/a/bc`` is not below ``/a/b``)."""
    path = _norm_cgroup(path)
    return root == "/" or path == root or path.startswith(root + "/")


def _innermost(firing: Firing) -> Firing:
    """Drop a cgroup scope whose descendant fires too on metrics alone: cgroup memory, pids
    and CPU are charged to every ancestor (cgroup-v2.rst, "Organizing Processes"), so a
    parent echoes its child's leak. Kernel-log scopes name the cgroup the kernel blamed."""
    cgroups = [k[0][7:] for k, hits in firing.items()
               if k[0].startswith("cgroup:") and not any(isinstance(g, Kmsg) for g, _ in hits)]
    echoes = {f"cgroup:{a}" for a in cgroups for b in cgroups
              if a != b and _cgroup_under(b, _norm_cgroup(a))}
    return {k: hits for k, hits in firing.items() if k[0] not in echoes} if echoes else firing


def _severity(pb: Playbook, hits: Sequence[tuple[Signal, S.Hit]]) -> str:
    """The worst of: the playbook's severity (or its firing kernel signals' own), the Xid
    table's for the codes seen, and the escalation step the kernel-log rate reached."""
    found = [pb.severity]
    kmsg = [(sig, h) for sig, h in hits if isinstance(sig, Kmsg)]
    if kmsg and any(sig.severity for sig, _ in kmsg):
        found = [sig.severity or pb.severity for sig, _ in kmsg]
    codes = [h.captures.get("xid", "") for _, h in hits]
    xids = [XID_TABLE[int(c)].severity for c in codes if c.isdigit() and int(c) in XID_TABLE]
    found = xids or found
    seen = max((h.window_count for _, h in kmsg), default=0)
    found += [step.severity for step in pb.escalate if seen >= step.count]
    return max(found, key=SEVERITY_RANK.__getitem__)


def _combine(tables: list[Table], sigs: Sequence[Signal], mode: str, default: Key) -> Firing:
    """Keys where the playbook fires, with the hits behind each (key None: any key).

    In ``all`` mode every condition must hold for the key. A playbook's kernel signals that
    open (roles line, start, end) are one condition: the formats of one event across kernel
    versions. Signals of role ``part`` only claim lines for reports: never a condition.
    """
    conditions: list[list[tuple[Signal, Table]]] = []
    kernel: list[tuple[Signal, Table]] = []
    for sig, table in zip(sigs, tables, strict=True):
        if isinstance(sig, Kmsg):
            if sig.role != "part":
                kernel.append((sig, table))
        else:
            conditions.append([(sig, table)])
    if kernel:
        conditions.insert(0, kernel)
    out: Firing = {}
    if mode == "any":
        for sig, table in (pair for cond in conditions for pair in cond):
            for key, hit in table.items():
                if hit is not None:
                    out.setdefault(key or default, []).append((sig, hit))
        return out
    scoped = sorted({k for cond in conditions for _, t in cond for k, h in t.items()
                     if k is not None and h is not None})
    for key in [*scoped, None]:
        if key is None and out:
            break  # the agnostic combination only when no scoped one fired
        found = [_holding(cond, key) for cond in conditions]
        if all(found):
            out[key or default] = [pair for pairs in found for pair in pairs]
    return out


def _holding(condition: list[tuple[Signal, Table]], key: Key | None
             ) -> list[tuple[Signal, S.Hit]]:
    """The hits by which one condition holds for ``key`` (a None-keyed hit: any key)."""
    out = []
    for sig, table in condition:
        hit = table[key] if key in table else table.get(None)
        if hit is not None:
            out.append((sig, hit))
    return out
