"""``bench parity``: the same weights and batch in torch and Chainer, compared and judged."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torchvision

from harness.cli import main
from harness.parity import FLOOR_FACTOR, Row, compare_arrays


@pytest.fixture(autouse=True)
def caches(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    monkeypatch.setenv("BENCH_CACHE_DIR", str(tmp_path / "bench-cache"))


def parity(capsys, *args: str) -> tuple[int, str]:
    code = main(["parity", "--threads", "1", "--batch-size", "8", *args])
    out = capsys.readouterr()
    return code, out.out + out.err


@pytest.mark.parametrize("model, size", [("resnet8", "32"), ("small_cnn", "32")])
def test_parity_passes_for_small_models(capsys, model, size) -> None:
    code, out = parity(capsys, "--model", model, "--image-size", size, "--json")
    report = json.loads(out)
    rows = {r["quantity"]: r for r in report["rows"]}
    assert code == 0 and report["passed"] is True
    assert rows["state as loaded"]["max_abs"] == 0.0
    assert rows["logits, eval mode"]["max_rel"] < 1e-5
    assert rows["parameters after the step"]["max_rel"] < 1e-4  # dropout (small_cnn) was off for the step
    assert report["losses"][0] == pytest.approx(report["losses"][1], rel=1e-5)


def test_parity_of_a_torchvision_weights_file_prints_a_table(tmp_path, capsys) -> None:
    torch.manual_seed(0)
    torch.save(torchvision.models.resnet18().state_dict(), tmp_path / "r18.pth")
    code, out = parity(capsys, "--model", "resnet18", "--image-size", "32", "--weights", str(tmp_path / "r18.pth"))
    lines = out.strip().splitlines()
    assert code == 0, out
    assert lines[0].startswith("parity torch vs chainer: resnet18, 32 px, batch 8, weights file")
    assert lines[2].split()[-2:] == ["0", "0"]  # state as loaded: identical
    assert lines[-1].startswith("PASS: largest relative difference")


def test_parity_fails_above_the_tolerance(capsys) -> None:
    code, out = parity(capsys, "--model", "resnet8", "--tolerance", "1e-12")
    assert code == 1
    assert out.strip().splitlines()[-1].startswith("FAIL: logits, eval mode differs by")
    code, out = parity(capsys, "--model", "resnet8", "--backend", "torch")
    assert code == 2 and "two different backends" in out


def test_floor_rule() -> None:
    row = compare_arrays("x", {"a": np.array([1.0, 2.0])}, {"a": np.array([1.0, 2.0 + 2e-3])})
    assert row.worst == "a" and row.max_rel == pytest.approx(2e-3 / 2.002)
    assert not row.passes(1e-4)
    row.floor = row.max_rel / (FLOOR_FACTOR - 1)  # within FLOOR_FACTOR x what the framework does to itself
    assert row.passes(1e-4)
    assert not Row("y", 1.0, 1.0, floor=0.1).passes(1e-4)
