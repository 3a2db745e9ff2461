"""The results schema's writers and readers, on real files."""
import errno
import json
import os
import re
import stat
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from harness import schema as R
from harness.schema import io as io_mod
from harness.errors import BenchError


def _row(epoch, **kw):
    return {"run_id": "r", "backend": "torch", "epoch": epoch, "train_loss": 1.0 / epoch, "status": "ok",
            "gpu_util_mean_pct": None} | kw


def test_appender_writes_header_once_and_rows_pandas_reads(tmp_path):
    path = tmp_path / "epochs.csv"
    w = R.CsvAppender(path, list(R.EPOCH_COLUMNS))
    w.append(_row(1))
    w.close()
    w = R.CsvAppender(path, list(R.EPOCH_COLUMNS))  # reopened (resume): no second header
    w.append(_row(2, train_loss=float("nan")))
    w.close()
    df = pd.read_csv(path)
    assert list(df.columns) == list(R.EPOCH_COLUMNS)
    assert df["epoch"].tolist() == [1, 2]
    assert df["gpu_util_mean_pct"].isna().all()  # not applicable: empty, not zero
    assert pd.isna(df["train_loss"][1])


def test_appender_rejects_unknown_columns(tmp_path):
    w = R.CsvAppender(tmp_path / "e.csv", list(R.EPOCH_COLUMNS))
    with pytest.raises(ValueError, match="not in the schema"):
        w.append({"epoch": 1, "speed": 3})
    w.close()


def test_torn_last_line_is_ignored(tmp_path):
    path = tmp_path / "epochs.csv"
    w = R.CsvAppender(path, list(R.EPOCH_COLUMNS))
    w.append(_row(1))
    w.close()
    with open(path, "a") as f:
        f.write("r,torch,resnet")  # what a crash in the middle of a write could leave
    rows = R.read_epochs_rows(path)
    assert [r["epoch"] for r in rows] == ["1"]


# --- the one atomic write (harness/schema/io.py) ----------------------------------------------

class _DiskFull:
    """os.write that writes ``allow`` bytes, then fails as a full disk (or ``err``) does."""

    def __init__(self, allow: int, err: int = errno.ENOSPC) -> None:
        self.allow = allow
        self.err = err
        self.calls = 0

    def __call__(self, fd, data):
        self.calls += 1
        if self.allow <= 0:
            raise OSError(self.err, os.strerror(self.err))
        n = min(self.allow, len(data))
        self.allow -= n
        return REAL_WRITE(fd, bytes(data[:n]))


REAL_WRITE = os.write


def test_atomic_write_failing_inside_os_write_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "run.json"
    R.write_json(path, {"a": 1})
    full = _DiskFull(allow=5, err=errno.EIO)  # part of the new file reaches the temporary, then it fails
    monkeypatch.setattr(io_mod.os, "write", full)
    with pytest.raises(OSError, match="Input/output error"):
        R.write_json(path, {"a": 2, "pad": "x" * 100})
    assert full.calls >= 2  # the failure happened inside the write loop, after bytes were written
    monkeypatch.undo()
    assert json.loads(path.read_text()) == {"a": 1}
    assert os.listdir(tmp_path) == ["run.json"]  # the temporary is gone


def test_atomic_write_failing_in_fsync_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "epochs.csv"
    R.atomic_write_bytes(path, b"old\n")

    def fsync(fd):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(io_mod.os, "fsync", fsync)
    with pytest.raises(OSError, match="Input/output"):
        R.atomic_write_bytes(path, b"new\n")
    monkeypatch.undo()
    assert path.read_bytes() == b"old\n"
    assert os.listdir(tmp_path) == ["epochs.csv"]


