"""The report's "How to reproduce" section shows the recorded commands without the
``--results-dir`` they were first written to (issue 15: often a temporary folder, long gone)."""
from __future__ import annotations

from pathlib import Path

from harness.report.environment import reproduce_commands
from harness.schema import RunFolder


def _run(tmp_path: Path, command: str, run_id: str) -> RunFolder:
    meta = {"run_id": run_id, "command": command, "started_at": run_id,
            "machine": {"hostname": "laptop", "machine_id": "m1"}}
    return RunFolder(tmp_path / run_id, meta, None, None)


def test_reproduce_commands_drop_the_temporary_results_dir(tmp_path):
    runs = [_run(tmp_path, "bench run --results-dir /tmp/tmpab12/results --model resnet20 --epochs 2", "a"),
            _run(tmp_path, "bench run --backend chainer --results-dir=/tmp/x --model resnet20", "b"),
            _run(tmp_path, "bench run --model 'resnet 20' --epochs 3", "c")]
    text = reproduce_commands(runs, "bench report runs/ --out report")
    assert "--results-dir" not in text and "/tmp/" not in text
    assert "bench run --model resnet20 --epochs 2" in text
    assert "bench run --backend chainer --model resnet20" in text
    assert "bench run --model 'resnet 20' --epochs 3" in text  # untouched when there is nothing to drop
    assert text.rstrip().endswith("bench report runs/ --out report")


def test_a_suites_runs_start_with_the_one_command_that_reruns_them(tmp_path):
    runs = [_run(tmp_path, "bench run --model resnet20 --epochs 2", "a"), _run(tmp_path, "bench run --model resnet8", "b"),
            _run(tmp_path, "bench run --model small_cnn", "c")]
    for run in runs[:2]:
        run.meta["experiment"] = {"name": "resnet20-train", "suite": "quick", "key": "k"}
    lines = reproduce_commands(runs).splitlines()
    assert lines[:3] == ["# on laptop (?)", "bench suite run quick --out results/quick-$(hostname)   # every quick cell below",
                         "# or one run at a time:"]
    assert lines.count("bench suite run quick --out results/quick-$(hostname)   # every quick cell below") == 1
    assert "bench run --model small_cnn" in lines  # a plain run keeps its own line
