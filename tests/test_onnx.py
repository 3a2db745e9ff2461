"""ONNX export from both frameworks and the onnxruntime backend: the exported model computes
what the framework computes, at batch sizes other than the traced one; damaged and
mismatched files are one-line errors."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from harness.backend import INFERENCE_ONLY, REGISTRY, InputSpec, ModelSpec, OptimSpec, create_backend, load_backend_class  # noqa: E402
from harness.catalogue import model_info  # noqa: E402
from harness.data import load_dataset  # noqa: E402
from harness.errors import BenchError  # noqa: E402
from harness.infer import Loaded, export_onnx, sidecar_path  # noqa: E402
from harness.init_weights import initial_state  # noqa: E402
from tests.conftest import run_dirs  # noqa: E402
from tests.test_infer import cli, exported_runs  # noqa: E402


# The tests that use `runs` share one xdist worker: its runs are made once per session, not
# once per worker that needs them.
SHARES_RUNS = pytest.mark.xdist_group("test_onnx-runs")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    return exported_runs(tmp_path_factory)


def _build(framework: str, name: str, image_size: int, state: dict | None = None) -> Loaded:
    """A model built by a backend with the harness's canonical weights (no run needed)."""
    info = model_info(name)
    spec = ModelSpec(name=name, num_classes=10, image_size=image_size)
    optim, inputs = OptimSpec(name="sgd", lr=0.1), InputSpec(mean=info.mean, std=info.std)
    backend = create_backend(framework)
    threads = backend.configure(device="cpu", threads=1, seed=0)
    backend.build(spec, optim, inputs)
    if state is None:
        state = initial_state({k: tuple(v.shape) for k, v in backend.state_arrays().items()}, 0)
    backend.load_arrays(state)
    return Loaded(backend, spec, optim, inputs, threads)


def _onnxruntime(loaded: Loaded, path: Path):
    runner = create_backend("onnxruntime")
    runner.configure(device="cpu", threads=1, seed=0)
    runner.build(loaded.spec, loaded.optim, loaded.inputs)
    runner.load_checkpoint(path)
    return runner


@pytest.fixture(scope="module")
def resnet18(tmp_path_factory) -> dict[str, tuple[Loaded, Path]]:
    """ResNet-18 at 64 px from both frameworks with the same weights, exported."""
    folder = tmp_path_factory.mktemp("resnet18")
    out: dict[str, tuple[Loaded, Path]] = {}
    state = None
    for framework in ("torch", "chainer"):
        loaded = _build(framework, "resnet18", 64, state)
        state = loaded.backend.state_arrays()
        path = folder / f"{framework}.onnx"
        export_onnx(loaded, path)
        out[framework] = (loaded, path)
    return out


def _dims(path: Path) -> tuple[list, list]:
    graph = onnx.load(str(path)).graph
    shape = lambda v: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]  # noqa: E731
    return [shape(v) for v in graph.input], [shape(v) for v in graph.output]


@SHARES_RUNS
def test_bench_export_writes_checked_models_with_a_dynamic_batch(runs):
    for framework, run in runs.items():
        path = run / "model.onnx"
        onnx.checker.check_model(onnx.load(str(path)), full_check=True)
        assert _dims(path) == ([["batch", 3, 32, 32]], [["batch", 10]])  # weights are not graph inputs
        side = json.loads(sidecar_path(path).read_text())
        assert side["framework"] == framework and side["check"]["ok"] and side["check"]["same_top1"]
        assert side["check"]["max_abs_diff"] < 1e-4 and side["check"]["batch_sizes"] == [1, 4]
        assert side["source"]["run_id"] == run.name and side["source"]["meta"]["settings"]["model"] == "resnet8"
        assert side["opset"] == (18 if framework == "torch" else 11)


