"""What a run writes survives the disk (issue 13 items 4 and 6).

A full disk: one line naming the file and the space, exit 2, status interrupted, no temporary
left, the resume command printed; every committed row kept, and --resume after freeing space
completes the run. On a real small filesystem (tmpfs) where this process may mount one (else
skipped with the reason), and for each write of an epoch by failing it where the OS answers.
Durability: the checkpoint is fsync'd (file and folder) like the other files, and a short
``os.write`` never leaves a torn row."""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Iterator

import pandas as pd
import pytest

from harness import schema as R
from tests.conftest import bench, run_dirs

RUN = ["--backend", "torch", "--model", "resnet8", "--dataset", "synthetic", "--train-size", "64",
       "--test-size", "32", "--batch-size", "32", "--epochs", "4", "--quiet", "--threads", "1"]


def _mount(folder: Path, size: str) -> str | None:
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                          capture_output=True, text=True)
    return None if proc.returncode == 0 else (proc.stderr.strip() or f"mount exited {proc.returncode}")


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs: one resnet8 checkpoint (~0.6 MiB) fits, a second beside it does not."""
    folder = tmp_path / "small"
    folder.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    why = _mount(folder, "1m")
    if why is not None:
        pytest.skip(f"cannot mount a tmpfs here: {why}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)  # lazily: a writer may hold a file


def test_full_disk_stops_the_run_resumably_and_resume_completes_it(small_fs: Path):
    results = small_fs / "results"
    proc = bench("run", *RUN, "--results-dir", str(results))
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    (run,) = run_dirs(results)
    assert "MiB free" in lines[0] and f"bench run --resume {run}" in lines[0], lines[0]
    assert not [p.name for p in run.iterdir() if p.name.endswith(".tmp")]  # no temporary left
    meta = json.loads((run / R.RUN_JSON).read_text())
    assert meta["status"] == "interrupted" and meta["error"]
    rows = pd.read_csv(run / R.EPOCHS_CSV)
    done = meta["epochs_completed"]
    assert done >= 1 and rows[rows["status"] == "ok"]["epoch"].tolist() == list(range(1, done + 1))

    subprocess.run(["mount", "-o", "remount,size=16m", str(small_fs)], check=True)  # space freed
    bench("run", "--resume", str(run), "--quiet", check=True)
    rows = pd.read_csv(run / R.EPOCHS_CSV)
    assert rows["epoch"].tolist() == [1, 2, 3, 4] and (rows["status"] == "ok").all()
    assert json.loads((run / R.RUN_JSON).read_text())["status"] == "completed"


# --- each of the run's writes failing, injected where the OS answers ---------------------------

def _fail_nth_write(monkeypatch: pytest.MonkeyPatch, name: str, nth: int) -> None:
    """The ``nth`` os.write into ``name`` (or its atomic-write temporary ``.name.*``) fails
    with ENOSPC, as a full disk answers; earlier and later writes go through."""
    import errno

    real = os.write
    seen = {"n": 0}

    def write(fd: int, data: bytes) -> int:  # type: ignore[override]
        target = Path(os.readlink(f"/proc/self/fd/{fd}")).name
        if target == name or target.startswith(f".{name}."):
            seen["n"] += 1
            if seen["n"] == nth:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(fd, data)

    monkeypatch.setattr(os, "write", write)


@pytest.mark.parametrize("name, nth", [(R.CHECKPOINT_JSON, 2), (R.EPOCHS_CSV, 3), (R.RUN_JSON, 3)],
                         ids=["checkpoint.json", "epochs.csv-row", "run.json"])
def test_each_write_of_an_epoch_failing_stops_the_run_resumably(tmp_path, monkeypatch, name, nth):
    """Epoch 2's write of ``name`` fails: one BenchError naming it and the resume command,
    status interrupted, epoch 1 kept, no temporary; --resume then completes the run."""
    from harness.config import RunConfig
    from harness.errors import BenchError
    from harness.train import session

    config = RunConfig(backends=["torch"], model="resnet8", dataset="synthetic", train_size=64, test_size=32,
                       batch_size=32, epochs=3, quiet=True, threads=1, results_dir=tmp_path)
    with monkeypatch.context() as inject:
        _fail_nth_write(inject, name, nth)
        with pytest.raises(BenchError) as failed:
            session.run_command(config, "bench run ...")
    (run,) = run_dirs(tmp_path)
    message = str(failed.value)
    assert "\n" not in message and name in message and f"bench run --resume {run}" in message, message
    assert not [p.name for p in run.iterdir() if p.name.endswith(".tmp")]
    meta = json.loads((run / R.RUN_JSON).read_text())
    assert meta["status"] == "interrupted" and name in meta["error"]
    ok = pd.read_csv(run / R.EPOCHS_CSV).query("status == 'ok'")["epoch"].tolist()
    assert ok[:1] == [1] and ok == list(range(1, len(ok) + 1))  # epoch 1 kept, none lost in between
    assert session.resume_command(run, {}, "bench run --resume", quiet=True) == 0
    rows = pd.read_csv(run / R.EPOCHS_CSV)
    assert rows["epoch"].tolist() == [1, 2, 3] and (rows["status"] == "ok").all()


# --- durability: fsync and short writes ----------------------------------------------------------

def _tiny_config(results: Path, epochs: int = 2):
    from harness.config import RunConfig

    return RunConfig(backends=["torch"], model="resnet8", dataset="synthetic", train_size=64, test_size=32,
                     batch_size=32, epochs=epochs, quiet=True, threads=1, results_dir=results)


def test_the_checkpoint_is_fsynced_file_and_folder(tmp_path, monkeypatch):
    """Issue 13 item 6: the checkpoint was renamed into place without fsync of the file or the
    folder (a power cut could leave an empty or missing checkpoint beside a newer checkpoint.json)."""
    import stat

    from harness.train.commit import RunFiles
    from harness.train.prepare import prepare_backend

    prepared = prepare_backend(_tiny_config(tmp_path), "torch", 0, 10)
    files = RunFiles.open(tmp_path, prepared.backend.checkpoint_suffix)
    files.close()
    synced: list[str] = []
    real = os.fsync

    def fsync(fd: int) -> None:
        path = Path(os.readlink(f"/proc/self/fd/{fd}"))
        synced.append("folder" if stat.S_ISDIR(os.fstat(fd).st_mode) else path.name)
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    pending = files.save_pending(prepared.backend, 1)
    R.promote(pending, files.checkpoint)
    monkeypatch.undo()
    name = pending.name
    # the new checkpoint's bytes are on disk before its rename, and each rename before we go on
    wrote = [i for i, s in enumerate(synced) if s == name or s.startswith(f".{name}.")]
    assert wrote and synced[wrote[0] + 1:].count("folder") >= 2, synced
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([R.EPOCHS_CSV, files.checkpoint.name])


def test_short_writes_never_tear_a_row(tmp_path, monkeypatch):
    """os.write may take fewer bytes than asked and return the count; the run must write the
    rest (round 1 dropped it: a torn epochs.csv row and a truncated run.json)."""
    from harness.train import session

    real = os.write

    def dribble(fd: int, data: bytes) -> int:
        return real(fd, bytes(data[: max(1, len(data) // 3)]))

    monkeypatch.setattr(os, "write", dribble)
    code, dirs = session.run_command(_tiny_config(tmp_path), "bench run ...")
    monkeypatch.undo()
    assert code == 0
    (run,) = dirs
    rows = pd.read_csv(run / R.EPOCHS_CSV)
    assert rows["epoch"].tolist() == [1, 2] and (rows["status"] == "ok").all() and rows["train_loss"].notna().all()
    assert json.loads((run / R.RUN_JSON).read_text())["status"] == "completed"
    assert json.loads((run / R.CHECKPOINT_JSON).read_text())["epoch"] == 2