def test_short_writes_are_completed(tmp_path, monkeypatch):
    calls = []

    def dribble(fd, data):  # the kernel may take fewer bytes than asked and return the count
        calls.append(len(data))
        return REAL_WRITE(fd, bytes(data[:3]))

    monkeypatch.setattr(io_mod.os, "write", dribble)
    data = bytes(range(256)) * 4
    R.atomic_write_bytes(tmp_path / "f.bin", data)
    w = R.CsvAppender(tmp_path / "e.csv", list(R.EPOCH_COLUMNS), durable=False)
    w.append(_row(1))
    w.close()
    monkeypatch.undo()
    assert (tmp_path / "f.bin").read_bytes() == data
    assert len(calls) > len(data) // 3
    assert R.read_epochs_rows(tmp_path / "e.csv")[0]["train_loss"] == "1.0"


def test_atomic_path_fsyncs_file_and_folder_and_cleans_up(tmp_path, monkeypatch):
    """Writers that need a file name (torch.save, np.savez, ONNX, downloads) get a temporary
    path; on success the file and then its folder are fsync'd; on an error nothing is left."""
    synced = []
    real_fsync = os.fsync

    def fsync(fd):
        synced.append("dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file")
        real_fsync(fd)

    monkeypatch.setattr(io_mod.os, "fsync", fsync)
    target = tmp_path / "checkpoint.pt"
    with R.atomic_path(target) as tmp:
        assert tmp.parent == tmp_path and tmp != target
        tmp.write_bytes(b"state 1")
    assert synced == ["file", "dir"] and target.read_bytes() == b"state 1"
    with pytest.raises(RuntimeError, match="framework failed"):
        with R.atomic_path(target) as tmp:
            with open(tmp, "wb") as f:
                f.write(b"half a checkp")
            raise RuntimeError("framework failed mid-save")
    assert target.read_bytes() == b"state 1"
    assert os.listdir(tmp_path) == ["checkpoint.pt"]
    assert oct(target.stat().st_mode & 0o777) == oct(io_mod.FILE_MODE)  # not mkstemp's 0600


def test_no_other_temp_file_then_rename_writer():
    """One mechanism: every rename into place in harness/ and backends/ is harness/schema/io.py's."""
    root = Path(__file__).resolve().parents[1]
    offenders = []
    for folder in ("harness", "backends"):
        for path in (root / folder).rglob("*.py"):
            if path == root / "harness" / "schema" / "io.py":
                continue
            for n, line in enumerate(path.read_text().splitlines(), 1):
                if re.search(r"os\.replace\(|os\.rename\(|\.rename\(|\.replace\(tmp|\.tmp[\"']", line):
                    offenders.append(f"{path.relative_to(root)}:{n}: {line.strip()}")
    assert not offenders, offenders


def test_json_refuses_nan_before_touching_the_file(tmp_path):
    path = tmp_path / "run.json"
    R.write_json(path, {"a": 1})
    with pytest.raises(ValueError):
        R.write_json(path, {"a": float("nan")})
    assert json.loads(path.read_text()) == {"a": 1} and os.listdir(tmp_path) == ["run.json"]


# --- run.json: one builder, one reader ---------------------------------------------------------

def _meta(**sections):
    return R.build_meta(
        run_id="r1", command="bench run", settings={"backend": "torch", "model": "resnet20"},
        machine={"machine_id": "m", "hostname": "h"}, threads=R.threads_section(2, {"torch_num_threads": 2}),
        backend={"name": "torch", "versions": {"torch": "2"}},
        model={"name": "resnet20", "params": 10, "train_flops_per_image": 4.1e7},
        dataset={"name": "synthetic", "sha256": "0" * 64}, **sections)


def test_typed_meta_round_trips_through_writer_and_reader(tmp_path):
    meta = _meta(seed=3, group="g", repeat_index=0, world_size=1, epochs_completed=0, resumes=[])
    assert meta["schema_version"] == R.SCHEMA_VERSION and meta["status"] == R.RUNNING
    assert meta["ended_at"] is None and meta["error"] is None
    assert set(meta) <= set(R.RunMeta.__annotations__)
    folder = tmp_path / "r1"
    folder.mkdir()
    R.write_json(folder / R.RUN_JSON, meta)
    assert R.read_meta(folder) == meta
    infer = _meta(kind=R.KIND_INFER, source={"run_id": "r0"}, timing={}, accuracy=None, prediction=None)
    R.write_json(folder / R.RUN_JSON, infer)
    assert R.read_meta(folder) == infer and R.is_infer_folder(folder)


