"""The NVIDIA Xid table: what a code means, how bad it is, and how a person recovers.

Source: NVIDIA "Xid Errors" (https://docs.nvidia.com/deploy/xid-errors/index.html) and the
GPU memory error management guide (row remapping, contained/uncontained ECC). Each code maps
to one playbook id (the Xid class); healer never performs the disruptive recovery itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from guardrails import linear

Recovery = Literal["notify", "app_restart", "gpu_reset", "drain", "node_reboot"]


@dataclass(frozen=True)
class XidInfo:
    code: int
    meaning: str
    severity: Literal["info", "warning", "critical"]
    recovery: Recovery
    playbook: str


def _x(code: int, meaning: str, severity: str, recovery: str, playbook: str) -> XidInfo:
    return XidInfo(code, meaning, severity, recovery, playbook)  # type: ignore[arg-type]


XID_TABLE: dict[int, XidInfo] = {
    x.code: x
    for x in (
        _x(13, "Graphics engine exception (usually an application bug: illegal instruction, "
               "out-of-range access)", "warning", "app_restart", "gpu-xid-app-fault"),
        _x(31, "GPU memory page fault (an application touched an illegal address)",
           "warning", "app_restart", "gpu-xid-app-fault"),
        _x(43, "GPU stopped processing: a channel was reset after an application fault",
           "warning", "app_restart", "gpu-xid-app-fault"),
        _x(45, "Preemptive cleanup after earlier errors (processes were killed)",
           "info", "notify", "gpu-xid-app-fault"),
        _x(48, "Double-bit ECC error; the driver contained it", "critical", "gpu_reset",
           "gpu-xid-ecc-contained"),
        _x(61, "Internal micro-controller breakpoint/warning (driver or firmware)", "critical",
           "gpu_reset", "gpu-xid-driver-firmware"),
        _x(62, "Internal micro-controller halt (driver or firmware)", "critical",
           "gpu_reset", "gpu-xid-driver-firmware"),
        _x(63, "ECC page retirement or row-remapping recording event; reset to apply",
           "warning", "gpu_reset", "gpu-xid-row-remap"),
        _x(64, "ECC page retirement or row-remapper recording failure", "critical",
           "drain", "gpu-xid-row-remap"),
        _x(68, "Video processor (NVDEC) exception", "warning", "app_restart",
           "gpu-xid-hw-other"),
        _x(69, "Graphics engine class error (driver or hardware)", "critical", "gpu_reset",
           "gpu-xid-driver-firmware"),
        _x(74, "NVLink error", "critical", "gpu_reset", "gpu-xid-nvlink"),
        _x(79, "GPU has fallen off the bus", "critical", "drain", "gpu-xid-fell-off-bus"),
        _x(92, "High single-bit ECC error rate", "warning", "notify", "gpu-xid-hw-other"),
        _x(94, "Contained ECC error: the affected application was stopped", "critical",
           "gpu_reset", "gpu-xid-ecc-contained"),
        _x(95, "Uncontained ECC error: every application on the GPU is affected", "critical",
           "drain", "gpu-xid-ecc-uncontained"),
        _x(119, "GSP RPC timeout (GPU System Processor firmware)", "critical", "node_reboot",
           "gpu-xid-driver-firmware"),
        _x(120, "GSP error (GPU System Processor firmware)", "critical", "gpu_reset",
           "gpu-xid-driver-firmware"),
    )
}

_PCI_RE = linear.compile(  # captured from kernel lines: RE2

    r"^(?:(?P<dom>[0-9a-fA-F]{1,8}):)?(?P<bus>[0-9a-fA-F]{1,2}):(?P<dev>[0-9a-fA-F]{1,2})"
    r"(?:\.[0-7])?$"
)


def normalize_pci(bus_id: str) -> str | None:
    """``00000000:3B:00.0`` (NVML), ``0000:3b:00`` (NVRM) -> ``0000:3b:00``; None if malformed."""
    m = _PCI_RE.match(bus_id.strip())
    if m is None:
        return None
    dom = int(m.group("dom") or "0", 16)
    return f"{dom:04x}:{int(m.group('bus'), 16):02x}:{int(m.group('dev'), 16):02x}"
