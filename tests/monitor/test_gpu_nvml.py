from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pynvml
import pytest

from healer.errors import GpuError
from healer.host.gpu.backend import GpuBackend, decode_clock_reasons, normalize_pci_bus_id
from healer.host.gpu.nvml import NvmlBackend
from healer.monitor.gpu import GpuCollector
from tests.monitor.conftest import PSI_TREE
from tests.monitor.fake_nvml import FakeNvml


def _backend(fake: FakeNvml, timeout: float = 0.5) -> NvmlBackend:
    return NvmlBackend(nvml=fake, timeout=timeout, procfs_root=PSI_TREE)


def test_nvml_backend_satisfies_the_protocol() -> None:
    assert isinstance(_backend(FakeNvml()), GpuBackend)


def test_reads_every_metric_in_contract_units() -> None:
    part = GpuCollector(_backend(FakeNvml())).collect()
    m = part.metrics
    assert m["gpu.count"] == 2
    assert m["gpu.0.utilization_percent"] == 87
    assert m["gpu.0.memory_total_bytes"] == 80 * 1024**3
    assert m["gpu.0.temperature_celsius"] == 71
    assert m["gpu.0.power_draw_watts"] == 350.5
    assert (m["gpu.0.power_limit_min_watts"], m["gpu.0.power_limit_max_watts"]) == (200, 700)
    assert m["gpu.0.sm_clock_mhz"] == 1980 and m["gpu.0.mem_clock_mhz"] == 2619
    assert m["gpu.0.throttle_hw_thermal_slowdown"] == 1 and m["gpu.0.throttle_thermal"] == 1
    assert m["gpu.0.ecc_volatile_corrected_total"] == 5
    assert m["gpu.0.ecc_aggregate_uncorrected_total"] == 1
    assert m["gpu.0.remapped_rows_correctable"] == 2 and m["gpu.0.remapped_rows_failure"] == 0
    assert "gpu.0.retired_pages_dbe" not in m  # NotSupported: left out, not an error
    st = part.gpus[0]
    assert st.ok and st.pci_bus_id == "0000:3b:00.0"
    assert st.compute_mode == "exclusive_process" and st.persistence_mode is True
    assert st.throttle_reasons == ("sw_power_cap", "hw_thermal_slowdown")
    assert st.processes[0].used_memory_bytes == 1024**3