@SHARES_RUNS
def test_onnxruntime_matches_the_framework_on_the_test_set(runs):
    """Load the checkpoint and the exported model side by side and compare logits on the
    run's own test images, in one batch of 32 and one of 1."""
    from harness.infer import load_model, resolve_source, run_config

    data = load_dataset("synthetic", data_dir=Path("data"), train_size=64, test_size=32, seed=0)
    for framework, run in runs.items():
        source = resolve_source(run)
        framework_model = load_model(source, run_config(source), device="cpu", threads=1)
        ort_model = load_model(resolve_source(run, backend="onnxruntime"), run_config(source), device="cpu", threads=1)
        want = framework_model.backend.predict(data.test_images)
        got = ort_model.backend.predict(data.test_images)
        assert np.abs(got - want).max() <= 1e-4 * max(1.0, np.abs(want).max())
        np.testing.assert_allclose(ort_model.backend.predict(data.test_images[7:8]), want[7:8], atol=1e-5)


@pytest.mark.parametrize("framework", ["torch", "chainer"])
def test_resnet18_exports_from_both_frameworks(resnet18, framework):
    loaded, path = resnet18[framework]
    side = json.loads(sidecar_path(path).read_text())
    assert side["check"]["ok"] and side["check"]["max_abs_diff"] < 1e-4 and side["source"] == {}
    assert _dims(path) == ([["batch", 3, 64, 64]], [["batch", 10]])
    images = np.random.default_rng(1).integers(0, 256, (3, 64, 64, 3), dtype=np.uint8)
    want = loaded.backend.predict(images)
    got = _onnxruntime(loaded, path).predict(images)
    np.testing.assert_allclose(got, want, atol=1e-4 * max(1.0, np.abs(want).max()))


def test_both_frameworks_export_the_same_function(resnet18):
    images = np.random.default_rng(2).integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
    torch_out, chainer_out = (_onnxruntime(*resnet18[f]).predict(images) for f in ("torch", "chainer"))
    np.testing.assert_allclose(torch_out, chainer_out, atol=1e-4 * max(1.0, np.abs(torch_out).max()))


def test_chainer_flatten_reshape_gets_a_dynamic_batch(tmp_path):
    """small_cnn flattens with reshape(N, -1): onnx_chainer bakes the traced N in; the export
    must turn it into "copy dimension 0" or any other batch size fails in ONNX Runtime."""
    loaded = _build("chainer", "small_cnn", 32)
    side = export_onnx(loaded, tmp_path / "small.onnx")
    assert side["check"]["ok"], side["check"]


def test_onnx_mapping_stand_in_has_what_onnx_chainer_reads():
    from backends.chainer_impl.export import _ensure_onnx_mapping

    _ensure_onnx_mapping()
    import onnx.mapping as mapping

    assert mapping.NP_TYPE_TO_TENSOR_TYPE[np.dtype("float32")] == onnx.TensorProto.FLOAT
    assert mapping.NP_TYPE_TO_TENSOR_TYPE[np.dtype("int64")] == onnx.TensorProto.INT64
    assert mapping.STORAGE_TENSOR_TYPE_TO_FIELD[onnx.TensorProto.FLOAT] == "float_data"
    assert mapping.STORAGE_TENSOR_TYPE_TO_FIELD[onnx.TensorProto.INT64] == "int64_data"


def _one_line_error(result: tuple[int, str, str], *fragments: str) -> None:
    code, out, err = result
    assert code == 2, out + err
    lines = err.strip().splitlines()
    # "bench: error:" from a BenchError, "bench run: error:" from argparse
    assert len(lines) == 1 and lines[0].startswith("bench") and ": error:" in lines[0], err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@SHARES_RUNS