def test_builder_refuses_a_section_the_schema_lacks():
    with pytest.raises(TypeError, match="no section.*flops_per_image"):
        _meta(flops_per_image=1.0)


@pytest.mark.parametrize("change, message", [
    ({"settings": [1]}, "'settings' is not an object"),
    ({"run_id": 7}, "'run_id' is not a string"),
    ({"status": "exploded"}, "status 'exploded' is not one of"),
    ({"epochs_completed": True}, "'epochs_completed' is not an integer"),
    ({"kind": "bake"}, "kind 'bake' is not train or infer"),
])
def test_reader_validates_run_json(tmp_path, change, message):
    folder = tmp_path / "r"
    folder.mkdir()
    (folder / R.RUN_JSON).write_text(json.dumps(dict(_meta()) | change))
    with pytest.raises(BenchError, match=message):
        R.read_meta(folder)


def _make_run(folder, version=R.SCHEMA_VERSION):
    folder.mkdir()
    R.write_json(folder / R.RUN_JSON, {"schema_version": version, "run_id": folder.name})
    w = R.CsvAppender(folder / R.EPOCHS_CSV, list(R.EPOCH_COLUMNS))
    w.append(_row(1))
    w.close()
    return folder


def test_read_run_validates(tmp_path):
    run = R.read_run(_make_run(tmp_path / "ok"))
    assert run.epochs["epoch"].tolist() == [1]
    with pytest.raises(BenchError, match="no run.json"):
        R.read_run(tmp_path)
    with pytest.raises(BenchError, match="schema version 99"):
        R.read_run(_make_run(tmp_path / "future", version=99))
    bad = _make_run(tmp_path / "bad")
    (bad / R.RUN_JSON).write_text("{not json")
    with pytest.raises(BenchError, match="not valid JSON"):
        R.read_run(bad)
    cols = _make_run(tmp_path / "cols")
    (cols / R.EPOCHS_CSV).write_text("epoch,loss\n1,2\n")
    with pytest.raises(BenchError, match="lacks columns"):
        R.read_run(cols)


def test_find_runs_expands_trees_and_globs(tmp_path):
    a, b = _make_run(tmp_path / "a"), _make_run(tmp_path / "b")
    assert R.find_runs([str(tmp_path)]) == [a, b]
    assert R.find_runs([str(tmp_path / "*")]) == [a, b]
    with pytest.raises(BenchError, match="no run folders match"):
        R.find_runs([str(tmp_path / "zzz*")])


def test_version_1_folders_read_with_the_later_columns_empty(tmp_path):
    """Folders from before harness_s (schema 1) still compare and report; resuming one is refused."""
    folder = tmp_path / "v1"
    folder.mkdir()
    R.write_json(folder / R.RUN_JSON, {"schema_version": 1, "run_id": "v1", "status": "interrupted",
                                       "settings": {}})
    v1_columns = [c for c in R.EPOCH_COLUMNS if c not in R.ADDED_IN_VERSION]
    w = R.CsvAppender(folder / R.EPOCHS_CSV, v1_columns)
    w.append({k: v for k, v in _row(1).items() if k in v1_columns})
    w.close()
    run = R.read_run(folder)
    assert run.epochs["harness_s"].isna().all() and run.epochs["epoch"].tolist() == [1]
    from harness.train import session

    with pytest.raises(BenchError, match="results schema 1.*resume it with that version"):
        session.resume_command(folder, {}, "bench run --resume v1", quiet=True)


