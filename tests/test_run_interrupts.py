"""Runs stopped at the worst moments, then resumed: a real `bench` process, a real signal.

`kill -9` can land between any two of an epoch's writes. The one the runner's ordering is
built around (harness/train/runner.py) is the kill after checkpoint.json is renamed into
place and before the epoch's row is appended: the resume must restore that row from
checkpoint.json. A timed kill hits that window by luck only, so ``kill_at_row``
(tests/conftest.py) forces it: the real CLI in a child process, sent SIGKILL from inside
the epochs.csv append, before (or after) the row is written.
"""
from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from harness import schema as R
from tests.conftest import BENCH, TINY, bench, kill_at_row, run_dirs, wait_until

def _epochs(run: Path) -> pd.DataFrame:
    return pd.read_csv(run / R.EPOCHS_CSV)


def _meta(run: Path) -> dict:
    return json.loads((run / R.RUN_JSON).read_text())


COMPARED = ("train_loss", "test_loss", "test_acc", "lr")


def _assert_same_losses(resumed: pd.DataFrame, reference: pd.DataFrame) -> None:
    """CPU, one thread, batches fixed by (seed, epoch): a resumed run is the uninterrupted one."""
    assert resumed["epoch"].tolist() == reference["epoch"].tolist()
    for col in COMPARED:
        assert resumed[col].tolist() == pytest.approx(reference[col].tolist(), rel=1e-5, abs=1e-6), col


def test_row_lost_between_checkpoint_json_and_csv_append_is_restored(tmp_path):
    args = ["--backend", "torch", *TINY, "--epochs", "3", "--seed", "3"]
    bench("run", *args, "--results-dir", str(tmp_path / "ref"), check=True)
    reference = _epochs(run_dirs(tmp_path / "ref")[0])

    run = kill_at_row(2, "before", *args, "--results-dir", str(tmp_path / "killed"))
    # The kill came exactly between the two writes: epoch 2 is checkpointed, its row is not in the CSV.
    saved = json.loads((run / R.CHECKPOINT_JSON).read_text())
    assert saved["epoch"] == 2
    assert [int(r["epoch"]) for r in R.read_epochs_rows(run / R.EPOCHS_CSV)] == [1]
    assert _meta(run)["status"] == R.RUNNING  # what a kill -9 leaves

    bench("run", "--resume", str(run), "--quiet", check=True)
    resumed = _epochs(run)
    assert (resumed["status"] == R.EPOCH_OK).all()
    _assert_same_losses(resumed, reference)
    row2 = resumed[resumed["epoch"] == 2].iloc[0]
    for col in ("train_loss", "test_loss", "elapsed_s", "train_time_s"):  # epoch 2's row is the one it recorded
        # epochs.csv keeps 6 decimals (harness/schema/io.py _format): 0.450195 for 0.4501955
        assert row2[col] == pytest.approx(saved["row"][col], rel=1e-6, abs=1e-6), col
    meta = _meta(run)
    assert meta["status"] == R.COMPLETED and meta["resumes"][-1]["from_epoch"] == 3


def test_chainer_resumes_across_a_learning_rate_change(tmp_path):
    """Chainer keeps its momentum as v = -lr * buf, so a resume that restored the velocities
    but not the lr they were taken at would scale them wrongly at the next lr (cosine
    schedule: every epoch has its own lr). The resumed run must be the uninterrupted one."""
    args = ["--backend", "chainer", *TINY, "--train-size", "64", "--test-size", "32", "--batch-size", "16",
            "--epochs", "3", "--schedule", "cosine", "--seed", "5"]
    bench("run", *args, "--results-dir", str(tmp_path / "ref"), check=True)
    reference = _epochs(run_dirs(tmp_path / "ref")[0])
    assert len(set(reference["lr"])) == 3  # the resume below crosses an lr change

    # Stopped after epoch 2, whose lr (0.075) is neither the first (0.1, what a freshly built
    # optimiser holds) nor the next (0.025): the resume must adopt 0.075, then change it.
    run = kill_at_row(2, "after", *args, "--results-dir", str(tmp_path / "killed"))
    assert json.loads((run / R.CHECKPOINT_JSON).read_text())["epoch"] == 2
    bench("run", "--resume", str(run), "--quiet", check=True)
    resumed = _epochs(run)
    _assert_same_losses(resumed, reference)
    assert _meta(run)["resumes"][-1]["from_epoch"] == 3


SLOW_ENOUGH = ["--backend", "torch", "--model", "resnet8", "--dataset", "synthetic", "--train-size", "512",
               "--test-size", "64", "--batch-size", "32", "--epochs", "3", "--quiet", "--threads", "1", "--seed", "7"]


def _as_from_a_terminal() -> None:
    """Ctrl-C's default action in the child, whatever this process inherited: a shell starts
    background jobs with SIGINT ignored, and Python then never raises KeyboardInterrupt."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ctrl_c_records_interrupted_and_keeps_rows(tmp_path):
    proc = subprocess.Popen([BENCH, "run", *SLOW_ENOUGH, "--results-dir", str(tmp_path)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, preexec_fn=_as_from_a_terminal)

    def first_row() -> Path | None:
        for run in run_dirs(tmp_path):
            if (run / R.EPOCHS_CSV).is_file() and R.read_epochs_rows(run / R.EPOCHS_CSV):
                return run
        return None

    run = wait_until(first_row, "the first epoch's row", proc=proc)
    kept = R.read_epochs_rows(run / R.EPOCHS_CSV)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert _meta(run)["status"] == R.INTERRUPTED
    rows = R.read_epochs_rows(run / R.EPOCHS_CSV)
    assert rows[: len(kept)] == kept  # every row written before Ctrl-C is still there, unchanged
    assert rows[-1]["status"] == R.INTERRUPTED and all(r["status"] == R.EPOCH_OK for r in rows[:-1])
    # (resuming an interrupted run: tests/test_cli_run.py, after SIGTERM)
