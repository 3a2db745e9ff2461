"""End to end: a real `bench run` subprocess whose machine readers are pointed at an Orin Nano
tree (BENCH_SYSFS_ROOT, the test hook) writes GPU load, clock, shared memory, board, L4T /
JetPack and energy into the run folder, and `bench report` shows them. Nothing here ran on a
real Jetson: the tree's formats are cited in tests/sysfs_trees.py."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from harness import schema as R
from tests.conftest import TINY, bench, run_dirs
from tests.sysfs_trees import jetson_orin_nano


def _nvidia_driver_present() -> bool:
    try:
        import pynvml

        pynvml.nvmlInit()
        pynvml.nvmlShutdown()
        return True
    except Exception:
        return False


@pytest.mark.skipif(_nvidia_driver_present(), reason="an NVIDIA driver is present: NVML takes precedence over a Tegra tree")
def test_run_on_a_jetson_tree_records_gpu_board_and_energy(tmp_path: Path) -> None:
    tree = jetson_orin_nano(tmp_path / "tree", load_permille=640, freq_hz=624_750_000,
                            rails_mv_ma={"VDD_IN": (5000, 1400), "VDD_CPU_GPU_CV": (5000, 600), "VDD_SOC": (5000, 250)})
    results = tmp_path / "results"
    env = {"BENCH_SYSFS_ROOT": str(tree), "BENCH_CACHE_DIR": str(tmp_path / "cache")}
    bench("run", "--backend", "torch", *TINY, "--epochs", "2", "--results-dir", str(results), env=env, check=True)
    (run,) = run_dirs(results)
    meta = json.loads((run / R.RUN_JSON).read_text())
    machine = meta["machine"]
    assert machine["board"]["model"] == "NVIDIA Jetson Orin Nano Developer Kit"
    assert (machine["board"]["l4t"], machine["board"]["jetpack"]) == ("36.4.0", "6.1")
    assert machine["distribution"]["pretty"] == "Ubuntu 22.04.4 LTS"
    assert machine["gpus"][0]["name"] == "integrated Tegra GPU (17000000.gpu)" and "shared" in machine["gpus"][0]["memory"]
    assert any(p.startswith("numpy==") for p in machine["packages"])
    energy = meta["energy"]
    assert energy["available"] and energy["sources"] == ["ina3221"]
    assert energy["domains"]["VDD_IN"] == {"method": "sampled", "in_total": True}
    assert energy["idle_baseline_w"]["total"] == pytest.approx(7.0, rel=0.05)  # 5 V x 1.4 A

    util = pd.read_csv(run / R.UTIL_CSV)
    assert (util["gpu0_util_pct"] == 64.0).all() and (util["gpu0_freq_mhz"] == 624.75).all()
    assert (util["gpu0_mem_mb"] == round((7802532 - 5383964) / 1024, 1)).all()
    assert (util["power_w"].dropna() - 7.0).abs().max() < 0.5
    epochs = pd.read_csv(run / R.EPOCHS_CSV)
    assert list(epochs["train_energy_j"]) == pytest.approx(list(7.0 * epochs["train_time_s"]), rel=0.2)
    assert list(epochs["images_per_j"]) == pytest.approx(list(128 / epochs["train_energy_j"]))
    assert (epochs["energy_j"] > epochs["train_energy_j"]).all()

    out = tmp_path / "report"
    bench("report", str(run), "--out", str(out), check=True)
    text = (out / "report.md").read_text()
    for expected in ("| Board | NVIDIA Jetson Orin Nano Developer Kit |", "| L4T release | 36.4.0 |", "| JetPack | 6.1 |",
                     "| Distribution | Ubuntu 22.04.4 LTS |", "shared with the CPU", "| GPU clock (sampled) | 625 MHz mean",
                     "ina3221: VDD_IN (sampled, in total)", "idle baseline 7.0 W", "## Appendix: Python packages",
                     "img/J"):
        assert expected in text, expected


def test_run_without_meters_leaves_energy_empty_and_says_why(tmp_path: Path) -> None:
    empty = tmp_path / "tree"
    empty.mkdir()
    results = tmp_path / "results"
    bench("run", "--backend", "torch", *TINY, "--epochs", "1", "--results-dir", str(results),
          env={"BENCH_SYSFS_ROOT": str(empty)}, check=True)
    (run,) = run_dirs(results)
    meta = json.loads((run / R.RUN_JSON).read_text())
    if meta["energy"]["available"]:
        pytest.skip("this machine has an NVIDIA GPU whose energy NVML reads")
    assert meta["energy"]["why"].startswith("RAPL: no /sys/class/powercap/intel-rapl:*")
    epochs = pd.read_csv(run / R.EPOCHS_CSV)
    assert epochs[["energy_j", "train_energy_j", "images_per_j"]].isna().all().all()
    assert meta["machine"]["board"] is None
