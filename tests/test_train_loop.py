"""The epoch loop's two steps on their own: building a row from an epoch's figures, and
committing it (checkpoint -> checkpoint.json -> CSV row -> run.json) in an order that a kill
at any point leaves resumable. Real torch backend, real files; failures are injected by
making one write raise, which is where a kill or a full disk would stop the commit."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness import schema as R
from harness.schema.io import DiskFull
from harness.backend import EvalStats, TrainStats
from harness.config import RunConfig
from harness.errors import BenchError
from harness.train import session
from harness.train.commit import (Checkpointed, RunFiles, commit_epoch, pending_checkpoint, read_checkpoint, restore_rows,
                                   settle_pending)
from harness.train.loop import epoch_row
from harness.train.prepare import prepare_backend
from tests.conftest import bench, run_dirs

BASE = {"run_id": "r", "backend": "torch", "model": "resnet8", "dataset": "synthetic", "device": "cpu",
        "batch_size": 32, "world_size": 1}


def _config(results: Path, epochs: int) -> RunConfig:
    return RunConfig(backends=["torch"], model="resnet8", dataset="synthetic", train_size=128, test_size=64,
                     batch_size=32, threads=1, quiet=True, epochs=epochs, results_dir=results)


def test_a_row_is_built_from_the_epochs_figures():
    train = TrainStats(loss_sum=230.4, correct=32, count=128, steps=4, data_wait_s=0.25, compute_s=1.5)
    test = EvalStats(loss_sum=140.8, correct=16, count=64, steps=2, top5_correct=48)
    util = {"cpu_util_mean_pct": 55.0, "rss_peak_mb": 300.0}
    row = epoch_row(BASE, 3, 0.05, train, 2.0, test, 0.5, util, flops_per_image=2_000_000)
    assert {k: row[k] for k in BASE} == BASE and row["cpu_util_mean_pct"] == 55.0 and row["rss_peak_mb"] == 300.0
    assert row["epoch"] == 3 and row["lr"] == 0.05 and row["status"] == R.EPOCH_OK
    assert row["train_loss"] == pytest.approx(1.8) and row["train_acc"] == 0.25
    assert row["test_loss"] == pytest.approx(2.2) and row["test_acc"] == 0.25 and row["test_top5_acc"] == 0.75
    assert row["train_time_s"] == 2.0 and row["eval_time_s"] == 0.5 and row["data_wait_s"] == 0.25
    assert row["train_images_per_s"] == 64.0 and row["eval_images_per_s"] == 128.0
    assert row["train_gflops_per_s"] == pytest.approx(2e6 * 128 / 2.0 / 1e9)
    assert set(row) <= set(R.EPOCH_COLUMNS)  # CsvAppender refuses any other column
    # no time measured (an empty epoch): no rate, rather than a division by zero
    empty = epoch_row(BASE, 1, 0.1, TrainStats(), 0.0, EvalStats(), 0.0, {}, 1)
    assert empty["train_images_per_s"] is None and empty["eval_images_per_s"] is None


def _stamp(checkpoint_s: float) -> dict[str, float]:
    return {"harness_s": checkpoint_s, "epoch_time_s": 1.0 + checkpoint_s, "elapsed_s": 10.0}


# Which write fails, and the files that must then hold the epoch (the earlier steps) or not.
STEPS = ["checkpoint", "checkpoint.json", "csv", "run.json"]


@pytest.mark.parametrize("failing", STEPS)
def test_commit_writes_each_file_only_after_the_one_before(tmp_path, monkeypatch, failing):
    prepared = prepare_backend(_config(tmp_path, 1), "torch", 0, 10)
    files = RunFiles.open(tmp_path, prepared.backend.checkpoint_suffix)
    R.write_json(tmp_path / R.RUN_JSON, {"epochs_completed": 0})
    row = BASE | {"epoch": 1, "train_loss": 2.0, "test_loss": 2.1, "test_acc": 0.5, "status": R.EPOCH_OK}

    def fail(*args, **kwargs):
        raise OSError(28, "No space left on device")

    if failing == "checkpoint":
        monkeypatch.setattr(prepared.backend, "save_checkpoint", fail)
    elif failing == "csv":
        monkeypatch.setattr(files.epochs, "append", fail)
    else:
        real = R.write_json
        name = R.CHECKPOINT_JSON if failing == "checkpoint.json" else R.RUN_JSON
        monkeypatch.setattr(R, "write_json", lambda path, data: fail() if Path(path).name == name else real(path, data))
    meta: dict = {"epochs_completed": 0}
    # schema.atomic_path words a full disk under the checkpoint as DiskFull (one line, the file named)
    error, message = ((DiskFull, "checkpoint.pending-e1.pt: its filesystem is full") if failing == "checkpoint"
                      else (OSError, "No space"))
    with pytest.raises(error, match=message):
        commit_epoch(files, prepared.backend, meta, row, _stamp, target_acc=None)
    files.close()
    done = STEPS[:STEPS.index(failing)]
    # the checkpoint waits under its pending name until checkpoint.json commits the epoch
    pending = pending_checkpoint(files.checkpoint, 1)
    assert pending.is_file() == (done == ["checkpoint"])
    assert files.checkpoint.is_file() == ("checkpoint.json" in done)
    assert (tmp_path / R.CHECKPOINT_JSON).is_file() == ("checkpoint.json" in done)
    assert [r["epoch"] for r in R.read_epochs_rows(tmp_path / R.EPOCHS_CSV)] == (["1"] if "csv" in done else [])
    assert json.loads((tmp_path / R.RUN_JSON).read_text())["epochs_completed"] == 0  # run.json is last
    if "checkpoint.json" in done:  # it holds the whole row, timings included, for --resume
        state = json.loads((tmp_path / R.CHECKPOINT_JSON).read_text())
        assert state["epoch"] == 1 and state["row"]["harness_s"] >= 0 and state["row"]["elapsed_s"] == 10.0


def test_a_kill_inside_the_commit_never_labels_a_checkpoint_with_the_wrong_epoch(tmp_path):
    """A kill after the epoch-2 checkpoint is written but before checkpoint.json names epoch 2
    must leave epoch 1's weights under epoch 1 (the pending file is dropped); a kill after
    checkpoint.json but before the rename must finish the rename. Round 1 renamed the checkpoint
    in place first: epoch 2's weights under checkpoint.json's epoch 1, and epoch 2 trained twice."""
    checkpoint = tmp_path / "checkpoint.pt"
    checkpoint.write_bytes(b"epoch 1")
    R.write_json(tmp_path / R.CHECKPOINT_JSON, {"epoch": 1, "elapsed_s": 1.0, "row": {}})
    pending_checkpoint(checkpoint, 2).write_bytes(b"epoch 2")  # killed before checkpoint.json
    settle_pending(tmp_path, checkpoint)
    assert checkpoint.read_bytes() == b"epoch 1" and not pending_checkpoint(checkpoint, 2).exists()

    pending_checkpoint(checkpoint, 2).write_bytes(b"epoch 2")
    R.write_json(tmp_path / R.CHECKPOINT_JSON, {"epoch": 2, "elapsed_s": 2.0, "row": {}})  # killed before the rename
    settle_pending(tmp_path, checkpoint)
    assert checkpoint.read_bytes() == b"epoch 2" and not pending_checkpoint(checkpoint, 2).exists()
    assert read_checkpoint(tmp_path, checkpoint).epoch == 2


@pytest.mark.parametrize("csv_epochs", [[1], [1, 2]])
def test_restore_rows_keeps_one_row_per_committed_epoch(tmp_path, csv_epochs):
    """Rows past the checkpoint and the interrupted row go; the checkpointed epoch's row is
    checkpoint.json's whether or not its append happened before the kill."""
    writer = R.CsvAppender(tmp_path / R.EPOCHS_CSV, list(R.EPOCH_COLUMNS))
    for e in csv_epochs:
        writer.append(BASE | {"epoch": e, "train_loss": 2.0 - e / 10, "status": R.EPOCH_OK})
    writer.append(BASE | {"epoch": csv_epochs[-1] + 1, "status": R.INTERRUPTED})
    writer.close()
    last = Checkpointed(2, 20.0, BASE | {"epoch": 2, "train_loss": 1.8, "elapsed_s": 20.0, "status": R.EPOCH_OK})
    restore_rows(tmp_path, last)
    rows = R.read_epochs_rows(tmp_path / R.EPOCHS_CSV)
    assert [(r["epoch"], r["status"]) for r in rows] == [("1", R.EPOCH_OK), ("2", R.EPOCH_OK)]
    assert rows[0]["elapsed_s"] == "" and float(rows[1]["elapsed_s"]) == 20.0  # epoch 2 is checkpoint.json's
    restore_rows(tmp_path, None)  # nothing checkpointed (killed in epoch 1): no rows survive
    assert R.read_epochs_rows(tmp_path / R.EPOCHS_CSV) == []


