"""Transfer learning in both backends: the same starting tensors from a torchvision file,
frozen backbones that really stay frozen, ablated blocks that really lose their residual
path, and image-folder datasets end to end through ``bench run``.

Small sizes throughout: resnet18 at 32-64 px, a handful of images.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

from harness import schema as R
from harness.backend import Batch, ModelSpec
from harness.cli import main
from harness.config import RunConfig
from harness.init_weights import initial_state
from harness.train.prepare import prepare_backend
from tests.conftest import run_dirs

BACKENDS = ("torch", "chainer")
ABLATED = ("layer1.1", "layer3.0")  # an identity-shortcut block and a projection-shortcut block


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> dict[str, Path]:
    """Caches in a temporary folder for the whole module (the Chainer conversion is made once),
    and a torchvision resnet18 state_dict file (random weights, real names and shapes)."""
    root = tmp_path_factory.mktemp("transfer")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TORCH_HOME", str(root / "torch-home"))
        mp.setenv("BENCH_CACHE_DIR", str(root / "bench-cache"))
        torch.manual_seed(0)
        pth = root / "r18.pth"
        torch.save(torchvision.models.resnet18().state_dict(), pth)
        yield {"root": root, "pth": pth}


def images(n: int, size: int, seed: int = 0) -> Batch:
    rng = np.random.default_rng(seed)
    return Batch(rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8), rng.integers(0, 3, n).astype(np.int64))


def config(**kw: object) -> RunConfig:
    base: dict = dict(model="resnet18", image_size=32, freeze="backbone", quiet=True, lr=0.05, batch_size=8)
    return RunConfig(**(base | kw)).validate()


def changed(before: dict[str, np.ndarray], after: dict[str, np.ndarray]) -> set[str]:
    return {k for k in before if not np.array_equal(before[k], after[k])}


# ------------------------------------------------------------------------- Same start
def test_both_backends_start_from_the_same_tensors(env) -> None:
    cfg = config(weights=str(env["pth"]), head="mlp", no_skip=ABLATED, backends=list(BACKENDS))
    prepared = [prepare_backend(cfg, name, 0, 3) for name in BACKENDS]
    states = [p.backend.state_arrays() for p in prepared]
    assert not changed(*states)  # bit-identical
    batch = images(4, 32)
    np.testing.assert_allclose(*(p.backend.predict(batch.images) for p in prepared), rtol=1e-4, atol=1e-5)
    # The torchvision backbone was loaded; the new MLP head and the ablated blocks kept the
    # canonical init ("re-initialised and trainable").
    canonical = initial_state({k: v.shape for k, v in states[0].items()}, 0)
    original = torch.load(env["pth"], weights_only=True)
    for name, value in states[0].items():
        fresh = name.startswith("fc.") or any(name.startswith(b + ".") for b in ABLATED)
        np.testing.assert_array_equal(value, canonical[name] if fresh else original[name].numpy(), err_msg=name)
    info = prepared[1].weights
    assert info["reinitialised"] == ["fc", *ABLATED] and info["sha256"] == prepared[0].weights["sha256"]


def test_bench_run_torch_and_chainer_from_one_weights_file(env, tmp_path, capsys) -> None:
    results = tmp_path / "results"
    code = main(["run", "--backend", "torch", "--backend", "chainer", "--model", "resnet18", "--weights",
                 str(env["pth"]), "--freeze", "backbone", "--image-size", "64", "--dataset", "synthetic",
                 "--train-size", "32", "--test-size", "16", "--batch-size", "16", "--epochs", "1",
                 "--augment", "none", "--threads", "1", "--quiet", "--results-dir", str(results)])
    capsys.readouterr()
    assert code == 0
    runs = {json.loads((d / R.RUN_JSON).read_text())["backend"]["name"]: d for d in run_dirs(results)}
    metas = {k: json.loads((d / R.RUN_JSON).read_text()) for k, d in runs.items()}
    for meta in metas.values():
        source = meta["model"]["weights_source"]
        assert source["source"] == "file" and source["path"] == str(env["pth"])
        assert "new, canonical init" in source["head"] and meta["model"]["bn_statistics"] == "frozen"
    assert metas["torch"]["model"]["weights_source"]["sha256"] == metas["chainer"]["model"]["weights_source"]["sha256"]
    losses = [R.read_epochs_rows(runs[b] / R.EPOCHS_CSV)[0]["test_loss"] for b in BACKENDS]
    assert float(losses[0]) == pytest.approx(float(losses[1]), rel=1e-4)


# ------------------------------------------------------------------------- Frozen backbone
@pytest.mark.parametrize("backend", BACKENDS)
def test_frozen_backbone_does_not_change_in_an_epoch(backend) -> None:
    batches = [images(8, 32, seed) for seed in range(2)]
    prepared = prepare_backend(config(no_skip=("layer2.1",)), backend, 0, 3).backend
    before = prepared.state_arrays()
    prepared.train_epoch(batches)
    moved = changed(before, prepared.state_arrays())
    # Only the head and the ablated block (parameters and its own BN statistics) train.
    assert moved and all(k.startswith(("fc.", "layer2.1.")) for k in moved), sorted(moved)
    assert "fc.weight" in moved and "layer2.1.conv1.weight" in moved and "layer2.1.bn1.running_mean" in moved

    train_bn = prepare_backend(config(train_bn=True), backend, 0, 3).backend
    before = train_bn.state_arrays()
    train_bn.train_epoch(batches)
    moved = changed(before, train_bn.state_arrays())
    assert {"bn1.running_mean", "layer4.1.bn2.running_var"} <= moved  # statistics follow the data
    assert all(k.startswith("fc.") or k.endswith(("running_mean", "running_var")) for k in moved), sorted(moved)


# ------------------------------------------------------------------------- Skip ablation
def _torch_branches(block, x):
    """(block output, residual branch F(x), shortcut(x)) of a torch BasicBlock."""
    with torch.no_grad():
        t = torch.from_numpy(x)
        branch = block.bn2(block.conv2(block.relu(block.bn1(block.conv1(t)))))
        short = t if block.downsample is None else block.downsample(t)
        return block(t).numpy(), branch.numpy(), short.numpy()


def _chainer_branches(block, x):
    from backends.chainer_impl._compat import chainer
    import chainer.functions as F

    with chainer.using_config("train", False), chainer.no_backprop_mode():
        branch = block.bn2(block.conv2(F.relu(block.bn1(block.conv1(x)))))
        shortcut = chainer.as_array(x if block.downsample is None else block.downsample(x))
        return block(x).array, branch.array, shortcut


@pytest.mark.parametrize("backend", BACKENDS)
def test_ablated_blocks_have_no_residual_path(backend) -> None:
    """Through the built model's own block objects, each fed what the network feeds it:
    out = relu(F(x) + shortcut(x)) in kept blocks, out = relu(F(x)) in ablated ones. The
    shortcut's contribution is far from zero everywhere, so the two cases are told apart."""
    spec = ModelSpec("resnet18", 3, 32, no_skip=ABLATED)
    image = np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32)
    if backend == "torch":
        from backends.torch_impl.models import build_model
        model = build_model(spec).eval()
        with torch.no_grad():
            x = model.maxpool(model.relu(model.bn1(model.conv1(torch.from_numpy(image))))).numpy()
        blocks = {f"layer{s}.{b}": getattr(model, f"layer{s}")[b] for s in range(1, 5) for b in range(2)}
        branches = _torch_branches
    else:
        from backends.chainer_impl._compat import chainer
        from backends.chainer_impl.models import build_model
        model = build_model(spec)
        with chainer.using_config("train", False):
            x = model.stem(image).array
        blocks = model.blocks()
        branches = _chainer_branches
    assert [b for b in blocks if b in ABLATED] == list(ABLATED)
    for name, block in blocks.items():
        out, branch, shortcut = branches(block, x)
        assert np.abs(shortcut).max() > 0.1, name
        expected = np.maximum(branch if name in ABLATED else branch + shortcut, 0)
        np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5, err_msg=name)
        assert not np.allclose(out, np.maximum(branch + shortcut if name in ABLATED else branch, 0), atol=1e-3)
        x = out


