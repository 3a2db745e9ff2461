"""The monitor's GPU side without a GPU: NVML answered by a stand-in module that fails the way
drivers do (harness/measure/monitor.py), and the CUDA -> NVML device mapping
(harness/measure/gpu_select.py). The real NVML path runs in the gpu suite."""
from __future__ import annotations

import sys
import time
import types
from pathlib import Path

import pandas as pd
import pytest

from harness.measure.gpu_select import GpuIdentity, nvml_index, pci_key
from harness.measure.monitor import Monitor

GPUS = [GpuIdentity("GPU-aaaa1111", "00000000:1A:00.0"), GpuIdentity("GPU-bbbb2222", "00000000:3B:00.0"),
        GpuIdentity("GPU-cccc3333", "00000000:5E:00.0"), GpuIdentity("GPU-dddd4444", "00000001:06:00.0")]


def test_pci_bus_ids_compare_across_spellings():
    assert pci_key("00000000:3B:00.0") == pci_key("0000:3b:00.0") == pci_key("3b:00.0") == (0, 0x3B, 0, 0)
    assert pci_key("not a bus id") is None


def test_the_cuda_device_is_found_in_nvml_by_bus_id_then_by_cuda_visible_devices():
    """Issue 13 item 10: NVML index = CUDA ordinal read GPU 0 for cuda:0 under
    CUDA_VISIBLE_DEVICES=2, i.e. another GPU's utilisation and memory."""
    assert nvml_index(0, GPUS, pci_bus_id="0000:5e:00.0", visible="2") == 2  # the framework's bus id wins
    assert nvml_index(0, GPUS, pci_bus_id="0001:06:00.0") == 3
    assert nvml_index(0, GPUS, visible="2,3") == 2 and nvml_index(1, GPUS, visible="2,3") == 3
    assert nvml_index(0, GPUS, visible="GPU-bbbb") == 1  # a unique UUID prefix, as CUDA accepts
    assert nvml_index(0, GPUS, visible="GPU-aaaa1111,GPU-cccc3333") == 0
    assert nvml_index(1, GPUS, visible="GPU-aaaa1111,GPU-cccc3333") == 2
    assert nvml_index(0, GPUS, visible="MIG-0f0f") is None  # an instance: not the device's figures
    assert nvml_index(2, GPUS, visible="0,1") is None  # not a device this process can see
    assert nvml_index(1, GPUS) == 1 and nvml_index(None, GPUS) is None  # no variable: the same order


class _FakeNvml(types.ModuleType):
    """pynvml as the monitor calls it, for ``count`` GPUs: utilisation ``util[i]``, power
    unsupported (NVML_ERROR_NOT_SUPPORTED on many boards), identities as in GPUS."""

    class NVMLError(Exception):
        pass

    def __init__(self, count: int) -> None:
        super().__init__("pynvml")
        self.util = [10.0 * (i + 1) for i in range(count)]
        self.count = count

    def nvmlInit(self) -> None: ...
    def nvmlShutdown(self) -> None: ...
    def nvmlDeviceGetCount(self) -> int: return self.count
    def nvmlDeviceGetHandleByIndex(self, i: int) -> int: return i
    def nvmlDeviceGetUUID(self, h: int) -> bytes: return GPUS[h].uuid.encode()
    def nvmlDeviceGetPciInfo(self, h: int) -> object: return types.SimpleNamespace(busId=GPUS[h].pci_bus_id.encode())
    def nvmlDeviceGetUtilizationRates(self, h: int) -> object: return types.SimpleNamespace(gpu=self.util[h])
    def nvmlDeviceGetMemoryInfo(self, h: int) -> object: return types.SimpleNamespace(used=(h + 1) * 2**30)

    def nvmlDeviceGetPowerUsage(self, h: int) -> int:
        raise self.NVMLError("Not Supported")


@pytest.fixture
def nvml(monkeypatch: pytest.MonkeyPatch) -> _FakeNvml:
    fake = _FakeNvml(4)
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    return fake


def _wait_for_samples(monitor: Monitor, more: int, timeout: float = 30) -> None:
    target = monitor.samples + more
    deadline = time.monotonic() + timeout
    while monitor.samples < target:
        assert time.monotonic() < deadline, f"the sampler stopped at {monitor.samples} samples ({monitor.errors})"
        time.sleep(0.01)


def test_a_failing_nvml_call_leaves_the_other_figures_and_is_recorded(tmp_path: Path, nvml: _FakeNvml):
    """Power unsupported: utilisation and memory are still read (all three were lost)."""
    path = tmp_path / "util.csv"
    with Monitor(path, interval_s=0.05, gpu_index=0) as monitor:
        monitor.set_phase(1, "train")
        _wait_for_samples(monitor, 3)
        agg = monitor.take_epoch()
    assert agg["gpu_util_mean_pct"] == 10.0 and agg["gpu_mem_peak_mb"] == 1024.0
    assert "Not Supported" in monitor.errors["nvml power"]
    rows = pd.read_csv(path)
    assert rows["gpu3_util_pct"].eq(40.0).all() and rows["gpu0_power_w"].isna().all()


def test_the_sampler_survives_a_failing_sample(tmp_path: Path, nvml: _FakeNvml, monkeypatch: pytest.MonkeyPatch):
    """A source that raises (here every GPU read, once) must not end sampling for the run."""
    with Monitor(tmp_path / "util.csv", interval_s=0.05, gpu_index=0) as monitor:
        calls = {"n": 0}
        real = monitor._gpus.sample

        def fails_once() -> list:
            calls["n"] += 1
            if calls["n"] == 1:
                raise RuntimeError("driver went away")
            return real()

        monkeypatch.setattr(monitor._gpus, "sample", fails_once)
        monitor.set_phase(1, "train")
        _wait_for_samples(monitor, 3)  # samples go on after the failure
        assert monitor._thread is not None and monitor._thread.is_alive()
    assert calls["n"] > 1 and "driver went away" in monitor.errors["sampler"]


def test_gpu_utilisation_is_the_training_phases_like_the_cpus(tmp_path: Path, nvml: _FakeNvml):
    """GPU means included evaluation samples while CPU means did not."""
    with Monitor(None, interval_s=0.05, gpu_index=0) as monitor:
        monitor.set_phase(1, "train")
        nvml.util[0] = 80.0
        _wait_for_samples(monitor, 3)
        monitor.set_phase(1, "eval")
        nvml.util[0] = 5.0
        _wait_for_samples(monitor, 3)
        agg = monitor.take_epoch()
    assert agg["gpu_util_mean_pct"] == 80.0 and agg["gpu_util_max_pct"] == 80.0


def test_the_monitor_reads_the_gpu_cuda_visible_devices_names(tmp_path: Path, nvml: _FakeNvml,
                                                             monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2")
    with Monitor(None, interval_s=0.05, gpu_index=0) as monitor:  # cuda:0 is NVML's GPU 2
        monitor.set_phase(1, "train")
        _wait_for_samples(monitor, 2)
        assert monitor.take_epoch()["gpu_util_mean_pct"] == 30.0
    with Monitor(None, interval_s=0.05, gpu_index=0, gpu_pci_bus_id="0000:1a:00.0") as monitor:
        assert monitor.gpu_index == 0  # the framework's bus id, whatever the variable says
