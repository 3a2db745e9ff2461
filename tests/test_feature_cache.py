"""``--cache-features``: the frozen backbone runs once per split, and training the head on
its cached outputs gives the uncached run's results, in both backends."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from harness import schema as R
from harness.cli import main
from harness.config import RunConfig
from harness.data import make_synthetic
from harness.errors import BenchError
from harness.feature_cache import cache_identity, cache_path, numpy_head_eval
from tests.conftest import run_dirs

RUN = ["--model", "resnet18", "--image-size", "64", "--freeze", "backbone", "--augment", "none", "--head", "mlp",
       "--dataset", "synthetic", "--train-size", "48", "--test-size", "20", "--batch-size", "16", "--epochs", "2",
       "--lr", "0.05", "--threads", "1", "--quiet"]
COLUMNS = ("train_loss", "train_acc", "test_loss", "test_acc", "test_top5_acc")


@pytest.mark.parametrize("flags, reason", [
    ({}, "needs --freeze backbone"),
    ({"freeze": "backbone"}, "needs --augment none"),  # the default at 64 px augments
    ({"freeze": "backbone", "augment": "crop_flip"}, "augmentation is crop_flip"),
    ({"freeze": "backbone", "augment": "none", "train_bn": True}, "--train-bn"),
    ({"freeze": "backbone", "augment": "none", "no_skip": ("layer2.1",)}, "ablated blocks are re-initialised"),
])
def test_cache_features_is_refused_where_features_change(flags, reason) -> None:
    with pytest.raises(BenchError, match=reason):
        RunConfig(model="resnet18", image_size=64, cache_features=True, **flags).validate()
    RunConfig(model="resnet18", image_size=64, cache_features=True, freeze="backbone", augment="none").validate()


def _rows(results: Path) -> dict[str, list[dict[str, str]]]:
    out = {}
    for run in run_dirs(results):
        rows = R.read_epochs_rows(run / R.EPOCHS_CSV)
        out[rows[0]["backend"]] = rows
    return out


@pytest.mark.parametrize("backend", ["torch", "chainer"])
def test_cached_run_equals_uncached_run(tmp_path, capsys, backend) -> None:
    data = tmp_path / "data"
    args = [*RUN, "--backend", backend, "--data-dir", str(data)]
    assert main(["run", *args, "--results-dir", str(tmp_path / "plain")]) == 0
    assert main(["run", *args, "--cache-features", "--results-dir", str(tmp_path / "cached")]) == 0
    files = sorted((data / "feature-cache").glob("*.npz"))
    assert [f.name.split("-")[:3] for f in files] == [["resnet18", backend, "test"], ["resnet18", backend, "train"]]
    stamps = [f.stat().st_mtime_ns for f in files]
    assert main(["run", *args, "--cache-features", "--results-dir", str(tmp_path / "again")]) == 0
    assert [f.stat().st_mtime_ns for f in files] == stamps  # read, not recomputed
    capsys.readouterr()
    plain, cached, again = (_rows(tmp_path / d)[backend] for d in ("plain", "cached", "again"))
    assert len(plain) == len(cached) == 2
    for p, c, a in zip(plain, cached, again):
        for column in COLUMNS:
            assert float(c[column]) == pytest.approx(float(p[column]), rel=1e-4, abs=1e-6), column
            assert float(a[column]) == float(c[column]), column
    with np.load(files[1]) as train:
        assert train["features"].shape == (48, 512) and train["features"].dtype == np.float32


def test_cache_key_covers_what_the_features_depend_on(tmp_path) -> None:
    dataset = make_synthetic(train_size=8, test_size=4, seed=0, image_size=32)
    backend = SimpleNamespace(name="torch", versions=lambda: {"torch": "2.14.1"})
    prepared = SimpleNamespace(backend=backend, weights={"sha256": "ab" * 32}, spec=SimpleNamespace(image_size=64))
    config = RunConfig(model="resnet18", device="cpu")

    def other(**changes: object) -> SimpleNamespace:
        return SimpleNamespace(**(vars(prepared) | changes))

    base = cache_identity(config, prepared, dataset, 0, "train")
    chainer = SimpleNamespace(name="chainer", versions=lambda: {})
    bigger = make_synthetic(train_size=9, test_size=4, seed=0, image_size=32)
    variants = [
        cache_identity(config, other(weights={"sha256": "cd" * 32}), dataset, 0, "train"),
        cache_identity(config, other(spec=SimpleNamespace(image_size=96)), dataset, 0, "train"),
        cache_identity(config, other(backend=chainer), dataset, 0, "train"),
        cache_identity(RunConfig(model="resnet50"), prepared, dataset, 0, "train"),
        cache_identity(config, prepared, bigger, 0, "train"),
        cache_identity(config, prepared, dataset, 0, "test"),
    ]
    paths = {cache_path(tmp_path, i) for i in [base, *variants]}
    assert len(paths) == 1 + len(variants)
    canonical = other(weights={"source": "none"})  # canonical init: the seed decides the backbone
    assert cache_identity(config, canonical, dataset, 0, "train") != cache_identity(config, canonical, dataset, 1, "train")


def test_numpy_head_matches_a_linear_and_an_mlp_head() -> None:
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((6, 4)).astype(np.float32), np.array([0, 1, 2, 0, 1, 2])
    w, b = rng.standard_normal((3, 4)).astype(np.float32), rng.standard_normal(3).astype(np.float32)
    stats = numpy_head_eval({"fc.weight": w, "fc.bias": b}, "fc", [(x[:4], y[:4]), (x[4:], y[4:])])
    logits = x @ w.T + b
    expected = -(logits[np.arange(6), y] - np.log(np.exp(logits).sum(1))).sum()
    assert stats.count == 6 and stats.loss_sum == pytest.approx(expected, rel=1e-6)
    assert stats.correct == int((logits.argmax(1) == y).sum()) and stats.top5_correct == 6
    w0, b0 = rng.standard_normal((5, 4)).astype(np.float32), rng.standard_normal(5).astype(np.float32)
    mlp = numpy_head_eval({"fc.0.weight": w0, "fc.0.bias": b0, "fc.3.weight": w[:, :1].repeat(5, 1),
                           "fc.3.bias": b}, "fc", [(x, y)])
    hidden = np.maximum(x @ w0.T + b0, 0) @ w[:, :1].repeat(5, 1).T + b
    assert mlp.correct == int((hidden.argmax(1) == y).sum())
