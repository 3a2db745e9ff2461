"""Runs from two or three machines lined up by comparison key (harness/report/lineup.py).

The "machines" are run folders written by tests/run_fixtures.py (the product's own run.json
builder) with different machine sections and equal settings, as folders arrive from other
people's machines; every expected figure is recomputed here from the CSVs they hold.
"""
from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

import pandas as pd
import pytest
from conftest import bench
from run_fixtures import MACHINES, write_synthetic_run

from harness.errors import BenchError
from harness.report import compare as C
from harness.report import lineup as L
from harness.report import markdown as M
from harness.schema import read_meta

JETSON = {"machine_id": "0e7500e7500e7500", "hostname": "jetson", "os": "Linux-5.10.120-tegra-aarch64",
          "cpu_model": "ARMv8 Processor rev 1 (v8l)", "cpu_physical_cores": 6, "cpu_logical_cores": 6,
          "memory_total_gb": 7.4, "gpus": [{"index": 0, "name": "Orin", "memory_total_mb": 7620}],
          "python": "3.10.12", "numpy": "1.26.4", "blas": "openblas 0.3.20",
          "libraries": {"torch": "2.14.1", "torchvision": "0.29.1", "chainer": "7.8.1", "cupy": None}}
SPEED = {"laptop": 300.0, "gpu-box": 900.0, "jetson": 120.0}


@pytest.fixture(scope="module")
def machines(tmp_path_factory) -> Path:
    """laptop: torch x2 repeats + chainer; gpu-box: torch, chainer and a batch-64 torch cell;
    jetson: torch only. Settings equal across machines but for that one cell."""
    root = tmp_path_factory.mktemp("machines")
    for name, machine in (("laptop", "laptop"), ("gpu-box", "gpu-box"), ("jetson", JETSON)):
        ips = SPEED[name]
        write_synthetic_run(root / name / "torch-0", backend="torch", machine=machine, images_per_s=ips)
        if name == "laptop":
            write_synthetic_run(root / name / "torch-1", backend="torch", machine=machine, images_per_s=ips * 1.1,
                                seed=1, repeat_index=1)
        if name != "jetson":
            write_synthetic_run(root / name / "chainer-0", backend="chainer", machine=machine, images_per_s=ips / 10)
    write_synthetic_run(root / "gpu-box" / "torch-b64", backend="torch", machine="gpu-box", batch_size=64,
                        images_per_s=700)
    return root


def _steady(run: Path) -> float:
    """A run's headline figure, from its epochs.csv: median train images/s after epoch 1."""
    ep = pd.read_csv(run / "epochs.csv")
    return float(ep[ep["epoch"] > 1]["train_images_per_s"].median())


def _lineup(root: Path, *names: str, baseline: str | None = None) -> L.Lineup:
    runs, infers = C.load_all([str(root / n) for n in names])
    return L.line_up(runs, infers, baseline=baseline)


def test_equal_settings_share_a_key_and_a_changed_setting_does_not(machines):
    def key(p):
        return L.folder_key(read_meta(p))

    assert key(machines / "laptop" / "torch-0") == key(machines / "gpu-box" / "torch-0") == key(machines / "jetson" / "torch-0")
    assert key(machines / "laptop" / "torch-0") == key(machines / "laptop" / "torch-1")  # seed/repeat are not the key
    assert key(machines / "laptop" / "chainer-0") == key(machines / "gpu-box" / "chainer-0")
    assert key(machines / "gpu-box" / "torch-b64") != key(machines / "gpu-box" / "torch-0")
    assert key(machines / "laptop" / "chainer-0") != key(machines / "laptop" / "torch-0")
    # a key recorded in run.json is the one used (a suite's child records its parent's)
    assert L.folder_key(read_meta(machines / "laptop" / "torch-0") | {"key": "0123456789ab"}) == "0123456789ab"


