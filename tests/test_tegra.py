"""Tegra (Jetson) GPU sampling, tegrastats lines, board description, distribution and packages,
read from trees in the real formats (tests/sysfs_trees.py cites where each comes from)."""
from __future__ import annotations

import importlib.metadata
import os
from pathlib import Path

import pytest

from harness.measure.board import L4T_TO_JETPACK, parse_nv_tegra_release, parse_nvpmodel_query, tegra_info
from harness.measure.osinfo import distribution, packages, parse_os_release
from harness.measure.tegra import TegraGpu, find_gpu_devfreq, parse_tegrastats, shared_memory_used_mb
from tests.sysfs_trees import (NV_TEGRA_RELEASE_R36_4, TEGRASTATS_AGX_ORIN_JP7, TEGRASTATS_ORIN_NANO_JP6,
                               TEGRASTATS_XAVIER_JP5, jetson_orin_nano)


def test_orin_gpu_load_frequency_and_shared_memory_from_sysfs(tmp_path: Path) -> None:
    jetson_orin_nano(tmp_path, load_permille=873, freq_hz=624_750_000)
    assert find_gpu_devfreq(tmp_path) == tmp_path / "sys/class/devfreq/17000000.gpu"
    gpu = TegraGpu.open(tmp_path)
    assert gpu is not None and gpu.source == "sysfs"
    s = gpu.sample()
    assert s.util_pct == pytest.approx(87.3)       # per-mille -> percent
    assert s.freq_mhz == pytest.approx(624.75)     # Hz -> MHz
    assert s.mem_used_mb == pytest.approx((7802532 - 5383964) / 1024, abs=0.1)
    assert "shared with the CPU" in gpu.describe()["memory"]


def test_no_tegra_gpu_on_a_pc_tree(tmp_path: Path) -> None:
    (tmp_path / "sys/class/devfreq").mkdir(parents=True)
    assert TegraGpu.open(tmp_path) is None
    assert tegra_info(tmp_path) is None


def test_meminfo_without_memavailable_gives_none(tmp_path: Path) -> None:
    (tmp_path / "proc").mkdir()
    (tmp_path / "proc/meminfo").write_text("MemTotal: 1000 kB\n")
    assert shared_memory_used_mb(tmp_path) is None


@pytest.mark.parametrize("line, util, freq, ram, rails", [
    (TEGRASTATS_ORIN_NANO_JP6, 87.0, 624.0, (2448.0, 7620.0),
     {"VDD_IN": 6421.0, "VDD_CPU_GPU_CV": 2483.0, "VDD_SOC": 1370.0}),
    (TEGRASTATS_XAVIER_JP5, 43.0, None, (407.0, 15823.0), {"GPU": 1155.0, "CPU": 385.0, "SOC": 2504.0, "CV": 0.0}),
    (TEGRASTATS_AGX_ORIN_JP7, 12.0, 1300.0, (20642.0, 62817.0),
     {"VDD_GPU_SOC": 5139.0, "VDD_CPU_CV": 3268.0, "VIN_SYS_5V0": 5500.0}),
])
def test_tegrastats_lines(line: str, util: float, freq: float | None, ram: tuple[float, float],
                          rails: dict[str, float]) -> None:
    parsed = parse_tegrastats(line)
    assert (parsed.gpu_util_pct, parsed.gpu_freq_mhz) == (util, freq)
    assert (parsed.ram_used_mb, parsed.ram_total_mb) == ram
    assert parsed.rails_mw == rails


def test_thor_line_has_clock_but_no_load() -> None:
    parsed = parse_tegrastats("RAM 4722/7844MB (lfb 1x512kB) EMC_FREQ 2%@1866 GR3D_FREQ @[1000,1000,1000] APE 150")
    assert parsed.gpu_util_pct is None and parsed.gpu_freq_mhz == 1000.0


def test_board_l4t_jetpack_and_distribution(tmp_path: Path) -> None:
    jetson_orin_nano(tmp_path)
    info = tegra_info(tmp_path)
    assert info is not None
    assert info["model"] == "NVIDIA Jetson Orin Nano Developer Kit"   # NUL stripped
    assert (info["l4t"], info["jetpack"]) == ("36.4.0", "6.1")
    assert info["power_mode"] is None and "test tree" in info["power_mode_why"]
    dist = distribution(tmp_path)
    assert (dist["name"], dist["version"], dist["version_id"]) == ("Ubuntu", "22.04.4 LTS (Jammy Jellyfish)", "22.04")


def test_release_parsing_and_unknown_l4t_has_no_jetpack() -> None:
    assert parse_nv_tegra_release(NV_TEGRA_RELEASE_R36_4) == "36.4.0"
    assert parse_nv_tegra_release("# R32 (release), REVISION: 7.1, GCID: 29818004, BOARD: t210ref") == "32.7.1"
    assert parse_nv_tegra_release("not a release file") is None
    assert L4T_TO_JETPACK.get("37.0.0") is None


def test_nvpmodel_query_output() -> None:
    # `sudo nvpmodel -q` as printed on an AGX Xavier (NVIDIA forum transcripts; jetson_stats tests/nvpmodel)
    assert parse_nvpmodel_query("NV Fan Mode:cool\nNV Power Mode: MODE_30W_4CORE\n5\n") == {"name": "MODE_30W_4CORE", "id": 5}
    assert parse_nvpmodel_query("NVPM WARN: fan mode is not set!\nNV Power Mode: 15W\n0\n") == {"name": "15W", "id": 0}
    assert parse_nvpmodel_query("nvpmodel: command failed") is None


def test_os_release_quoting() -> None:
    fields = parse_os_release('NAME="Debian GNU/Linux"\nVERSION_ID="12"\n# comment\nID=debian\nBAD LINE\n')
    assert fields == {"NAME": "Debian GNU/Linux", "VERSION_ID": "12", "ID": "debian"}


def test_package_list_has_this_environment_with_versions() -> None:
    listed = packages()
    assert f"numpy=={importlib.metadata.version('numpy')}" in listed
    assert f"psutil=={importlib.metadata.version('psutil')}" in listed
    names = [p.split("==")[0].lower() for p in listed]
    assert names == sorted(names) and len(names) == len(set(names))


def test_tegrastats_reader_keeps_the_latest_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The reader runs `tegrastats --interval MS` and parses its stdout; here a script on PATH
    prints lines in the real format (the tool itself exists only on L4T)."""
    import time

    from harness.measure.tegra import TegrastatsReader

    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "tegrastats").write_text("#!/bin/sh\n[ \"$1\" = --interval ] || exit 2\n"
                                     f"while true; do echo '{TEGRASTATS_ORIN_NANO_JP6}'; sleep 0.05; done\n")
    (fake / "tegrastats").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake}:{os.environ['PATH']}")
    reader = TegrastatsReader.start(interval_ms=50)
    assert reader is not None
    try:
        deadline = time.monotonic() + 10
        while reader.latest is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert reader.latest is not None and reader.latest.gpu_util_pct == 87.0
    finally:
        reader.stop()
    assert reader._proc.poll() is not None
