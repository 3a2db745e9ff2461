"""Energy readers on directory trees in the real sysfs formats (tests/sysfs_trees.py)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from harness.measure.energy import COUNTER, SAMPLED, EnergyMeter, joules_between, rapl_delta
from tests.sysfs_trees import jetson_orin_nano, rapl_server, set_rail, set_rapl

REPO = Path(__file__).resolve().parents[1]


def test_rapl_counts_package_and_dram_and_survives_a_wrap(tmp_path: Path) -> None:
    rapl_server(tmp_path, package_uj=262_143_000_000, dram_uj=5_000_000)
    meter = EnergyMeter.open(tmp_path, nvml=False)
    assert meter.available and meter.unavailable == []
    assert {d.name: (d.method, d.in_total) for d in meter.domains} == {
        "package-0": (COUNTER, True), "package-0/dram": (COUNTER, True)}
    start = meter.poll()
    # package wraps past max_energy_range_uj (262,143,328,850) to 671,150: 1.0 J in all
    set_rapl(tmp_path, "intel-rapl:0", 671_150)
    set_rapl(tmp_path, "intel-rapl:0:0", 7_500_000)
    used = joules_between(start, meter.poll())
    assert used["package-0"] == pytest.approx(1.0)
    assert used["package-0/dram"] == pytest.approx(2.5)
    assert used["total"] == pytest.approx(3.5)


def test_rapl_delta_without_and_with_wrap() -> None:
    assert rapl_delta(100, 350, 1000) == 250
    assert rapl_delta(900, 50, 1000) == 150


def test_psys_alone_is_the_total_where_it_exists(tmp_path: Path) -> None:
    rapl_server(tmp_path)
    base = tmp_path / "sys/class/powercap/intel-rapl:1"
    base.mkdir()
    (base / "name").write_text("psys\n")
    (base / "energy_uj").write_text("0\n")
    (base / "max_energy_range_uj").write_text("262143328850\n")
    meter = EnergyMeter.open(tmp_path, nvml=False)
    assert [d.name for d in meter.domains if d.in_total] == ["psys"]


def test_no_powercap_leaves_energy_empty_and_says_why(tmp_path: Path) -> None:
    meter = EnergyMeter.open(tmp_path, nvml=False)
    assert not meter.available
    described = meter.describe()
    assert described["available"] is False and "RAPL: no /sys/class/powercap" in described["why"]
    assert meter.measure_idle(1.0) is None  # nothing to measure: no sleep, no figure


def test_unreadable_energy_uj_is_recorded_with_its_path() -> None:
    """energy_uj is root-only since Linux 5.10; here the reader runs as `nobody` (setpriv)
    against a root-owned 0400 file when the tests run as root, as itself otherwise (the
    tree lives outside pytest's 0700 tmp folder so that `nobody` can walk to it)."""
    with tempfile.TemporaryDirectory(prefix="bench-rapl-") as tmp:
        _check_unreadable(Path(tmp))


def _check_unreadable(tmp_path: Path) -> None:
    rapl_server(tmp_path, mode=0o400 if os.geteuid() == 0 else 0o000)
    for p in [tmp_path, *tmp_path.rglob("*")]:
        if p.is_dir():
            p.chmod(0o755)
    code = ("import json,sys; from harness.measure.energy import EnergyMeter; "
            "m = EnergyMeter.open(sys.argv[1], nvml=False); print(json.dumps(m.describe()))")
    cmd = [sys.executable, "-c", code, str(tmp_path)]
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            pytest.skip("running as root and no setpriv to drop privileges with")
        cmd = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *cmd]
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)}, cwd="/")
    assert proc.returncode == 0, proc.stderr
    described = json.loads(proc.stdout)
    assert described["available"] is False
    path = tmp_path / "sys/class/powercap/intel-rapl:0/energy_uj"
    assert described["why"] == f"RAPL: unavailable: needs read access to {path}"


