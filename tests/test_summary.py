"""`bench summary`: per-layer tables computed in each backend, side by side (issue 15 item 5)."""
from __future__ import annotations

import json

from conftest import bench


def test_resnet20_summary_matches_row_by_row_and_totals_bench_list():
    proc = bench("summary", "--model", "resnet20", "--json", check=True)
    summary = json.loads(proc.stdout)
    torch, chainer = summary["backends"]["torch"], summary["backends"]["chainer"]
    assert torch["total"] == chainer["total"] == 269_722  # He et al.'s 0.27M; `bench list`'s figure
    assert torch["rows_total"] == chainer["rows_total"] == 269_722
    assert [r["layer"] for r in torch["rows"]] == [r["layer"] for r in chainer["rows"]]
    for t, c in zip(torch["rows"], chainer["rows"]):
        assert (t["layer"], t["output_shape"], t["params"]) == (c["layer"], c["output_shape"], c["params"])
    assert torch["rows"][0] == {"layer": "conv1", "type": "Conv2d", "output_shape": [16, 32, 32], "params": 432}
    assert torch["rows"][-1]["output_shape"] == [10] and summary["match"]
    assert all(r["match"] for r in summary["rows"])

    text = bench("summary", "--model", "resnet20", "--backend", "torch", check=True).stdout
    assert "layer3.2.conv2" in text and "269,722" in text and "!=" not in text


def test_summary_of_the_seed_001_small_cnn_at_its_size():
    """001's torchsummary: 25,879,717 parameters for its CNN at 224 px and 133 classes."""
    proc = bench("summary", "--model", "small_cnn", "--image-size", "224", "--classes", "133",
                 "--backend", "torch", "--json", check=True)
    summary = json.loads(proc.stdout)
    rows = summary["backends"]["torch"]["rows"]
    assert [r["output_shape"] for r in rows if r["type"] == "Conv2d"][0] == [16, 224, 224]
    assert rows[-1]["output_shape"] == [133]


def test_summary_bad_model_is_one_line():
    proc = bench("summary", "--model", "resnet21")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
