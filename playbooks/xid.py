"""The NVIDIA Xid table: what a code means, how bad it is, and how a person recovers.

Source: NVIDIA "Xid Errors" (https://docs.nvidia.com/deploy/xid-errors/index.html), its Xid
catalog (https://docs.nvidia.com/deploy/xid-errors/analyzing-xid-catalog.html) and the GPU
memory error management guide (row remapping, contained/uncontained ECC). Each code maps to
one playbook id (the Xid class); a code not in the table goes to gpu-xid-other. healer never
performs the disruptive recovery itself.
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
        # The rest of NVIDIA's catalog (analyzing-xid-catalog.html): the class follows the
        # catalog's immediate action (RESTART_APP: an application fault; RESET_GPU: driver,
        # firmware or memory; the NVLink workflows: NVLink), the severity its category.
        # Codes the catalog marks unused, and 154 (which only qualifies another Xid), have
        # no class: gpu-xid-other reports them as they are.
        _x(8, "GPU stopped processing", "warning", "app_restart", "gpu-xid-app-fault"),
        _x(11, "Invalid or corrupted push buffer stream", "warning", "app_restart",
           "gpu-xid-app-fault"),
        _x(25, "Invalid or illegal push buffer stream", "warning", "app_restart",
           "gpu-xid-app-fault"),
        _x(32, "Invalid or corrupted push buffer stream", "warning", "app_restart",
           "gpu-xid-app-fault"),
        _x(37, "Driver firmware error", "info", "notify", "gpu-xid-driver-firmware"),
        _x(38, "Driver firmware error", "info", "notify", "gpu-xid-driver-firmware"),
        _x(39, "Copy Engine Exception", "warning", "app_restart", "gpu-xid-app-fault"),
        _x(40, "Copy Engine Exception", "warning", "app_restart", "gpu-xid-app-fault"),
        _x(41, "Copy Engine Exception", "warning", "app_restart", "gpu-xid-app-fault"),
        _x(44, "Graphics Engine fault during context switch", "info", "notify",
           "gpu-xid-driver-firmware"),
        _x(46, "GPU stopped processing", "critical", "gpu_reset", "gpu-xid-driver-firmware"),
        _x(54, "Auxiliary power is not connected to the GPU board", "critical", "drain",
           "gpu-xid-hw-other"),
        _x(60, "Video processor exception", "warning", "app_restart", "gpu-xid-app-fault"),
        _x(66, "Illegal access by driver", "info", "notify", "gpu-xid-driver-firmware"),
        _x(67, "Illegal access by driver", "info", "notify", "gpu-xid-driver-firmware"),
        _x(70, "CE3: Unknown Error", "warning", "app_restart", "gpu-xid-app-fault"),
        _x(71, "CE4: Unknown Error", "warning", "app_restart", "gpu-xid-app-fault"),
        _x(72, "CE5: Unknown Error", "warning", "app_restart", "gpu-xid-app-fault"),
        _x(75, "CE6: Unknown Error", "warning", "app_restart", "gpu-xid-app-fault"),
        _x(76, "CE7: Unknown Error", "warning", "app_restart", "gpu-xid-app-fault"),
        _x(77, "CE8: Unknown Error", "warning", "app_restart", "gpu-xid-app-fault"),
        _x(78, "vGPU Start Error", "warning", "notify", "gpu-xid-driver-firmware"),
        _x(80, "Corrupted data sent to GPU", "warning", "app_restart", "gpu-xid-app-fault"),
        _x(82, "NVJPG0 Error", "warning", "app_restart", "gpu-xid-app-fault"),
        _x(83, "NVDEC1 Error", "warning", "app_restart", "gpu-xid-app-fault"),
        _x(84, "NVDEC2 Error", "warning", "app_restart", "gpu-xid-app-fault"),
        _x(85, "CE9: Unknown Error", "warning", "app_restart", "gpu-xid-app-fault"),
        _x(86, "OFA Exception", "warning", "app_restart", "gpu-xid-app-fault"),
        _x(88, "NVDEC3 Error", "warning", "app_restart", "gpu-xid-app-fault"),
        _x(89, "NVDEC4 Error", "warning", "app_restart", "gpu-xid-app-fault"),
        _x(93, "Non-fatal violation of provisioned InfoROM wear limit", "info", "notify",
           "gpu-xid-hw-other"),
        _x(96, "NVDEC5 Error", "warning", "app_restart", "gpu-xid-app-fault"),
        _x(97, "NVDEC6 Error", "warning", "app_restart", "gpu-xid-app-fault"),
        _x(98, "NVDEC7 Error", "warning", "app_restart", "gpu-xid-app-fault"),
        _x(99, "NVJPG1 Error", "warning", "app_restart", "gpu-xid-app-fault"),
        _x(100, "NVJPG2 Error", "warning", "app_restart", "gpu-xid-app-fault"),
        _x(101, "NVJPG3 Error", "warning", "app_restart", "gpu-xid-app-fault"),
        _x(102, "NVJPG4 Error", "warning", "app_restart", "gpu-xid-app-fault"),
        _x(103, "NVJPG5 Error", "warning", "app_restart", "gpu-xid-app-fault"),
        _x(104, "NVJPG6 Error", "warning", "app_restart", "gpu-xid-app-fault"),
        _x(105, "NVJPG7 Error", "warning", "app_restart", "gpu-xid-app-fault"),
        _x(106, "SMBPBI Test Message", "info", "notify", "gpu-xid-hw-other"),
        _x(107, "SMBPBI Test Message Silent", "info", "notify", "gpu-xid-hw-other"),
        _x(109, "Context Switch Timeout Error", "critical", "gpu_reset",
           "gpu-xid-driver-firmware"),
        _x(110, "Security Fault Error", "critical", "gpu_reset", "gpu-xid-driver-firmware"),
        _x(121, "C2C Error", "info", "notify", "gpu-xid-hw-other"),
        _x(126, "CE10: Unknown Error", "warning", "app_restart", "gpu-xid-app-fault"),
        _x(127, "CE11: Unknown Error", "warning", "app_restart", "gpu-xid-app-fault"),
        _x(128, "CE12: Unknown Error", "warning", "app_restart", "gpu-xid-app-fault"),
        _x(129, "CE13: Unknown Error", "warning", "app_restart", "gpu-xid-app-fault"),
        _x(130, "CE14: Unknown Error", "warning", "app_restart", "gpu-xid-app-fault"),
        _x(131, "CE15: Unknown Error", "warning", "app_restart", "gpu-xid-app-fault"),
        _x(132, "CE16: Unknown Error", "warning", "app_restart", "gpu-xid-app-fault"),
        _x(133, "CE17: Unknown Error", "warning", "app_restart", "gpu-xid-app-fault"),
        _x(134, "CE18: Unknown Error", "warning", "app_restart", "gpu-xid-app-fault"),
        _x(135, "CE19: Unknown Error", "warning", "app_restart", "gpu-xid-app-fault"),
        _x(136, "Link Training Failed", "critical", "gpu_reset", "gpu-xid-nvlink"),
        _x(137, "NVLink Privilege Error", "info", "notify", "gpu-xid-nvlink"),
        _x(139, "OFA1 Error", "warning", "app_restart", "gpu-xid-app-fault"),
        _x(140, "ECC Unrecovered Error", "critical", "gpu_reset", "gpu-xid-ecc-uncontained"),
        _x(141, "CUDA Fast Path Error", "info", "notify", "gpu-xid-app-fault"),
        _x(142, "NVENC3 Error", "warning", "notify", "gpu-xid-hw-other"),
        _x(143, "GPU Initialization Error", "critical", "gpu_reset", "gpu-xid-driver-firmware"),
        _x(144, "NVLINK: SAW Error", "critical", "gpu_reset", "gpu-xid-nvlink"),
        _x(145, "NVLINK: RLW Error", "critical", "gpu_reset", "gpu-xid-nvlink"),
        _x(146, "NVLINK: TLW Error", "critical", "gpu_reset", "gpu-xid-nvlink"),
        _x(147, "NVLINK: TREX Error", "critical", "gpu_reset", "gpu-xid-nvlink"),
        _x(148, "NVLINK: NVLPW_CTRL Error", "critical", "gpu_reset", "gpu-xid-nvlink"),
        _x(149, "NVLINK: NETIR Error", "critical", "gpu_reset", "gpu-xid-nvlink"),
        _x(150, "NVLINK: MSE Error", "critical", "gpu_reset", "gpu-xid-nvlink"),
        _x(151, "Key rotation Error", "critical", "node_reboot", "gpu-xid-driver-firmware"),
        _x(152, "DLA SMMU Error", "info", "notify", "gpu-xid-hw-other"),
        _x(153, "DLA timeout Error", "info", "notify", "gpu-xid-hw-other"),
        _x(155, "NVLINK: SW Defined Error", "critical", "gpu_reset", "gpu-xid-nvlink"),
        _x(156, "Resource Retirement Event", "critical", "gpu_reset", "gpu-xid-row-remap"),
        _x(157, "Resource Retirement Failure", "info", "notify", "gpu-xid-hw-other"),
        _x(158, "GPU Fatal Timeout", "critical", "gpu_reset", "gpu-xid-driver-firmware"),
        _x(159, "CHI Non-Data Error", "warning", "app_restart", "gpu-xid-app-fault"),
        _x(160, "Channel Retirement Event", "info", "notify", "gpu-xid-hw-other"),
        _x(161, "Channel Retirement Failure", "info", "notify", "gpu-xid-hw-other"),
        _x(162, "Power Smoothing HW Circuitry capability reengaged", "warning", "notify",
           "gpu-xid-hw-other"),
        _x(163, "Power Smoothing HW Circuitry capability disengaged", "warning", "notify",
           "gpu-xid-hw-other"),
        _x(164, "Power Smoothing HW Circuitry low lifetime reached", "warning", "notify",
           "gpu-xid-hw-other"),
        _x(165, "Power Smoothing HW Circuitry lifetime exhausted", "warning", "notify",
           "gpu-xid-hw-other"),
        _x(166, "Confidential-computing traffic on an NVLink not yet set up for it", "warning",
           "notify", "gpu-xid-nvlink"),
        _x(167, "PCIe fatal timeout", "critical", "drain", "gpu-xid-hw-other"),
        _x(168, "Errors found in WPR (write protected region)", "warning", "notify",
           "gpu-xid-row-remap"),
        _x(169, "Internal micro-controller (SEC2) halt", "critical", "gpu_reset",
           "gpu-xid-driver-firmware"),
        _x(170, "Interrupt seen in CC mode", "warning", "notify", "gpu-xid-nvlink"),
        _x(171, "Uncorrectable DRAM error (the details of an Xid 48)", "critical", "gpu_reset",
           "gpu-xid-ecc-contained"),
        _x(172, "Uncorrectable SRAM error (the details of an Xid 48)", "critical", "gpu_reset",
           "gpu-xid-ecc-contained"),
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