def test_jetson_rails_are_sampled_and_vdd_in_is_the_total(tmp_path: Path) -> None:
    jetson_orin_nano(tmp_path, rails_mv_ma={"VDD_IN": (5000, 1000), "VDD_CPU_GPU_CV": (5000, 400), "VDD_SOC": (5000, 200)})
    meter = EnergyMeter.open(tmp_path, nvml=False)
    assert {d.name: (d.method, d.in_total) for d in meter.domains} == {
        "VDD_IN": (SAMPLED, True), "VDD_CPU_GPU_CV": (SAMPLED, False), "VDD_SOC": (SAMPLED, False)}
    start = meter.poll()
    time.sleep(0.2)
    mid = meter.poll()
    t0 = time.monotonic()
    set_rail(tmp_path, 1, 5000, 2000)  # 5 W -> 10 W on VDD_IN
    time.sleep(0.2)
    end = meter.poll()
    first, second = joules_between(start, mid), joules_between(mid, end)
    # 5 W over ~0.2 s; then the trapezoid of 5 W -> 10 W over the second interval
    assert first["VDD_IN"] == pytest.approx(5.0 * 0.2, rel=0.3)
    assert first["VDD_SOC"] == pytest.approx(1.0 * 0.2, rel=0.3)
    assert second["VDD_IN"] / (time.monotonic() - t0) == pytest.approx(7.5, rel=0.3)
    assert end["total"] == pytest.approx(end["VDD_IN"])


def test_idle_baseline_is_mean_watts_per_domain(tmp_path: Path) -> None:
    jetson_orin_nano(tmp_path, rails_mv_ma={"VDD_IN": (5000, 800), "VDD_CPU_GPU_CV": (5000, 100), "VDD_SOC": (5000, 100)})
    meter = EnergyMeter.open(tmp_path, nvml=False)
    idle = meter.measure_idle(0.3, step_s=0.05)
    assert idle is not None and idle["VDD_IN"] == pytest.approx(4.0, rel=0.05)
    described = meter.describe()
    assert described["idle_baseline_w"]["total"] == pytest.approx(4.0, rel=0.05)
    assert described["domains"]["VDD_IN"] == {"method": "sampled", "in_total": True}


def test_jetpack4_iio_rails_read_power_directly(tmp_path: Path) -> None:
    """JetPack 4 (Nano, TX2): iio:device0 with rail_name_N and in_powerN_input in mW
    (jetson_stats list_all_i2c_ports, zeus extract_directories)."""
    iio = tmp_path / "sys/bus/i2c/drivers/ina3221x/6-0040/iio:device0"
    iio.mkdir(parents=True)
    for n, (name, mw) in enumerate((("POM_5V_IN", 3100), ("POM_5V_GPU", 400), ("POM_5V_CPU", 900))):
        (iio / f"rail_name_{n}").write_text(name + "\n")
        (iio / f"in_power{n}_input").write_text(f"{mw}\n")
        (iio / f"in_voltage{n}_input").write_text("5000\n")
        (iio / f"in_current{n}_input").write_text("1\n")
    meter = EnergyMeter.open(tmp_path, nvml=False)
    idle = meter.measure_idle(0.2, step_s=0.05)
    assert idle is not None and idle["POM_5V_IN"] == pytest.approx(3.1, rel=0.05)
    assert [d.name for d in meter.domains if d.in_total] == ["POM_5V_IN"]


@pytest.mark.gpu
def test_nvml_energy_on_a_real_gpu(tmp_path: Path) -> None:
    """On an NVIDIA GPU: the driver's energy counter (Volta and later) or its power sampled;
    an idle GPU draws tens of watts, so a second of it is well above zero."""
    meter = EnergyMeter.open(tmp_path, nvml=True)  # empty tree: NVML alone
    gpu = [d for d in meter.domains if d.name.startswith("gpu")]
    if not gpu:
        why = [u for u in meter.unavailable if u.startswith("NVML")]
        pytest.skip(f"no NVIDIA GPU readable here ({'; '.join(why) or 'no NVIDIA driver'})")
    idle = meter.measure_idle(1.0)
    assert idle is not None and idle["gpu0"] > 1.0 and gpu[0].method in (COUNTER, SAMPLED)
    meter.close()
