"""Directory trees laid out like the real machines' /sys, /proc and /etc, for the readers in
harness/measure (which all take a root). Each layout cites where its format comes from; none
of it was captured on a real board (no Jetson or RAPL host was available), so the layouts are
as public documentation and the tools that read them (jetson_stats, zeus, the kernel ABI docs)
describe them.
"""
from __future__ import annotations

import os
from pathlib import Path

# /etc/nv_tegra_release of JetPack 6.1 (L4T R36.4.0): first line format as parsed by
# jetson_stats jtop/core/jetson_variables.py get_nvidia_l4t().
NV_TEGRA_RELEASE_R36_4 = (
    "# R36 (release), REVISION: 4.0, GCID: 37537400, BOARD: generic, EABI: aarch64, DATE: Fri Sep 13 04:36:44 UTC 2024\n"
    "# KERNEL_VARIANT: oot\nTARGET_USERSPACE_LIB_DIR=nvidia\nTARGET_USERSPACE_LIB_DIR_PATH=usr/lib/aarch64-linux-gnu/nvidia\n")
UBUNTU_2204_OS_RELEASE = (
    'PRETTY_NAME="Ubuntu 22.04.4 LTS"\nNAME="Ubuntu"\nVERSION_ID="22.04"\n'
    'VERSION="22.04.4 LTS (Jammy Jellyfish)"\nVERSION_CODENAME=jammy\nID=ubuntu\nID_LIKE=debian\n')
MEMINFO_ORIN_NANO = ("MemTotal:        7802532 kB\nMemFree:         3101044 kB\nMemAvailable:    5383964 kB\n"
                     "Buffers:           40960 kB\n")
ORIN_NANO_MODEL = "NVIDIA Jetson Orin Nano Developer Kit"
# tegrastats lines in the formats jetson_stats parses (jtop/tests/test_06_tegra_parse.py and
# its tests/tegrastats emulator) and NVIDIA's Jetson Linux docs print for Orin Nano (R36).
TEGRASTATS_ORIN_NANO_JP6 = (
    "12-01-2026 21:10:22 RAM 2448/7620MB (lfb 2x4MB) SWAP 0/3810MB (cached 0MB) "
    "CPU [12%@729,3%@729,0%@729,1%@729,off,off] EMC_FREQ 2%@2133 GR3D_FREQ 87%@624 "
    "cpu@45.5C soc2@44.718C soc0@45.25C gpu@45.312C tj@46.375C soc1@44.812C "
    "VDD_IN 6421mW/5210mW VDD_CPU_GPU_CV 2483mW/1920mW VDD_SOC 1370mW/1370mW")
TEGRASTATS_XAVIER_JP5 = (
    "RAM 407/15823MB (lfb 3702x4MB) SWAP 0/7911MB (cached 0MB) CPU [5%@2265,1%@2265] "
    "EMC_FREQ 0% GR3D_FREQ 43% AO@26.5C GPU@28C GPU 1155/1155 CPU 385/385 SOC 2504/2503 CV 0/0")
TEGRASTATS_AGX_ORIN_JP7 = (
    "07-25-2026 09:08:28 RAM 20642/62817MB (lfb 1x2MB) EMC_FREQ 3%@3199 GR3D_FREQ 12%@[1300,1300] "
    "VDD_GPU_SOC 5139mW/5139mW/5139mW VDD_CPU_CV 3268mW/3268mW/3268mW VIN_SYS_5V0 5500mW/5500mW/5500mW")


def write(path: Path, text: str, mode: int | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    if mode is not None:
        path.chmod(mode)
    return path


def jetson_orin_nano(root: Path, *, load_permille: int = 873, freq_hz: int = 624750000,
                     rails_mv_ma: dict[str, tuple[int, int]] | None = None) -> Path:
    """An Orin Nano Developer Kit on JetPack 6.1: board, L4T, os-release, meminfo, the GPU's
    devfreq node (jetson_stats find_igpu: /sys/class/devfreq/<id>/device/of_node/name, cur_freq
    in Hz, device/load per-mille) and the INA3221 at i2c 1-0040 with the three rails NVIDIA's
    R36 power docs list for Orin Nano (hwmon: inN_label, inN_input mV, currN_input mA)."""
    write(root / "proc/device-tree/model", ORIN_NANO_MODEL + "\x00")
    write(root / "etc/nv_tegra_release", NV_TEGRA_RELEASE_R36_4)
    write(root / "etc/os-release", UBUNTU_2204_OS_RELEASE)
    write(root / "proc/meminfo", MEMINFO_ORIN_NANO)
    dev = root / "sys/devices/platform/bus@0/17000000.gpu"
    write(dev / "load", f"{load_permille}\n")
    write(dev / "of_node/name", "gpu\x00")
    devfreq = dev / "devfreq/17000000.gpu"
    write(devfreq / "cur_freq", f"{freq_hz}\n")
    write(devfreq / "max_freq", "624750000\n")
    write(devfreq / "min_freq", "306000000\n")
    os.symlink("../../../17000000.gpu", devfreq / "device")
    (root / "sys/class/devfreq").mkdir(parents=True, exist_ok=True)
    os.symlink(os.path.relpath(devfreq, root / "sys/class/devfreq"), root / "sys/class/devfreq/17000000.gpu")
    rails = rails_mv_ma or {"VDD_IN": (5072, 1266), "VDD_CPU_GPU_CV": (4992, 497), "VDD_SOC": (4992, 274)}
    hwmon = root / "sys/bus/i2c/drivers/ina3221/1-0040/hwmon/hwmon1"
    write(root / "sys/bus/i2c/drivers/ina3221/1-0040/name", "ina3221\n")
    write(hwmon / "name", "ina3221\n")
    for n, (label, (mv, ma)) in enumerate(rails.items(), start=1):
        write(hwmon / f"in{n}_label", f"{label}\n")
        write(hwmon / f"in{n}_input", f"{mv}\n")
        write(hwmon / f"curr{n}_input", f"{ma}\n")
    write(hwmon / "in7_label", "sum of shunt voltages\n")
    write(hwmon / "in7_input", "0\n")
    return root


def set_rail(root: Path, n: int, mv: int, ma: int) -> None:
    hwmon = root / "sys/bus/i2c/drivers/ina3221/1-0040/hwmon/hwmon1"
    (hwmon / f"in{n}_input").write_text(f"{mv}\n")
    (hwmon / f"curr{n}_input").write_text(f"{ma}\n")


def rapl_server(root: Path, *, package_uj: int = 1_000_000, dram_uj: int = 200_000,
                range_uj: int = 262_143_328_850, mode: int | None = None) -> Path:
    """One package with a dram sub-zone, as the powercap sysfs ABI lays it out
    (Documentation/power/powercap/powercap.rst: intel-rapl:N/{name,energy_uj,max_energy_range_uj},
    sub-zones intel-rapl:N:M, the control type's own directory intel-rapl)."""
    base = root / "sys/class/powercap"
    write(base / "intel-rapl/enabled", "1\n")
    for zone, name, uj in (("intel-rapl:0", "package-0", package_uj), ("intel-rapl:0:0", "dram", dram_uj)):
        write(base / zone / "name", f"{name}\n")
        write(base / zone / "energy_uj", f"{uj}\n", mode)
        write(base / zone / "max_energy_range_uj", f"{range_uj}\n")
    return root


def set_rapl(root: Path, zone: str, uj: int) -> None:
    (root / "sys/class/powercap" / zone / "energy_uj").write_text(f"{uj}\n")
