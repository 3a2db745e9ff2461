"""A distributed run ends as a one-process run would (harness/distributed/outcome.py): the
exit code of `bench launch` is rank 0's, and a divergence is recorded, not a crash."""
from __future__ import annotations

import json

import pandas as pd

from harness import schema as R
from harness.distributed.outcome import RESULT_ENV, rank_exit
from tests.conftest import bench, run_dirs

TORCHRUN_RANK0 = {"RANK": "0", "WORLD_SIZE": "2", "LOCAL_RANK": "0", "LOCAL_WORLD_SIZE": "2"}


def test_rank_exit_reports_rank_zeros_code_to_bench_launch(tmp_path):
    result = tmp_path / "exit-code"
    assert rank_exit(3, {}) == 3  # no `bench launch`: the code itself
    assert rank_exit(3, {RESULT_ENV: str(result), **TORCHRUN_RANK0}) == 0  # recorded outcome: 0 to torchrun
    assert result.read_text().strip() == "3"
    assert rank_exit(2, {RESULT_ENV: str(result), **TORCHRUN_RANK0, "RANK": "1"}) == 2  # a failure stays one
    assert result.read_text().strip() == "3"  # only rank 0 writes


def test_distributed_divergence_ends_like_a_single_process_one(tmp_path):
    """Issue 13 item 1: the NaN loss went into run.json (written with allow_nan=False): two
    tracebacks, exit 1, status "running". Now: exit 3, status diverged, the row kept."""
    results = tmp_path / "results"
    proc = bench("launch", "--nproc", "2", "--backend", "torch", "--device", "cpu", "--model", "resnet8",
                 "--dataset", "synthetic", "--train-size", "256", "--test-size", "64", "--batch-size", "32",
                 "--epochs", "2", "--lr", "1e12", "--threads", "1", "--quiet", "--results-dir", str(results),
                 timeout=240)
    assert proc.returncode == 3, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    (run,) = run_dirs(results)
    meta = json.loads((run / R.RUN_JSON).read_text())
    assert meta["status"] == "diverged" and "lower --lr" in meta["error"]
    rows = pd.read_csv(run / R.EPOCHS_CSV)
    assert rows["status"].iloc[-1] == "diverged"
    last = meta["distributed"]["per_epoch"][-1]
    assert last["epoch"] == rows["epoch"].iloc[-1] and None in last["train_loss"]  # JSON has no NaN
