"""The results schema's writers and readers, on real files."""
import json
import os

import pandas as pd
import pytest

from harness import schema as R
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


def test_atomic_write_leaves_old_file_on_failure(tmp_path):
    path = tmp_path / "run.json"
    R.write_json(path, {"a": 1})
    with pytest.raises(TypeError):
        R.write_json(path, {"a": object()})
    assert json.loads(path.read_text()) == {"a": 1}
    assert os.listdir(tmp_path) == ["run.json"]  # no temp file left behind


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
