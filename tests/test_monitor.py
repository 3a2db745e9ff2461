"""harness/measure/monitor.py: samples taken by either thread measure the interval they are weighted by,
so the system-wide figure can never read below this process's own share."""
from __future__ import annotations

import time

import pandas as pd
import psutil
import pytest

from harness.measure.monitor import Monitor, _Tegra, busy_pct


def _spin(seconds: float) -> None:
    end = time.perf_counter() + seconds
    x = 0
    while time.perf_counter() < end:
        x += 1


def test_system_utilisation_covers_this_process_in_every_sample(tmp_path):
    """The training thread spins (one core busy) and switches phase, which samples from the
    training thread too; the sampler thread samples every 0.1 s. Each row's system figure
    must include this process's core: psutil.cpu_percent keeps per-thread state, which made
    the first sampler-thread row read 0 % while the process kept a core busy."""
    path = tmp_path / "util.csv"
    with Monitor(path, interval_s=0.1) as monitor:
        for epoch in (1, 2):
            monitor.set_phase(epoch, "train")
            _spin(0.6)
            monitor.set_phase(epoch, "eval")
            _spin(0.2)
            agg = monitor.take_epoch()
            # about one core on a quiet machine; a busy one (other programs, parallel test workers)
            # gives the spinner less, so only "clearly busy" is asserted
            assert agg["process_cpu_pct"] > 15
            cores = psutil.cpu_count() or 1
            # the whole machine's busy share is at least this process's share of it
            assert agg["cpu_util_mean_pct"] >= 0.7 * agg["process_cpu_pct"] / cores
        assert monitor.take_cost() > 0
    rows = pd.read_csv(path)
    assert len(rows) >= 8 and set(rows["phase"]) == {"train", "eval"}
    cores = psutil.cpu_count() or 1
    busy = rows[rows["process_cpu_pct"] > 25]
    assert len(busy) >= 3
    # Every row where this process kept a core busy shows at least half of that busy machine-wide.
    # (Row by row the two figures come from different kernel counters with 10 ms ticks, so over
    # 0.1 s either may lead the other by a few tens of percent; the old bug read exactly 0.)
    assert (busy["cpu_pct"] * cores >= 0.5 * busy["process_cpu_pct"]).all(), busy[["cpu_pct", "process_cpu_pct"]]


def test_busy_pct_follows_psutils_formula():
    before, after = psutil.cpu_times(), None
    _spin(0.2)
    after = psutil.cpu_times()
    assert 0 < busy_pct(before, after) <= 100
    assert busy_pct(after, after) == 0.0


def test_jetson_tree_fills_the_gpu_columns_and_energy(tmp_path, monkeypatch):
    """With the readers pointed at an Orin Nano tree (BENCH_SYSFS_ROOT, the test hook) and no
    NVML, GPU 0 is the Tegra GPU: load, clock and shared RAM in util.csv and the epoch
    aggregates; the INA3221 rails give the epoch's joules (VDD_IN 5 V x 1.2 A = 6 W)."""
    from tests.sysfs_trees import jetson_orin_nano

    tree = jetson_orin_nano(tmp_path / "tree", load_permille=873, freq_hz=624_750_000,
                            rails_mv_ma={"VDD_IN": (5000, 1200), "VDD_CPU_GPU_CV": (5000, 500), "VDD_SOC": (5000, 200)})
    monkeypatch.setenv("BENCH_SYSFS_ROOT", str(tree))
    path = tmp_path / "util.csv"
    with Monitor(path, interval_s=0.1, gpu_index=0, idle_baseline_s=0.2) as monitor:
        if not isinstance(monitor._gpus, _Tegra):
            pytest.skip("this machine has NVIDIA GPUs: NVML takes precedence over a Tegra tree")
        t0 = time.perf_counter()
        monitor.set_phase(1, "train")
        time.sleep(0.5)
        monitor.set_phase(1, "eval")
        train_s = time.perf_counter() - t0
        time.sleep(0.2)
        agg = monitor.take_epoch()
        info = monitor.energy_info()
    assert agg["gpu_util_mean_pct"] == pytest.approx(87.3) and agg["gpu_mem_peak_mb"] == round((7802532 - 5383964) / 1024, 1)
    assert agg["train_energy_j"] == pytest.approx(6.0 * train_s, rel=0.1) and agg["energy_j"] > agg["train_energy_j"]
    assert info["available"] and info["sources"] == ["ina3221"] and abs(info["idle_baseline_w"]["total"] - 6.0) < 0.1
    rows = pd.read_csv(path)
    assert (rows["gpu0_util_pct"] == 87.3).all() and (rows["gpu0_freq_mhz"] == 624.75).all()
    assert rows["gpu0_power_w"].isna().all() and (abs(rows["power_w"] - 6.0) < 0.5).all()