def test_a_row_lost_between_checkpoint_json_and_the_csv_is_restored_on_resume(tmp_path, monkeypatch):
    """The kill that lands after checkpoint.json and before the CSV append: forced by making
    epoch 2's append raise. --resume must restore epoch 2's row from checkpoint.json and go
    on with epoch 3, leaving exactly one row per epoch."""
    results = tmp_path / "results"
    real_append = R.CsvAppender.append

    def append(self, row):
        if row.get("epoch") == 2 and row.get("status") == R.EPOCH_OK:
            raise OSError(5, "Input/output error")  # the process dies here
        real_append(self, row)

    monkeypatch.setattr(R.CsvAppender, "append", append)
    with pytest.raises(BenchError, match="Input/output.*bench run --resume"):  # recorded, then one line
        session.run_command(_config(results, 3), "bench run (test)")
    monkeypatch.undo()
    (run,) = run_dirs(results)
    lost = json.loads((run / R.CHECKPOINT_JSON).read_text())["row"]
    assert lost["epoch"] == 2
    assert [r["epoch"] for r in R.read_epochs_rows(run / R.EPOCHS_CSV) if r["status"] == R.EPOCH_OK] == ["1"]
    assert json.loads((run / R.RUN_JSON).read_text())["status"] == R.INTERRUPTED

    bench("run", "--resume", str(run), "--quiet", check=True)
    rows = R.read_epochs_rows(run / R.EPOCHS_CSV)
    assert [r["epoch"] for r in rows] == ["1", "2", "3"] and {r["status"] for r in rows} == {R.EPOCH_OK}
    # the CSV keeps 6 decimals; checkpoint.json the full float
    assert float(rows[1]["train_loss"]) == pytest.approx(lost["train_loss"], abs=1e-6)
    assert float(rows[1]["elapsed_s"]) == pytest.approx(lost["elapsed_s"], abs=1e-6)
    meta = json.loads((run / R.RUN_JSON).read_text())
    assert meta["status"] == R.COMPLETED and meta["epochs_completed"] == 3 and meta["resumes"][0]["from_epoch"] == 3
