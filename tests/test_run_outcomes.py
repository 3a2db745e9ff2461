"""How `bench run` ends, end to end: divergence in Chainer, repeats, a target accuracy."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from harness import schema as R
from tests.conftest import TINY, bench, run_dirs


def _epochs(run: Path) -> pd.DataFrame:
    return pd.read_csv(run / R.EPOCHS_CSV)


def _meta(run: Path) -> dict:
    return json.loads((run / R.RUN_JSON).read_text())


def test_chainer_divergence_stops_with_status_diverged(results):
    proc = bench("run", "--backend", "chainer", *TINY, "--train-size", "64", "--epochs", "2", "--lr", "1e12",
                 "--results-dir", str(results))
    assert proc.returncode == 3, proc.stderr
    assert "Traceback" not in proc.stderr
    (run,) = run_dirs(results)
    meta = _meta(run)
    assert meta["status"] == R.DIVERGED and "--lr" in meta["error"]
    df = _epochs(run)
    assert df["status"].iloc[-1] == R.DIVERGED and (df["status"].iloc[:-1] == R.EPOCH_OK).all()


def test_repeat_3_gives_three_seeded_runs_that_compare_as_one_group(results):
    proc = bench("run", "--backend", "torch", *TINY, "--train-size", "64", "--epochs", "1", "--repeat", "3",
                 "--seed", "10", "--results-dir", str(results), check=True)
    runs = run_dirs(results)
    assert len(runs) == 3
    metas = sorted((_meta(r) for r in runs), key=lambda m: m["repeat_index"])
    assert [m["repeat_index"] for m in metas] == [0, 1, 2]
    assert [m["seed"] for m in metas] == [10, 11, 12] == [m["settings"]["seed"] for m in metas]
    assert len({m["group"] for m in metas}) == 1  # the same cell, measured three times
    assert all(m["status"] == R.COMPLETED for m in metas)
    # each seed draws its own initial weights and data order: the losses differ
    losses = {_epochs(results / m["run_id"])["train_loss"].iloc[0] for m in metas}
    assert len(losses) == 3
    assert proc.stdout.count("torch") >= 1  # the summary
    (group,) = json.loads(bench("compare", str(results), "--format", "json", check=True).stdout)
    assert group["runs"] == 3 and group["seeds"] == [10, 11, 12]


def test_target_accuracy_stops_the_run_and_records_the_time(results):
    bench("run", "--backend", "torch", *TINY, "--train-size", "64", "--epochs", "3", "--target-acc", "0.01",
          "--results-dir", str(results / "hit"), check=True)
    (run,) = run_dirs(results / "hit")
    meta, df = _meta(run), _epochs(run)
    # any classifier gets 1 % of the test set right after one epoch: the run stops there
    assert df["epoch"].tolist() == [1] and meta["status"] == R.COMPLETED
    assert meta["target_acc"] == 0.01 and meta["target_reached_epoch"] == 1
    assert meta["time_to_target_s"] == pytest.approx(df["elapsed_s"].iloc[0], abs=1e-6)  # the CSV keeps 6 decimals
    assert meta["time_to_target_s"] >= df["epoch_time_s"].iloc[0] > 0

    bench("run", "--backend", "torch", *TINY, "--train-size", "64", "--epochs", "2", "--target-acc", "0.999",
          "--results-dir", str(results / "miss"), check=True)
    (run,) = run_dirs(results / "miss")
    meta, df = _meta(run), _epochs(run)
    assert df["test_acc"].max() < 0.999  # (2 tiny epochs: nowhere near)
    assert df["epoch"].tolist() == [1, 2] and meta["time_to_target_s"] is None
    assert "target_reached_epoch" not in meta or meta["target_reached_epoch"] is None