# ------------------------------------------------------------------------- Image folders
def write_folder(root: Path, per_class: dict[str, int]) -> Path:
    seed = 0
    for split, n in per_class.items():
        for label, name in enumerate(("beagle", "collie", "pug")):
            for i in range(n):
                seed += 1
                rng = np.random.default_rng(seed)
                colour = np.array([(60 + 70 * label), 200 - 60 * label, 120])
                pixels = np.clip(colour + rng.normal(0, 20, (30 + 3 * i, 40, 3)), 0, 255).astype(np.uint8)
                path = root / split / name / f"{name}_{i}.jpg"
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(pixels).save(path)
    return root


TRANSFER = ["--image-size", "64", "--freeze", "backbone", "--head", "mlp", "--augment", "none"]


@pytest.mark.parametrize("model, extra", [("small_cnn", ["--image-size", "32"]), ("resnet18", TRANSFER)])
def test_image_folder_runs_end_to_end(tmp_path, capsys, model, extra) -> None:
    root = write_folder(tmp_path / "dogs", {"train": 6, "valid": 2})
    results = tmp_path / "results"
    code = main(["run", "--backend", "torch", "--backend", "chainer", "--model", model, "--dataset",
                 f"imagefolder:{root}", "--epochs", "1", "--batch-size", "6", "--threads", "1", "--quiet",
                 "--results-dir", str(results), *extra])
    assert code == 0, capsys.readouterr().err
    for run in run_dirs(results):
        meta = json.loads((run / R.RUN_JSON).read_text())
        assert meta["status"] == "completed"
        assert meta["dataset"]["class_names"] == ["beagle", "collie", "pug"] and meta["dataset"]["num_classes"] == 3
        assert meta["dataset"]["train_size"] == 18 and meta["dataset"]["test_split"] == "valid"
        row = R.read_epochs_rows(run / R.EPOCHS_CSV)[0]
        assert np.isfinite(float(row["test_loss"]))
    assert len(run_dirs(results)) == 2
