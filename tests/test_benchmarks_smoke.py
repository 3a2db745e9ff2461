"""Smoke test for benchmarks/: the modules import, each baseline recipe trains a couple of
steps on tiny data, and the comparison script's pieces run, so none of it can rot unnoticed
between `tox -e bench` runs. No timing is asserted; the benchmarks themselves are not run."""
from __future__ import annotations

import importlib
import json
import io
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `pytest` (unlike `python -m pytest`) does not add the repo root
    sys.path.insert(0, str(ROOT))

from harness.data import make_synthetic  # noqa: E402

MODULES = ["benchmarks.support", "benchmarks.conftest", "benchmarks.test_training", "benchmarks.test_inference",
           "benchmarks.test_pipeline", "benchmarks.compare_recipes", "benchmarks.compare_precision",
           "benchmarks.recipes.torch_cifar"]


@pytest.fixture(scope="module")
def tiny():
    return make_synthetic(train_size=128, test_size=32, seed=0, image_size=32)


@pytest.mark.parametrize("name", MODULES)
def test_benchmark_modules_import(name):
    importlib.import_module(name)


def test_benchmarks_stay_out_of_the_test_suite():
    import tomllib

    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    assert "benchmarks" not in " ".join(config["testpaths"])


def test_torch_recipe_runs_two_steps(tiny):
    from benchmarks.recipes import torch_cifar

    lines: list[str] = []
    (result,) = torch_cifar.run(tiny.train_images, tiny.train_labels, epochs=1, depth=8, batch_size=32,
                                max_steps=2, log=lines.append)
    assert result.images == 64 and np.isfinite(result.loss)
    assert lines and lines[0].startswith("Epoch: [0][0/4]")


def test_chainer_recipe_runs_two_steps_with_the_seeds_extensions(tiny, tmp_path):
    pytest.importorskip("backends.chainer_impl._compat")  # chainer, imported the way bench does
    from benchmarks.recipes import chainer_cifar

    train = chainer_cifar.make_dataset(tiny.train_images, tiny.train_labels)
    x, t = train[0]
    assert x.dtype == np.float32 and x.shape == (3, 32, 32) and 0.0 <= x.min() and x.max() <= 1.0
    assert t.dtype == np.int32
    test = chainer_cifar.make_dataset(tiny.test_images, tiny.test_labels)
    trainer, timer = chainer_cifar.build_trainer(train, max_steps=2, test=test, out=tmp_path, depth=8,
                                                 evaluate=True, stream=io.StringIO())
    trainer.run()
    assert trainer.updater.iteration == 2
    assert len(timer.epoch_seconds()) == 2  # 128 images, batch 128: one epoch per step
    assert any(p.name.startswith("snapshot_iter_") for p in tmp_path.iterdir())


def test_compare_script_bare_worker_and_summary():
    from benchmarks import compare_recipes as cr

    args = cr.parse_args(["--frameworks", "torch", "--repeats", "1"])
    assert args.frameworks == ["torch"] and args.epochs == 2
    config = cr._config("torch", train_size=128, test_size=32, epochs=2, model="resnet8")
    bare = cr.worker_bare("torch", config)
    assert [e["images"] for e in bare["epochs"]] == [128, 128]
    fake_bench = {"epochs": [{"images": 256, "seconds": 1.0, "data_wait_s": 0.001, "loop_seconds": 1.01,
                              "epoch_seconds": 1.05, "harness_s": 0.004}] * 2,
                  "threads": {}}
    fake_recipe = {"epochs": [{"images": 256, "seconds": 2.0}] * 2, "threads": {}}
    text = "\n".join(cr.summarise("torch", {"recipe": [fake_recipe], "bench": [fake_bench], "bare": [bare]}, 256, 2))
    assert "bench / recipe: 2.00" in text and "data wait" in text
    assert "harness_s: sampler, progress bar, checkpoint): 0.38 (min-max 0.38-0.38) %   [<= 2%: met]" in text


def test_compare_precision_runs_its_cells_and_judges_only_on_amx(capsys, tmp_path):
    """benchmarks/compare_precision.py end to end on one tiny eager cell pair (no timing
    asserted): the bar is judged from the CPU flags, never from the CPU's name."""
    from benchmarks import compare_precision as cp

    assert cp.bf16_hardware({"avx512f", "amx_bf16", "avx512_bf16"}) == "amx_bf16"
    assert cp.bf16_hardware({"avx512_bf16"}) == "avx512_bf16" and cp.bf16_hardware(set()) == "none"
    out = tmp_path / "runs.json"
    cp.main(["--repeats", "1", "--cells", "fp32/none,bf16-mixed/none", "--train-size", "128", "--test-size", "64",
             "--threads", "1", "--json", str(out)])
    text = capsys.readouterr().out
    assert "bar not judged: fp32/none and bf16-mixed/default were not both measured" in text
    runs = {r["precision"]: r for r in json.loads(out.read_text())}
    assert set(runs) == {"fp32", "bf16-mixed"} and all(r["images_per_s"] > 0 for r in runs.values())
