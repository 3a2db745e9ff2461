"""`bench compare` and `bench report` on `bench infer` folders (torch, chainer, onnxruntime),
alone and mixed with training runs: the real subprocess CLI on real folders."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from harness import schema as R
from tests.conftest import bench, run_dirs
from tests.test_infer import QUICK, exported_runs

pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    """Training runs (torch, chainer) and an inference folder per backend, in one results tree."""
    runs = exported_runs(tmp_path_factory)
    out = tmp_path_factory.mktemp("infer-results")
    from harness.cli import main

    sources = {"torch": runs["torch"], "chainer": runs["chainer"], "onnxruntime": runs["torch"] / "model.onnx"}
    made: dict[str, Path] = {}
    for backend, source in sources.items():
        before = set(run_dirs(out))
        assert main(["infer", str(source), *QUICK, "--results-dir", str(out)]) == 0
        (made[backend],) = set(run_dirs(out)) - before
    return made | {"train_torch": runs["torch"], "train_chainer": runs["chainer"], "infer_root": out}


def test_compare_reads_inference_folders(folders):
    proc = bench("compare", str(folders["infer_root"]), "--format", "json", check=True)
    rows = json.loads(proc.stdout)
    assert {(r["backend"], r["batch_size"]) for r in rows} == {(b, s) for b in ("torch", "chainer", "onnxruntime")
                                                             for s in (1, 4)}
    for r in rows:
        csv = pd.read_csv(Path(r["path"]) / R.INFER_CSV)
        want = csv[csv["batch_size"] == r["batch_size"]].iloc[0]
        assert r["images_per_s"] == pytest.approx(want["images_per_s"])
        assert r["latency_p50_ms"] == pytest.approx(want["latency_p50_ms"])
        torch_row = next(t for t in rows if t["backend"] == "torch" and t["batch_size"] == r["batch_size"])
        assert r["vs_reference"] == pytest.approx(r["images_per_s"] / torch_row["images_per_s"])
    assert {r["trained_with"] for r in rows if r["backend"] == "onnxruntime"} == {"torch"}
    text = bench("compare", str(folders["infer_root"]), check=True).stdout
    assert "p50 ms" in text and "onnxruntime" in text and "Training" not in text


def test_compare_mixes_training_and_inference(folders):
    paths = [str(folders[k]) for k in ("train_torch", "train_chainer", "torch", "onnxruntime")]
    text = bench("compare", *paths, check=True).stdout
    assert text.index("Training") < text.index("train img/s") < text.index("Inference") < text.index("p50 ms")
    both = json.loads(bench("compare", *paths, "--format", "json", check=True).stdout)
    assert len(both["training"]) == 2 and len(both["inference"]) == 4
    proc = bench("compare", *paths, "--format", "csv")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "separate" in proc.stderr


def test_report_has_an_inference_section_and_figure(folders, tmp_path):
    out = tmp_path / "report"
    paths = [str(folders[k]) for k in ("train_torch", "train_chainer", "torch", "chainer", "onnxruntime")]
    bench("report", *paths, "--out", str(out), check=True)
    md = (out / "report.md").read_text()
    assert "## Inference" in md and "inference.png" in md and (out / "inference.png").stat().st_size > 10_000
    assert "2 training runs and 3 inference runs" in md
    assert "answers in" in md  # the batch-1 latency sentence
    assert "onnxruntime ran the torch-trained resnet8" in md and "x as fast at batch 1 (" in md
    assert "scores the same top-1 in onnxruntime and torch" in md  # one trained model, two backends
    infer_only = tmp_path / "infer-only"
    bench("report", str(folders["infer_root"]), "--out", str(infer_only), check=True)
    md = (infer_only / "report.md").read_text()
    assert md.startswith("# bench report: inference of resnet8") and "## Results" not in md
    assert "## Environment" in md and "bench infer" in md  # the recorded commands


def test_a_glob_over_a_results_folder_passes_over_the_report_folder(folders, tmp_path):
    """`bench report results/*` after a report was written into results/report."""
    (folders["infer_root"] / "report").mkdir(exist_ok=True)
    proc = bench("compare", str(folders["infer_root"] / "*"), check=True)
    assert "onnxruntime" in proc.stdout
    proc = bench("compare", str(folders["infer_root"] / "report"))
    assert proc.returncode == 2 and "holds none" in proc.stderr


def test_inference_folders_line_up_across_machines(folders, tmp_path):
    """A copy of each inference folder that claims another machine: every key on both, the
    headline is images/s at the largest batch size, the ratio 1."""
    from harness.report import compare as C
    from harness.report import lineup as L

    import shutil

    for backend in ("torch", "onnxruntime"):
        copy = tmp_path / "other" / folders[backend].name
        shutil.copytree(folders[backend], copy)
        meta = R.read_meta(copy)
        meta["machine"].update(machine_id="feedfacecafe", hostname="lab-pc", gpus=[{"name": "NVIDIA A10G"}])
        R.write_json(copy / R.RUN_JSON, meta)
    runs, infers = C.load_all([str(folders["torch"]), str(folders["onnxruntime"]), str(tmp_path / "other")])
    lu = L.line_up(runs, infers)
    assert len(lu.keys) == 2 and len(lu.shared) == 2 and not lu.partial  # torch and onnxruntime: two keys
    assert [m.label for m in lu.machines][1] == "A10G"
    for row in lu.keys:
        assert row.kind == "infer"
        csv = pd.read_csv(folders["torch" if "torch" in row.description else "onnxruntime"] / R.INFER_CSV)
        assert row.entries[lu.baseline.id].figures["images_per_s"] == pytest.approx(
            csv.sort_values("batch_size")["images_per_s"].iloc[-1])
        assert all(r == pytest.approx(1.0) for r in row.ratios.values())
    assert lu.geomean[lu.machines[1].id] == pytest.approx(1.0)
