"""`bench run --resume` never loses what a run folder holds: a folder without its checkpoint
is refused untouched (or started over with --restart, the old rows moved aside), and a run
that is still being written is refused (its lock, harness/train/lock.py)."""
from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import pandas as pd

from harness import schema as R
from tests.conftest import BENCH, bench, run_dirs

RUN = ["--backend", "torch", "--model", "resnet8", "--dataset", "synthetic", "--train-size", "256",
       "--test-size", "64", "--batch-size", "32", "--epochs", "4", "--quiet", "--threads", "1"]


def _start(results: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([BENCH, "run", *RUN, *extra, "--results-dir", str(results)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_rows(results: Path, n: int, proc: subprocess.Popen, timeout: float = 120) -> Path:
    """The run folder once its epochs.csv holds ``n`` rows (polls the file: the event itself)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for run in run_dirs(results):
            if (run / R.EPOCHS_CSV).is_file() and len(R.read_epochs_rows(run / R.EPOCHS_CSV)) >= n:
                return run
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.02)
    raise AssertionError(f"the run never wrote {n} rows")


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_resume_without_checkpoint_is_refused_untouched_and_restart_keeps_the_old_rows(tmp_path):
    """Issue 13 item 2: the checkpoint removed (a folder copied without its large file),
    --resume started over and rewrote epochs.csv from epoch 1, the recorded epochs gone."""
    proc = _start(tmp_path, "--epochs", "6")  # stopped after its second row
    run = _wait_for_rows(tmp_path, 2, proc)
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=60)
    assert proc.returncode == 130
    (run / "checkpoint.pt").unlink()
    before = _snapshot(run)
    old_rows = R.read_epochs_rows(run / R.EPOCHS_CSV)

    refused = bench("run", "--resume", str(run), "--quiet")
    assert refused.returncode == 2, refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1 and "--restart" in refused.stderr
    assert "checkpoint.pt" in refused.stderr and "Traceback" not in refused.stderr
    assert _snapshot(run) == before  # byte-identical

    bench("run", "--resume", str(run), "--restart", "--quiet", check=True)
    rows = pd.read_csv(run / R.EPOCHS_CSV)
    assert rows["epoch"].tolist() == [1, 2, 3, 4, 5, 6] and (rows["status"] == "ok").all()
    (aside,) = run.glob("epochs.*.csv")
    assert aside.read_bytes() == before[R.EPOCHS_CSV] and len(old_rows) >= 2  # moved, not deleted
    meta = json.loads((run / R.RUN_JSON).read_text())
    assert meta["status"] == "completed" and aside.name in meta["resumes"][-1]["set_aside"]
    assert meta["resumes"][-1]["from_epoch"] == 1


def test_restart_needs_resume(results):
    proc = bench("run", *RUN, "--restart", "--results-dir", str(results))
    assert proc.returncode == 2 and "--resume" in proc.stderr and run_dirs(results) == []


def test_a_running_run_is_locked_and_a_killed_one_is_not(tmp_path):
    """Issue 13 item 5: --resume of a run that is still going gave two writers. The lock
    dies with its holder: after kill -9 the run resumes."""
    proc = _start(tmp_path, "--epochs", "40")  # killed long before its end
    run = _wait_for_rows(tmp_path, 1, proc)
    refused = bench("run", "--resume", str(run), "--quiet")
    assert refused.returncode == 2, refused.stderr
    assert "still running" in refused.stderr and f"pid {proc.pid}" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    assert proc.poll() is None  # the running one goes on, alone
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    resumed = _start_resume(run)
    _wait_for_rows(tmp_path, len(R.read_epochs_rows(run / R.EPOCHS_CSV)) + 1, resumed)  # it writes again
    resumed.send_signal(signal.SIGTERM)
    resumed.communicate(timeout=60)
    assert resumed.returncode == 130 and json.loads((run / R.RUN_JSON).read_text())["status"] == "interrupted"


def _start_resume(run: Path) -> subprocess.Popen:
    return subprocess.Popen([BENCH, "run", "--resume", str(run), "--quiet"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_resume_refuses_or_records_every_flag_given(tmp_path):
    """Issue 13 item 7: --threads, --target-acc and --data-dir were dropped silently. A flag
    given with --resume is now refused (the run's figures depend on it) or applied and
    recorded in run.json's resumes entry."""
    results = tmp_path / "results"
    bench("run", *RUN, "--train-size", "64", "--epochs", "1", "--results-dir", str(results), check=True)
    (run,) = run_dirs(results)
    meta = json.loads((run / R.RUN_JSON).read_text())
    meta["status"] = "interrupted"  # as a kill after the last commit leaves it
    R.write_json(run / R.RUN_JSON, meta)
    before = _snapshot(run)
    for flags in (["--threads", "2"], ["--target-acc", "0.5"], ["--results-dir", str(tmp_path / "elsewhere")]):
        refused = bench("run", "--resume", str(run), "--quiet", *flags)
        assert refused.returncode == 2 and flags[0] in refused.stderr, (flags, refused.stderr)
        assert _snapshot(run) == before
    data = tmp_path / "moved-data"
    bench("run", "--resume", str(run), "--quiet", "--threads", "1", "--data-dir", str(data), check=True)
    meta = json.loads((run / R.RUN_JSON).read_text())
    assert meta["status"] == "completed" and meta["resumes"][-1]["changed"] == {"data_dir": str(data)}