def test_mismatched_or_damaged_onnx_is_a_clear_error(runs, resnet18, tmp_path, capsys):
    results = tmp_path / "results"
    _, r18 = resnet18["torch"]
    _one_line_error(cli(capsys, "infer", r18, "--run", runs["torch"], "--results-dir", results),
                    "different model", "resnet18", "resnet8")
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes((runs["torch"] / "model.onnx").read_bytes()[:20000])
    _one_line_error(cli(capsys, "infer", truncated, "--run", runs["torch"], "--results-dir", results), "damaged")
    # The same bytes under the sidecar's name: caught by its sha256 before ONNX Runtime parses it.
    copy = tmp_path / "run"
    shutil.copytree(runs["chainer"], copy)
    (copy / "model.onnx").write_bytes(truncated.read_bytes())
    _one_line_error(cli(capsys, "infer", copy, "--backend", "onnxruntime", "--results-dir", results),
                    "sha256", "export it again")
    _one_line_error(cli(capsys, "export", runs["torch"], "--out", tmp_path / "x.txt"), "must end in .onnx")
    _one_line_error(cli(capsys, "export", runs["chainer"], "--opset", "13", "--out", tmp_path / "y.onnx"),
                    "--opset 13", "7 to 11")
    assert not (tmp_path / "y.onnx").exists() and run_dirs(results) == []


def test_onnxruntime_is_inference_only(tmp_path, capsys):
    from harness.infer import CHECKPOINT_SUFFIX

    cls = load_backend_class("onnxruntime")
    classes = {n: load_backend_class(n) for n in REGISTRY}
    assert cls.supports_training is False and cls.checkpoint_suffix == ".onnx"
    assert INFERENCE_ONLY == {n for n, c in classes.items() if not c.supports_training}
    assert CHECKPOINT_SUFFIX == {n: c.checkpoint_suffix for n, c in classes.items()}
    # not offered by `bench run` (its --help names the export/infer route instead)
    _one_line_error(cli(capsys, "run", "--backend", "onnxruntime", "--results-dir", tmp_path), "invalid choice")
    backend = cls()
    with pytest.raises(BenchError, match="cannot train"):
        backend.train_epoch([])
    if "cuda" not in {d.name for d in backend.devices() if d.usable}:
        with pytest.raises(BenchError, match="onnxruntime-gpu"):
            backend.configure(device="cuda", threads=None, seed=0)


@SHARES_RUNS
def test_an_onnx_file_travels_with_its_sidecar(runs, tmp_path, capsys):
    """Away from its run folder (another machine), the sidecar's copy of the run's settings
    is enough to rebuild the test set; the accuracy is the run's."""
    import pandas as pd

    from harness import schema as R

    away = tmp_path / "elsewhere"
    away.mkdir()
    shutil.copy(runs["chainer"] / "model.onnx", away / "model.onnx")
    side = json.loads((runs["chainer"] / "model.onnx.json").read_text())
    side["source"]["run_dir"] = str(tmp_path / "gone")
    (away / "model.onnx.json").write_text(json.dumps(side))
    results = tmp_path / "results"
    code, out, err = cli(capsys, "infer", away / "model.onnx", "--batch-sizes", "2", "--iters", "2", "--warmup", "0",
                         "--results-dir", results)
    assert code == 0, err
    folder = R.read_infer(run_dirs(results)[0])
    last = pd.read_csv(runs["chainer"] / R.EPOCHS_CSV).iloc[-1]
    assert folder.rows["top1_acc"].iloc[0] == pytest.approx(last["test_acc"])
    assert folder.meta["source"]["run_dir"] is None and folder.meta["source"]["run_id"] == runs["chainer"].name


@SHARES_RUNS
def test_onnxruntime_evaluate_counts_as_the_harness_does(runs):
    from harness.data.stream import eval_stream
    from harness.infer import accuracy, load_model, resolve_source, run_config

    source = resolve_source(runs["torch"], backend="onnxruntime")
    loaded = load_model(source, run_config(source), device="cpu", threads=1)
    data = load_dataset("synthetic", data_dir=Path("data"), train_size=64, test_size=32, seed=0)
    stats = loaded.backend.evaluate(eval_stream(data.test_images, data.test_labels, batch_size=8))
    acc = accuracy(loaded.backend, data, 32, 8)
    assert stats.count == acc["images"] == 32 and stats.steps == 4
    assert stats.accuracy == acc["top1_acc"] and stats.top5_accuracy == acc["top5_acc"]
    assert np.isfinite(stats.loss) and stats.compute_s > 0
