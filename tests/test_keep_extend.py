"""checkpoint-best, snapshots every K epochs, and extending a completed run (issue 15 item 3),
through real `bench run` processes (torch resnet8, tiny synthetic data)."""
from __future__ import annotations

import json
import os

import pandas as pd
import pytest

from conftest import bench, run_dirs
from harness import schema as R
from harness.train.keep import best_of

# 64 synthetic images overfit at once: the test loss is lowest early and grows, so the best
# epoch is not the last (asserted, so the test would notice if that stopped being so).
SMALL = ["--backend", "torch", "--model", "resnet8", "--dataset", "synthetic", "--train-size", "64",
         "--test-size", "64", "--batch-size", "32", "--quiet", "--threads", "1", "--seed", "3",
         "--lr", "0.05"]


def _meta(run) -> dict:
    return json.loads((run / R.RUN_JSON).read_text())


def test_best_follows_the_metric_and_snapshots_are_kept(results):
    bench("run", *SMALL, "--epochs", "4", "--schedule", "constant", "--snapshot-every", "1",
          "--results-dir", str(results), check=True)
    (run,) = run_dirs(results)
    rows = R.read_epochs_rows(run / R.EPOCHS_CSV)
    meta = _meta(run)
    epoch, value = best_of(rows, "test_loss")
    assert meta["best"] == {"metric": "test_loss", "epoch": epoch, "value": pytest.approx(value, abs=1e-6),
                            "file": "checkpoint-best.pt"}
    assert epoch < 4, "the best epoch should not be the last here (see SMALL)"
    assert value == min(float(r["test_loss"]) for r in rows)
    assert [s["epoch"] for s in meta["snapshots"]] == [1, 2, 3, 4]
    # links, not second serialisations: best is the very file of its epoch's snapshot
    assert os.path.samefile(run / "checkpoint-best.pt", run / f"checkpoint-e{epoch}.pt")
    assert os.path.samefile(run / "checkpoint.pt", run / "checkpoint-e4.pt")
    assert not list(run.glob(".*link")) and not list(run.glob(".*.tmp"))

    # accuracy metrics maximise
    acc_dir = results.parent / "acc"
    bench("run", *SMALL, "--epochs", "3", "--best-metric", "train_acc", "--results-dir", str(acc_dir), check=True)
    (acc_run,) = run_dirs(acc_dir)
    acc_rows = R.read_epochs_rows(acc_run / R.EPOCHS_CSV)
    best = _meta(acc_run)["best"]
    assert best["value"] == pytest.approx(max(float(r["train_acc"]) for r in acc_rows), abs=1e-6)  # the CSV keeps 6 decimals
    assert best["epoch"] == best_of(acc_rows, "train_acc")[0]
    assert not list(acc_run.glob("checkpoint-e*"))  # no snapshots unless asked


def test_best_metric_without_a_validation_split_is_refused_before_any_folder(results):
    proc = bench("run", *SMALL, "--epochs", "1", "--best-metric", "valid_loss", "--results-dir", str(results))
    assert proc.returncode == 2 and "needs a validation split" in proc.stderr
    assert "Traceback" not in proc.stderr and run_dirs(results) == []


def test_extend_a_completed_constant_run_continues_its_rows(tmp_path):
    bench("run", *SMALL, "--epochs", "4", "--schedule", "constant", "--results-dir", str(tmp_path / "ref"), check=True)
    reference = pd.read_csv(run_dirs(tmp_path / "ref")[0] / R.EPOCHS_CSV)

    bench("run", *SMALL, "--epochs", "2", "--schedule", "constant", "--snapshot-every", "2",
          "--results-dir", str(tmp_path / "ext"), check=True)
    (run,) = run_dirs(tmp_path / "ext")
    group_before = _meta(run)["group"]
    shorter = bench("run", "--resume", str(run), "--epochs", "1")
    assert shorter.returncode == 2 and "cannot be shortened" in shorter.stderr
    bench("run", "--resume", str(run), "--epochs", "4", "--quiet", check=True)
    rows = pd.read_csv(run / R.EPOCHS_CSV)
    assert rows["epoch"].tolist() == [1, 2, 3, 4] and (rows["status"] == "ok").all()
    for col in ("train_loss", "test_loss", "lr"):  # as if it had been started with --epochs 4
        assert rows[col].tolist() == pytest.approx(reference[col].tolist(), rel=1e-5, abs=1e-6), col
    meta = _meta(run)
    assert meta["status"] == "completed" and meta["epochs_completed"] == 4 and meta["settings"]["epochs"] == 4
    assert meta["resumes"][-1]["extended"] == {"from_epochs": 2, "to_epochs": 4}
    assert meta["group"] != group_before  # epochs is part of what was measured
    from harness.experiments.keys import key_of_run
    assert meta.get("key") in (None, key_of_run(meta))
    assert [s["epoch"] for s in meta["snapshots"]] == [2, 4]
    assert meta["best"]["epoch"] == best_of(R.read_epochs_rows(run / R.EPOCHS_CSV), "test_loss")[0]


def test_extend_refuses_a_schedule_that_depends_on_the_total(results):
    bench("run", *SMALL, "--epochs", "1", "--schedule", "cosine", "--results-dir", str(results), check=True)
    (run,) = run_dirs(results)
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    proc = bench("run", "--resume", str(run), "--epochs", "3")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "schedule cosine depends on --epochs" in proc.stderr and "--schedule constant" in proc.stderr
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before
    again = bench("run", "--resume", str(run))
    assert again.returncode == 2 and "already complete" in again.stderr and "--epochs N" in again.stderr