def test_version_2_folders_read_and_compare_with_the_validation_columns_empty(tmp_path):
    """Round-2 folders (schema 2: harness_s, but every epoch evaluated on test) still read,
    compare and report beside schema-3 runs; their valid_* columns read as empty."""
    from tests.conftest import bench
    from tests.run_fixtures import write_synthetic_run

    folder = write_synthetic_run(tmp_path / "v2")
    meta = json.loads((folder / R.RUN_JSON).read_text())
    R.write_json(folder / R.RUN_JSON, meta | {"schema_version": 2})
    rows = R.read_epochs_rows(folder / R.EPOCHS_CSV)
    v2 = [c for c in R.EPOCH_COLUMNS if R.ADDED_IN_VERSION.get(c, 1) <= 2]
    assert "harness_s" in v2 and "valid_acc" not in v2
    (folder / R.EPOCHS_CSV).unlink()
    writer = R.CsvAppender(folder / R.EPOCHS_CSV, v2, durable=False)
    for row in rows:
        writer.append({k: v for k, v in row.items() if k in v2})
    writer.close()
    run = R.read_run(folder)
    assert run.epochs["valid_acc"].isna().all() and run.epochs["test_acc"].notna().all()
    assert bench("compare", str(folder), check=True).returncode == 0


# --- a full disk: one line naming the file, the old file kept (issue 13, item 4) ----------------

def test_disk_full_in_a_write_is_one_line_naming_the_file(tmp_path, monkeypatch):
    path = tmp_path / "run.json"
    R.write_json(path, {"a": 1})
    monkeypatch.setattr(io_mod.os, "write", _DiskFull(allow=10))
    with pytest.raises(io_mod.DiskFull, match=r"cannot write .*run\.json: its filesystem is full \(.* MiB free, "
                                              r"about .* MiB needed\)") as info:
        R.write_json(path, {"a": 2, "pad": "x" * 100})
    monkeypatch.undo()
    assert isinstance(info.value, BenchError) and "\n" not in str(info.value)
    assert json.loads(path.read_text()) == {"a": 1} and os.listdir(tmp_path) == ["run.json"]


def test_disk_full_in_a_csv_row_leaves_no_torn_row(tmp_path, monkeypatch):
    path = tmp_path / "epochs.csv"
    w = R.CsvAppender(path, list(R.EPOCH_COLUMNS))
    w.append(_row(1))
    monkeypatch.setattr(io_mod.os, "write", _DiskFull(allow=7))  # 7 bytes of the row, then full
    with pytest.raises(io_mod.DiskFull, match="epochs.csv"):
        w.append(_row(2))
    monkeypatch.undo()
    w.append(_row(3))  # space freed: the next row follows the last whole one
    w.close()
    assert [r["epoch"] for r in R.read_epochs_rows(path)] == ["1", "3"]
    assert len(path.read_text().splitlines()) == 3


@pytest.fixture
def small_fs(tmp_path):
    """A real 2 MiB filesystem (tmpfs), where mounting is allowed (root on Linux)."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)],
                                            capture_output=True).returncode != 0:
        pytest.skip("mounting a small tmpfs needs root and mount permission")
    try:
        yield mnt
    finally:
        # lazy: a failed torch.save's writer may still hold its (deleted) temporary open
        subprocess.run(["umount", "-l", str(mnt)], check=True)


def test_framework_writer_on_a_full_disk(small_fs):
    """torch.save reports a full disk as RuntimeError without errno: still DiskFull, the old
    checkpoint intact, no temporary left."""
    torch = pytest.importorskip("torch")
    target = small_fs / "checkpoint.pt"
    with R.atomic_path(target) as tmp:
        torch.save({"w": torch.zeros(1000)}, tmp)
    before = target.read_bytes()
    with pytest.raises(io_mod.DiskFull, match=r"checkpoint\.pt: its filesystem is full"):
        with R.atomic_path(target) as tmp:
            torch.save({"w": torch.zeros(1 << 20)}, tmp)  # 4 MiB into 2 MiB
    assert target.read_bytes() == before
    assert sorted(os.listdir(small_fs)) == ["checkpoint.pt"]
