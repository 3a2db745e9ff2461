"""The report's per-layer appendix hook: `bench summary` tables per model the runs trained."""
from __future__ import annotations

from pathlib import Path

from harness.report.layers import layer_appendix
from harness.schema import RunFolder


def test_layer_appendix_has_one_table_per_model_configuration(tmp_path: Path):
    meta = {"run_id": "a", "settings": {"model": "resnet8", "image_size": 32, "shortcut": "A", "head": "linear"},
            "model": {"num_classes": 10}}
    runs = [RunFolder(tmp_path / "a", meta, None, None), RunFolder(tmp_path / "b", dict(meta, run_id="b"), None, None)]
    blocks = layer_appendix(runs)
    assert blocks[0] == ("h", 2, "Appendix: layers")
    tables = [b for b in blocks if b[0] == "table"]
    assert len(tables) == 1  # the two runs share one configuration
    _, header, cells, _ = tables[0]
    assert header[:2] == ["layer", "torch type"] and "chainer params" in header
    assert cells[0][0] == "conv1" and cells[-1][0] == "total" and all(row[-1] == "" for row in cells)