def test_two_machines_per_key_tables_ratios_and_geomean(machines):
    lu = _lineup(machines, "laptop", "gpu-box")
    laptop, box = lu.machines
    assert lu.baseline is laptop and laptop.label == "i7-1165G7 (8 threads)" and box.label == "A10G"
    by_key = {r.key: r for r in lu.keys}
    assert len(by_key) == 3
    torch_key = L.folder_key(read_meta(machines / "laptop" / "torch-0"))
    row = by_key[torch_key]
    # repeats on one machine: the median, with n
    expected_laptop = statistics.median([_steady(machines / "laptop" / f"torch-{i}") for i in (0, 1)])
    assert row.entries[laptop.id].n == 2 and row.entries[box.id].n == 1
    assert row.entries[laptop.id].figures["train_images_per_s"] == pytest.approx(expected_laptop)
    assert row.ratios[box.id] == pytest.approx(_steady(machines / "gpu-box" / "torch-0") / expected_laptop)
    assert row.ratios[laptop.id] == pytest.approx(1.0)
    chainer_key = L.folder_key(read_meta(machines / "laptop" / "chainer-0"))
    chainer_ratio = _steady(machines / "gpu-box" / "chainer-0") / _steady(machines / "laptop" / "chainer-0")
    # geometric mean over the keys both have, and how many
    assert sorted(lu.shared) == sorted([torch_key, chainer_key])
    assert lu.geomean[box.id] == pytest.approx(math.sqrt(row.ratios[box.id] * chainer_ratio))
    assert lu.geomean[laptop.id] == pytest.approx(1.0)
    # the batch-64 cell only the gpu-box ran
    assert [r.key for r in lu.partial] == [L.folder_key(read_meta(machines / "gpu-box" / "torch-b64"))]
    headers, cells, _ = L.key_table(row, lu)
    assert headers == ["figure", "i7-1165G7 (8 threads) (baseline)", "A10G"]
    assert cells[-2] == ["runs (n)", "2", "1"] and cells[-1][2] == f"{row.ratios[box.id]:.2f}x"
    assert "over the 2 keys all 2 machines share: A10G " in L.summary_sentence(lu)
    headers, cells, _ = L.overview_table(lu)  # every key at a glance, the geometric means last
    assert headers[-2:] == ["i7-1165G7 (8 threads)", "A10G"] and len(cells) == 4
    assert cells[-1] == ["geometric mean over 2 shared keys", "", "× baseline", "1.00x", f"{lu.geomean[box.id]:.2f}x"]
    assert next(c for c in cells if c[1] == torch_key)[-1].endswith(f" · {row.ratios[box.id]:.2f}x")


def test_a_key_missing_on_a_machine_says_why_when_its_suite_recorded_it(machines, tmp_path):
    """The jetson's suite recorded the Chainer cell as unsupported (harness/experiments/support.py):
    the line-up's "only some machines" list gives that reason, in text and in JSON."""
    import shutil

    for name in ("laptop", "jetson"):
        shutil.copytree(machines / name, tmp_path / name)
    chainer_key = L.folder_key(read_meta(machines / "laptop" / "chainer-0"))
    why = "--precision bf16-mixed is not available for chainer on cuda: NumPy and CuPy have no bfloat16 type"
    (tmp_path / "jetson" / "suite.json").write_text(json.dumps({"suite": "quick", "cells": [
        {"key": chainer_key, "status": "unsupported", "attempts": [{"status": "unsupported", "reason": why}]}]}))
    lu = _lineup(tmp_path, "laptop", "jetson")
    (row,) = [r for r in lu.partial if r.key == chainer_key]
    assert lu.missing(row) == [f"{lu.machines[1].label} (unsupported there: {why})"]
    assert f"(unsupported there: {why})" in L.format_lineup(lu)
    assert lu.as_dict()["partial"][0]["missing"] == lu.missing(row)
    # without the suite.json: just missing
    (tmp_path / "jetson" / "suite.json").unlink()
    lu = _lineup(tmp_path, "laptop", "jetson")
    assert "unsupported there" not in L.format_lineup(lu) and lu.unsupported == {}


