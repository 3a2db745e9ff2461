"""`bench infer`: accuracy, top-5 and timing from real checkpoints of tiny real runs, results
that the readers read, and one-line errors for checkpoints the backend cannot read."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from harness import schema as R
from harness.errors import BenchError
from harness.infer import time_predict
from tests.conftest import bench, run_dirs

TINY_RUN = ["--model", "resnet8", "--dataset", "synthetic", "--train-size", "64", "--test-size", "32",
            "--batch-size", "32", "--epochs", "1", "--quiet", "--threads", "1"]
QUICK = ["--batch-sizes", "1,4", "--warmup", "1", "--iters", "3", "--threads", "1"]

_RUNS: dict[str, Path] = {}
_EXPORTED: set[str] = set()


def trained_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One tiny torch and one tiny chainer run (same data, seed and initial weights), made
    once per test session and shared with tests/test_onnx.py."""
    if not _RUNS:
        base = tmp_path_factory.mktemp("trained")
        bench("run", "--backend", "torch", "--backend", "chainer", *TINY_RUN, "--results-dir", str(base), check=True)
        for run in run_dirs(base):
            _RUNS[json.loads((run / R.RUN_JSON).read_text())["backend"]["name"]] = run
    return _RUNS


def exported_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The tiny runs, each with model.onnx written by `bench export` (in this process: the
    frameworks are imported once for the whole test session, not once per command)."""
    from harness.cli import main

    runs = trained_runs(tmp_path_factory)
    for name, run in runs.items():
        if name not in _EXPORTED:
            assert main(["export", str(run), "--format", "onnx"]) == 0
            _EXPORTED.add(name)
    return runs


def cli(capsys: pytest.CaptureFixture, *args: object) -> tuple[int, str, str]:
    """`bench ARGS` in this process: (exit code, stdout, stderr)."""
    from harness.cli import main

    try:
        code = main([str(a) for a in args])
    except SystemExit as exc:  # argparse's usage errors
        code = int(exc.code or 0)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# The tests that use `runs` share one xdist worker: its runs are made once per session, not
# once per worker that needs them.
SHARES_RUNS = pytest.mark.xdist_group("test_infer-runs")


@pytest.fixture(scope="session")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return trained_runs(tmp_path_factory)


def _last_epoch(run: Path) -> pd.Series:
    return pd.read_csv(run / R.EPOCHS_CSV).iloc[-1]


def _one_infer_folder(results: Path) -> R.InferFolder:
    folders = run_dirs(results)
    assert len(folders) == 1 and R.is_infer_folder(folders[0])
    return R.read_infer(folders[0])


@pytest.mark.parametrize("backend", ["torch", "chainer"])
@SHARES_RUNS
def test_infer_native_checkpoint_reproduces_the_runs_accuracy(runs, results, backend, capsys):
    code, out, err = cli(capsys, "infer", runs[backend], *QUICK, "--results-dir", results)
    assert code == 0, err
    folder = _one_infer_folder(results)
    rows, meta = folder.rows, folder.meta
    assert list(rows.columns) == list(R.INFER_COLUMNS)
    assert rows["batch_size"].tolist() == [1, 4] and rows["images"].tolist() == [3, 12]
    assert (rows["backend"] == backend).all() and (rows["model"] == "resnet8").all()
    assert (rows["latency_p50_ms"] <= rows["latency_p99_ms"]).all() and (rows["images_per_s"] > 0).all()
    # Same model, same test images, same batches as the run's last evaluation.
    last = _last_epoch(runs[backend])
    assert rows["top1_acc"].iloc[0] == pytest.approx(last["test_acc"])
    assert rows["top5_acc"].iloc[0] == pytest.approx(last["test_top5_acc"])
    assert meta["kind"] == "infer" and meta["status"] == "completed" and meta["schema_version"] == R.SCHEMA_VERSION
    assert meta["source"]["run_id"] == runs[backend].name and meta["source"]["trained_with"] == backend
    assert meta["dataset"]["matches_source"] and meta["machine"]["cpu_logical_cores"] >= 1
    assert meta["backend"]["versions"][backend] and meta["threads"]["requested"] == 1
    assert "top-1" in out and folder.path.name in out


def test_infer_onnxruntime_rows_sit_beside_the_frameworks(tmp_path_factory, results):
    runs = exported_runs(tmp_path_factory)
    # The console script, for real (onnxruntime imports in a fraction of torch's time).
    bench("infer", str(runs["torch"]), "--backend", "onnxruntime", *QUICK, "--results-dir", str(results), check=True)
    bench("infer", str(runs["chainer"] / "model.onnx"), *QUICK, "--results-dir", str(results), check=True)
    train, infer = R.split_by_kind(R.find_runs([str(results)]))
    assert train == [] and len(infer) == 2
    folders = [R.read_infer(p) for p in infer]
    table = pd.concat([f.rows for f in folders])
    assert set(table["backend"]) == {"onnxruntime"} and len(table) == 4
    for folder in folders:
        session = folder.meta["backend"]["session"]
        assert session["providers"] == ["CPUExecutionProvider"] and session["intra_op_num_threads"] == 1
        assert session["graph_optimization_level"] == "ORT_ENABLE_ALL"
        trained_with = folder.meta["source"]["trained_with"]
        last = _last_epoch(runs[trained_with])
        assert folder.rows["top1_acc"].iloc[0] == pytest.approx(last["test_acc"])
        assert folder.rows["top5_acc"].iloc[0] == pytest.approx(last["test_top5_acc"])


@SHARES_RUNS
def test_top5_for_a_test_index_and_an_image_file(runs, results, tmp_path, capsys):
    code, out, err = cli(capsys, "infer", runs["torch"], "--index", "5", *QUICK, "--batch-sizes", "1",
                         "--results-dir", results)
    assert code == 0, err
    meta = _one_infer_folder(results).meta
    pred = meta["prediction"]
    assert pred["test_index"] == 5 and pred["label_name"] in meta["dataset"]["class_names"]
    probs = [p["probability"] for p in pred["top5"]]
    assert [p["rank"] for p in pred["top5"]] == [1, 2, 3, 4, 5] and probs == sorted(probs, reverse=True)
    assert 0 < sum(probs) <= 1 + 1e-9
    assert f"test image 5 (label {pred['label']} {pred['label_name']})" in out
    for p in pred["top5"]:
        assert f"{p['rank']}. {p['name']}" in out
    from PIL import Image

    picture = tmp_path / "photo.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (48, 40, 3), dtype=np.uint8)).save(picture)
    other = tmp_path / "other"
    code, out, err = cli(capsys, "infer", runs["torch"], "--image", picture, *QUICK, "--batch-sizes", "1",
                         "--results-dir", other)
    assert code == 0, err
    pred = _one_infer_folder(other).meta["prediction"]
    assert pred["image"] == str(picture) and len(pred["top5"]) == 5


def _one_line_error(result: tuple[int, str, str], *fragments: str) -> None:
    code, out, err = result
    assert code == 2, out + err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("bench"), err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@SHARES_RUNS
def test_a_checkpoint_the_backend_cannot_read_is_a_clear_error(runs, results, tmp_path, capsys):
    npz, pt = runs["chainer"] / "checkpoint.npz", runs["torch"] / "checkpoint.pt"
    _one_line_error(cli(capsys, "infer", npz, "--backend", "torch", "--results-dir", results),
                    "chainer checkpoint", "--backend chainer")
    _one_line_error(cli(capsys, "infer", pt, "--backend", "chainer", "--results-dir", results),
                    "torch checkpoint", "--backend torch")
    _one_line_error(cli(capsys, "infer", runs["chainer"], "--backend", "torch", "--results-dir", results),
                    "trained with chainer")
    # Renamed so that only the backend's own reader can tell: still one line, exit 2.
    disguised = tmp_path / "checkpoint.pt"
    shutil.copy(npz, disguised)
    _one_line_error(cli(capsys, "infer", disguised, "--run", runs["torch"], "--results-dir", results),
                    str(disguised))
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(pt.read_bytes()[:4000])
    _one_line_error(cli(capsys, "infer", truncated, "--run", runs["torch"], "--results-dir", results), "damaged")
    assert run_dirs(results) == []  # nothing is created for a command that fails on its input


@SHARES_RUNS
def test_bad_arguments_fail_before_anything_is_written(runs, results, capsys):
    _one_line_error(cli(capsys, "infer", runs["torch"], "--index", "99", "--results-dir", results),
                    "--index 99", "32 images")
    _one_line_error(cli(capsys, "infer", results / "missing", "--results-dir", results), "does not exist")
    _one_line_error(cli(capsys, "infer", runs["torch"], "--batch-sizes", "8,x", "--results-dir", results),
                    "--batch-sizes")
    assert run_dirs(results) == []


# --- no framework needed -------------------------------------------------------------------

class _CountingBackend:
    name = "fake"

    def __init__(self) -> None:
        self.calls: list[int] = []

    def predict(self, images: np.ndarray) -> np.ndarray:
        self.calls.append(len(images))
        return np.zeros((len(images), 10), np.float32)


def test_time_predict_excludes_warmup_and_tiles_the_pool():
    backend = _CountingBackend()
    pool = np.zeros((3, 8, 8, 3), np.uint8)
    rows = list(time_predict(backend, pool, [1, 5], warmup=2, iters=4))  # type: ignore[arg-type]
    assert backend.calls == [1] * 6 + [5] * 6
    assert [r["images"] for r in rows] == [4, 20] and [r["batch_size"] for r in rows] == [1, 5]
    for r in rows:
        assert 0 < r["latency_p50_ms"] <= r["latency_p90_ms"] <= r["latency_p99_ms"]
        assert r["images_per_s"] == pytest.approx(r["batch_size"] / (r["latency_mean_ms"] / 1e3))
        assert set(r) <= set(R.INFER_COLUMNS)


@SHARES_RUNS
def test_read_infer_rejects_training_runs_and_damaged_folders(runs, tmp_path):
    with pytest.raises(BenchError, match="training run"):
        R.read_infer(runs["torch"])
    assert not R.is_infer_folder(runs["torch"]) and not R.is_infer_folder(tmp_path)
    folder = tmp_path / "x"
    folder.mkdir()
    (folder / R.RUN_JSON).write_text(json.dumps({"schema_version": R.SCHEMA_VERSION, "kind": "infer"}))
    with pytest.raises(BenchError, match="no infer.csv"):
        R.read_infer(folder)
    (folder / R.INFER_CSV).write_text("run_id,backend\nx,torch\n")
    with pytest.raises(BenchError, match="lacks columns"):
        R.read_infer(folder)
