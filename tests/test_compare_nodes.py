"""Reports of multi-node runs: nodes x processes per node, the transport, and scaling
efficiency against one process (synthetic run folders in the real formats)."""
from __future__ import annotations

import pytest

from harness.report import compare as C
from harness.report import markdown as M
from run_fixtures import write_synthetic_run
from harness.report.table import format_table


def test_nodes_and_transport_in_the_table_and_the_scaling_rows(tmp_path):
    runs = tmp_path / "runs"
    write_synthetic_run(runs / "one", world_size=1, images_per_s=300.0, epochs=2)
    write_synthetic_run(runs / "one-node", world_size=2, nodes=1, images_per_s=560.0, epochs=2)
    write_synthetic_run(runs / "two-nodes", world_size=2, nodes=2, images_per_s=500.0, epochs=2)
    write_synthetic_run(runs / "four", world_size=4, nodes=2, communicator="nccl", images_per_s=900.0, epochs=2)
    _, groups = C.compare_runs(C.load_runs([str(runs)]))
    by_layout = {g["layout"]: g for g in groups}
    assert set(by_layout) == {"", "1 x 2", "2 x 1", "2 x 2"}  # 2 processes on 1 and on 2 machines: two rows
    assert by_layout["2 x 1"]["transport"] == "gloo" and by_layout["2 x 2"]["transport"] == "NCCL"
    assert by_layout[""]["transport"] is None and by_layout[""]["nodes"] == 1

    text = format_table(groups, "text")
    assert "nodes x procs" in text and "transport" in text and "2 x 1" in text and "NCCL" in text

    strong = {(r["processes"], r["nodes"]): r for r in C.scaling_rows(groups) if r["scaling"] == "strong"}
    assert set(strong) == {(1, 1), (2, 1), (2, 2), (4, 2)}  # one series, one process its reference
    one = strong[(1, 1)]["train_images_per_s"]
    for (n, _), r in strong.items():
        assert r["efficiency"] == pytest.approx(r["train_images_per_s"] / (n * one))
    assert strong[(2, 2)]["layout"] == "2 x 1" and strong[(2, 2)]["transport"] == "gloo"

    report = M.build_report(C.load_runs([str(runs)]))["report.md"].decode()
    assert "| nodes x procs | transport |" in report and "| 2 x 2 | NCCL |" in report
    assert "nodes x processes per node: 2 x 2; NCCL" in report  # the scaling observation names both


def test_runs_without_a_node_count_count_their_hosts(tmp_path):
    """run.json written before nodes were recorded: the ranks' hosts say how many machines."""
    import json

    folder = write_synthetic_run(tmp_path / "old", world_size=2, nodes=2, epochs=2)
    meta = json.loads((folder / "run.json").read_text())
    for key in ("nodes", "processes_per_node"):
        del meta["distributed"][key]
    for r in meta["distributed"]["ranks"]:
        del r["node_rank"]
    (folder / "run.json").write_text(json.dumps(meta))
    [rec], _ = C.compare_runs(C.load_runs([str(folder)]))
    assert (rec["nodes"], rec["processes_per_node"], rec["layout"]) == (2, 1, "2 x 1")