def test_three_machines_and_baseline_choice(machines):
    lu = _lineup(machines, "gpu-box", "laptop", "jetson", baseline="jetson")
    assert [m.hostname for m in lu.machines] == ["gpu-box", "laptop", "jetson"]  # argument order
    assert lu.baseline.hostname == "jetson"
    torch_key = L.folder_key(read_meta(machines / "jetson" / "torch-0"))
    assert lu.shared == [torch_key]  # jetson ran no chainer: one key on all three
    jetson_ips = _steady(machines / "jetson" / "torch-0")
    box = next(m for m in lu.machines if m.hostname == "gpu-box")
    assert lu.geomean[box.id] == pytest.approx(_steady(machines / "gpu-box" / "torch-0") / jetson_ips)
    missing = {r.key: r for r in lu.partial}
    chainer_key = L.folder_key(read_meta(machines / "laptop" / "chainer-0"))
    assert set(missing) == {chainer_key, L.folder_key(read_meta(machines / "gpu-box" / "torch-b64"))}
    assert "missing on Orin" in " ".join(L.partial_items(lu))
    # the baseline by folder, by hostname, by label; an unknown one is a one-line error
    assert _lineup(machines, "gpu-box", "laptop", baseline=str(machines / "laptop")).baseline.hostname == "laptop"
    assert _lineup(machines, "gpu-box", "laptop", baseline="machine=laptop").baseline.hostname == "laptop"
    assert _lineup(machines, "gpu-box", "laptop", baseline="A10G").baseline.hostname == "gpu-box"
    with pytest.raises(BenchError, match="no machine of that name; the machines are 'A10G'"):
        _lineup(machines, "gpu-box", "laptop", baseline="nowhere")
    with pytest.raises(BenchError, match="not among the ones compared"):
        _lineup(machines, "gpu-box", "laptop", baseline=str(machines / "jetson"))


def test_machines_that_differ_only_by_hostname_are_told_apart(tmp_path):
    twin = dict(MACHINES["laptop"], machine_id="1111222233334444", hostname="laptop-2")
    write_synthetic_run(tmp_path / "a" / "r", machine="laptop")
    write_synthetic_run(tmp_path / "b" / "r", machine=twin)
    write_synthetic_run(tmp_path / "c" / "r", machine="gpu-box")
    labels = [m.label for m in _lineup(tmp_path, "a", "b", "c").machines]
    assert labels == ["laptop: i7-1165G7 (8 threads)", "laptop-2: i7-1165G7 (8 threads)", "A10G"]


def test_compare_cli_lines_machines_up(machines):
    proc = bench("compare", str(machines / "laptop"), str(machines / "gpu-box"), "--format", "json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    lu = doc["lineup"]
    assert lu["baseline"] == "i7-1165G7 (8 threads)" and lu["shared_keys"] == 2
    assert lu["geomean"]["A10G"] == pytest.approx(_lineup(machines, "laptop", "gpu-box").geomean["a10a10a10a10a10a"])
    assert [p["on"] for p in lu["partial"]] == [["A10G"]] and lu["partial"][0]["missing"] == ["i7-1165G7 (8 threads)"]
    text = bench("compare", str(machines / "laptop"), str(machines / "gpu-box"), "--baseline", "gpu-box", check=True).stdout
    assert "Machines lined up by comparison key" in text and "A10G (baseline)" in text
    assert "Keys only some machines have (1):" in text
    one = bench("compare", str(machines / "laptop"), "--baseline", "laptop")
    assert one.returncode == 2 and "needs runs from two or more machines" in one.stderr and "Traceback" not in one.stderr


def test_report_has_the_lineup_section(machines, tmp_path):
    files = M.build_report(C.load_runs([str(machines / "laptop"), str(machines / "gpu-box")]))
    text = files["report.md"].decode()
    assert "\n## Machines lined up by key\n" in text and "\n### Keys only some machines have\n" in text
    assert "| figure | i7-1165G7 (8 threads) (baseline) | A10G |" in text
    assert text.index("## Machines lined up by key") < text.index("## Environment")
    single = M.build_report(C.load_runs([str(machines / "laptop")]))["report.md"].decode()
    assert "Machines lined up by key" not in single  # one machine: nothing to line up