@pytest.mark.parametrize(
    "err", [pynvml.NVMLError_LibraryNotFound, pynvml.NVMLError_DriverNotLoaded]
)
def test_no_nvml_means_gpu_absent_logged_once(
    err: type[pynvml.NVMLError], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO")
    fake = FakeNvml()
    fake.init_error = err
    c = GpuCollector(_backend(fake))
    for _ in range(5):
        part = c.collect()
        assert part.metrics == {"gpu.count": 0.0} and part.gpus == ()
    assert sum("gpu absent" in r.message for r in caplog.records) == 1


def test_gpu_is_lost_marks_that_gpu_unknown_and_not_present() -> None:
    fake = FakeNvml()
    fake.fail[("name", 1)] = pynvml.NVMLError_GpuIsLost
    part = GpuCollector(_backend(fake)).collect()
    assert part.gpus[0].ok and not part.gpus[1].ok and not part.gpus[1].present
    assert part.metrics["gpu.1.ok"] == 0 and part.metrics["gpu.0.ok"] == 1


def test_other_nvml_error_fails_only_that_device_for_the_cycle() -> None:
    fake = FakeNvml()
    fake.fail[("ecc", 0)] = pynvml.NVMLError_Unknown
    c = GpuCollector(_backend(fake))
    assert [g.ok for g in c.collect().gpus] == [False, True]
    del fake.fail[("ecc", 0)]
    assert [g.ok for g in c.collect().gpus] == [True, True]


def test_hung_call_times_out_without_stalling_the_other_gpu() -> None:
    fake = FakeNvml()
    fake.hang.add(("temp", 0))
    c = GpuCollector(_backend(fake, timeout=0.2))
    t0 = time.monotonic()
    part = c.collect()
    elapsed = time.monotonic() - t0
    assert [g.ok for g in part.gpus] == [False, True]
    assert elapsed < 1.5
    fake.hang.clear()
    fake.release.set()  # the driver comes back
    time.sleep(0.05)
    assert [g.ok for g in c.collect().gpus] == [True, True]


def test_setter_reaches_nvml_in_milliwatts_and_errors_translate() -> None:
    fake = FakeNvml()
    b = _backend(fake)
    b.set_power_limit(0, 630.0)
    assert fake.power_limit_mw[0] == 630_000
    assert b.power_limit_constraints(0) == (200.0, 700.0)
    fake.fail[("set_power", 0)] = pynvml.NVMLError_NoPermission
    with pytest.raises(GpuError):
        b.set_power_limit(0, 500.0)


def test_clock_reason_and_pci_decoding() -> None:
    assert decode_clock_reasons(0x1 | 0x20) == ("gpu_idle", "sw_thermal_slowdown")
    assert normalize_pci_bus_id("00000000:3B:00.0") == "0000:3b:00.0"
    assert normalize_pci_bus_id(b"0000:86:00.0\x00") == "0000:86:00.0"


def test_simulated_path_default_is_in_state_dir(tmp_path: Path) -> None:
    from healer.host.gpu import build_gpu_backend
    from healer.settings import Settings

    b = build_gpu_backend(Settings(state_dir=tmp_path, gpu_backend="simulated"))
    assert b is not None and b.device_count() == 1
    assert (tmp_path / "gpu-sim.json").exists()


def test_memory_used_excludes_driver_reservation_like_nvidia_smi() -> None:
    # Seen on a real H200: v1 "used" counted ~615 MiB of driver reservation on an idle
    # GPU where nvidia-smi showed 0 MiB used. v2 reports the reservation apart.
    m = GpuCollector(_backend(FakeNvml())).collect().metrics
    assert m["gpu.0.memory_used_bytes"] == 10 * 1024**3
    assert m["gpu.0.memory_reserved_bytes"] == 512 * 1024**2


def test_memory_falls_back_to_v1_on_drivers_without_v2() -> None:
    class OldDriver(FakeNvml):
        def nvmlDeviceGetMemoryInfo(self, h, version=None):  # type: ignore[no-untyped-def]
            if version is not None:
                raise pynvml.NVMLError_FunctionNotFound()
            return super().nvmlDeviceGetMemoryInfo(h)

    m = GpuCollector(_backend(OldDriver())).collect().metrics
    assert m["gpu.0.memory_used_bytes"] == 10 * 1024**3 + 512 * 1024**2
    assert "gpu.0.memory_reserved_bytes" not in m


AUTO_WITHOUT_DRIVER = """
import json, sys
from healer.host.gpu import build_gpu_backend
from healer.settings import Settings
backend = build_gpu_backend(Settings(state_dir=sys.argv[1], procfs_root=sys.argv[2]))
print(json.dumps([backend is None, "pynvml" in sys.modules]))
"""


def test_auto_builds_nvml_only_where_the_nvidia_driver_is_loaded(tmp_path: Path) -> None:
    from healer.host.gpu import build_gpu_backend
    from healer.settings import Settings

    proc = tmp_path / "proc"
    proc.mkdir()
    # No driver: no backend, and nvidia-ml-py is never imported (it costs the agent ~2 MB).
    out = subprocess.run([sys.executable, "-c", AUTO_WITHOUT_DRIVER, str(tmp_path / "s"),
                          str(proc)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(out.stdout) == [True, False]
    (proc / "driver" / "nvidia").mkdir(parents=True)
    backend = build_gpu_backend(Settings(state_dir=tmp_path / "s", procfs_root=proc))
    assert isinstance(backend, NvmlBackend)
    explicit = build_gpu_backend(Settings(state_dir=tmp_path / "s", gpu_backend="nvml",
                                          procfs_root=tmp_path / "empty"))
    assert isinstance(explicit, NvmlBackend)  # asked for by name: built, errors reported
