"""The Chainer backend with real Chainer at tiny sizes (resnet8, 32 px, at most a few hundred
images): Chainer trains on the CPU through numpy, ~100 img/s for resnet8 on 2 cores.

ImageNet ResNets are built (Chainer has no shape-only device) but never run; their state
names are compared with torchvision's, which torch builds on the ``meta`` device for free.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from backends.chainer_impl import blas, optimizers, weights
from backends.chainer_impl._compat import chainer
from backends.chainer_impl.backend import ChainerBackend
from backends.chainer_impl.models import build_model, resnet_cifar
from harness.backend import Batch, InputSpec, ModelSpec, OptimSpec
from harness.catalogue import CIFAR_MEAN, CIFAR_STD, MODELS
from harness.errors import BenchError
from harness.init_weights import initial_state

ROOT = Path(__file__).resolve().parents[1]
CIFAR_INPUTS = InputSpec(CIFAR_MEAN, CIFAR_STD)
SGD = OptimSpec("sgd", lr=0.05, momentum=0.9, weight_decay=5e-4)


def make_backend(name: str = "resnet8", *, classes: int = 4, size: int = 32,
                 optim: OptimSpec = SGD, seed: int = 0, **spec: object) -> ChainerBackend:
    backend = ChainerBackend()
    backend.configure(device="cpu", threads=None, seed=seed)
    backend.build(ModelSpec(name, classes, size, **spec), optim, CIFAR_INPUTS)
    shapes = {k: v.shape for k, v in backend.state_arrays().items()}
    backend.load_arrays(initial_state(shapes, seed))  # as the harness does
    return backend


def shape_batches(n: int = 128, *, classes: int = 4, size: int = 32, batch: int = 32,
                  seed: int = 0) -> list[Batch]:
    """Learnable images: each class has its own colour and its own shape (square, horizontal
    bars, vertical bars, cross) at a random place, on a noisy grey background."""
    palette = np.random.default_rng(1234).uniform(40, 215, size=(classes, 3))
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, n)
    images = rng.normal(128, 25, (n, size, size, 3))
    yy, xx = np.mgrid[0:12, 0:12]
    masks = [np.ones((12, 12), bool), yy % 4 < 2, xx % 4 < 2, (abs(yy - 6) < 2) | (abs(xx - 6) < 2)]
    for i, label in enumerate(labels):
        top, left = rng.integers(0, size - 12, 2)
        patch = images[i, top:top + 12, left:left + 12]
        patch[masks[label % len(masks)]] = palette[label]
    images = np.clip(images, 0, 255).astype(np.uint8)
    return [Batch(images[i:i + batch], labels[i:i + batch].astype(np.int64)) for i in range(0, n, batch)]


def changed(before: dict[str, np.ndarray], after: dict[str, np.ndarray]) -> set[str]:
    return {k for k in before if not np.array_equal(before[k], after[k])}


# ------------------------------------------------------------------------- Import
def test_import_needs_no_setuptools_env_and_warns_nothing() -> None:
    """chainer's import-time check imports numpy.distutils, which setuptools >= 74 broke;
    backends.chainer_impl._compat must make the import work in a fresh interpreter."""
    env = {k: v for k, v in os.environ.items() if k != "SETUPTOOLS_USE_DISTUTILS"}
    proc = subprocess.run([sys.executable, "-W", "error", "-c", "import backends.chainer_impl.backend"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "pkg_resources" not in proc.stderr


# ------------------------------------------------------------------------- Models
def test_resnet20_parameter_counts() -> None:
    count = lambda m: sum(p.size for p in m.params())  # noqa: E731
    assert count(resnet_cifar(depth=20, num_classes=10, shortcut="A")) == 269_722  # paper: "0.27M"
    assert count(resnet_cifar(depth=20, num_classes=10, shortcut="B")) == 272_474  # + 2 projections


def test_cifar_resnet_names_and_shortcuts() -> None:
    a = weights.state_shapes(build_model(ModelSpec("resnet8", 10, 32, shortcut="A")))
    b = weights.state_shapes(build_model(ModelSpec("resnet8", 10, 32, shortcut="B")))
    assert list(a)[:5] == ["conv1.weight", "bn1.weight", "bn1.bias", "bn1.running_mean", "bn1.running_var"]
    assert a["layer2.0.conv1.weight"] == (32, 16, 3, 3) and a["fc.weight"] == (10, 64)
    assert not any("downsample" in k for k in a)
    assert set(b) - set(a) == {f"layer{s}.0.downsample.{i}.{leaf}" for s in (2, 3) for i, leaf in
                               [(0, "weight"), (1, "weight"), (1, "bias"), (1, "running_mean"), (1, "running_var")]}
    assert b["layer3.0.downsample.0.weight"] == (64, 32, 1, 1)
    bn = build_model(ModelSpec("resnet8", 10, 32)).bn1
    assert (bn.eps, bn.decay) == (1e-5, 0.9)  # torch's BatchNorm2d, not Chainer's 2e-5


@pytest.mark.parametrize("name", [n for n, i in MODELS.items() if i.family == "resnet_imagenet"])
def test_imagenet_resnets_match_torchvision(name: str) -> None:
    torch = pytest.importorskip("torch")
    torchvision = pytest.importorskip("torchvision")
    with torch.device("meta"):
        reference = torchvision.models.get_model(name, num_classes=7).state_dict()
    expected = {k: tuple(v.shape) for k, v in reference.items() if not k.endswith("num_batches_tracked")}
    assert list(weights.state_shapes(build_model(ModelSpec(name, 7, 224)))) == list(expected)
    assert weights.state_shapes(build_model(ModelSpec(name, 7, 224))) == expected


def test_imagenet_forward_sizes_and_mlp_head() -> None:
    model = build_model(ModelSpec("resnet18", 5, 64, head="mlp"))
    names = weights.chainer_to_canonical(model)
    assert names["/layer1/0/conv1/W"] == "layer1.0.conv1.weight"
    assert names["/fc/0/W"] == "fc.0.weight" and names["/fc/1/b"] == "fc.3.bias"
    with chainer.using_config("train", False):
        x = np.zeros((2, 3, 64, 64), np.float32)
        assert model.forward_features(x).shape == (2, 512)
        assert model(x).shape == (2, 5)
        # cover_all=False: 56 -> 28 after the stem's max pool, as in torch (Chainer's default gives 29).
        assert model.stem(np.zeros((1, 3, 112, 112), np.float32)).shape == (1, 64, 28, 28)


def test_small_cnn_shapes() -> None:
    model = build_model(ModelSpec("small_cnn", 10, 32))
    shapes = weights.state_shapes(model)
    assert shapes["fc1.weight"] == (512, 64 * 4 * 4) and shapes["conv1.bias"] == (16,)
    with chainer.using_config("train", False):
        assert model.forward_features(np.zeros((2, 3, 32, 32), np.float32)).shape == (2, 256)
    with pytest.raises(BenchError, match="no residual blocks"):
        build_model(ModelSpec("small_cnn", 10, 32, no_skip=("layer1.0",)))
    with pytest.raises(BenchError, match="fixed classifier"):
        build_model(ModelSpec("small_cnn", 10, 32, head="mlp"))


def test_no_skip_names_and_effect() -> None:
    with pytest.raises(BenchError, match=r"layer4\.0.*layer1\.0 \.\. layer3\.0"):
        build_model(ModelSpec("resnet8", 10, 32, no_skip=("layer4.0",)))
    plain, ablated = make_backend(), make_backend(no_skip=("layer2.0",))
    assert not ablated.model.layer2[0].use_skip and ablated.model.layer1[0].use_skip
    ablated.load_arrays(plain.state_arrays())
    images = shape_batches(8, batch=8)[0].images
    assert not np.allclose(plain.predict(images), ablated.predict(images))


# ------------------------------------------------------------------------- Environment
def test_devices_versions_and_cuda_error() -> None:
    backend = ChainerBackend()
    versions = backend.versions()
    assert versions["chainer"] == chainer.__version__ and versions["numpy"] == np.__version__
    devices = backend.devices()
    assert devices[0].name == "cpu" and devices[0].usable
    with pytest.raises(BenchError, match="unknown device"):
        backend.configure(device="tpu", threads=None, seed=0)
    cuda = [d for d in devices if d.name.startswith("cuda")]
    if all(d.usable for d in cuda):  # CuPy and a GPU: each GPU named, and --device cuda used
        assert versions["cupy"] and all(d.detail for d in cuda)
        assert backend.configure(device="cuda", threads=None, seed=0)["autotune"] is True
        with pytest.raises(BenchError, match=r"only \d+ CUDA device"):
            backend.configure(device=f"cuda:{len(cuda)}", threads=None, seed=0)
        return
    (unusable,) = cuda  # one entry saying why not, and --device cuda refused in those words
    with pytest.raises(BenchError, match="CUDA was requested but .*use --device cpu"):
        backend.configure(device="cuda", threads=None, seed=0)
    if not chainer.backends.cuda.available:  # CuPy missing: the package to install is named
        assert versions["cupy"] == "" and "pip install cupy" in unusable.detail


def test_thread_setting_with_and_without_threadpoolctl(monkeypatch) -> None:
    before = blas.blas_threads()
    try:
        report = ChainerBackend().configure(device="cpu", threads=1, seed=0)
        # whichever BLAS numpy was built with (OpenBLAS from PyPI, MKL from conda, ...)
        assert report["blas_threads"] == 1 and report["blas"] == blas.blas_name() != "unknown"
        monkeypatch.setitem(sys.modules, "threadpoolctl", None)  # import fails: ctypes fallback
        how = blas.set_blas_threads(2)
        if blas._loaded_openblas() is not None:  # the fallback calls OpenBLAS's own setter
            assert how == "openblas_set_num_threads" and blas.blas_threads() == 2
        else:  # no fallback for other libraries: it says so instead of claiming a setting
            assert how.startswith("not set") and "OMP_NUM_THREADS" in how
    finally:
        blas.set_blas_threads(before or 2)


# ------------------------------------------------------------------------- Optimisers
def _one_param_optimizer(optimizer: chainer.Optimizer, p0: np.ndarray) -> chainer.Link:
    link = chainer.Link()
    with link.init_scope():
        link.p = chainer.Parameter(p0.copy())
    optimizer.setup(link)
    return link


def test_sgd_momentum_rescaled_on_lr_change_matches_torch_formula() -> None:
    """torch: buf = m*buf + g + wd*p; p -= lr*buf. Chainer's v = m*v - lr*g only equals
    -lr*buf while lr is constant; set_lr rescales v so the next step is torch's."""
    m, wd, p0 = 0.9, 0.01, np.array([1.0, -2.0, 0.5])
    grads = [np.array([0.3, -0.1, 0.2]), np.array([-0.5, 0.4, 0.1]), np.array([0.2, 0.2, -0.3])]
    lrs = [0.1, 0.1, 0.02]
    p, buf = p0.copy(), np.zeros(3)  # by hand, torch.optim.SGD's formula
    for g, lr in zip(grads, lrs):
        buf = m * buf + (g + wd * p)
        p = p - lr * buf
    naive, v = p0.copy(), np.zeros(3)  # by hand, Chainer's formula without the rescale
    for g, lr in zip(grads, lrs):
        v = m * v - lr * (g + wd * naive)
        naive = naive + v
    assert not np.allclose(naive, p, rtol=1e-6)  # so the rescale is what makes them agree

    sgd = optimizers.TorchSGD(lr=lrs[0], momentum=m)
    link = _one_param_optimizer(sgd, p0)
    sgd.add_hook(chainer.optimizer_hooks.WeightDecay(wd))
    for g, lr in zip(grads, lrs):
        optimizers.set_lr(sgd, lr)
        link.p.grad = g.copy()
        sgd.update()
    np.testing.assert_allclose(link.p.array, p, rtol=1e-12)
    np.testing.assert_allclose(link.p.update_rule.state["v"], -lrs[-1] * buf, rtol=1e-12)


def test_adam_matches_torch_formula_including_eps() -> None:
    b1, b2, eps, lr, wd = 0.9, 0.999, 1e-8, 1e-3, 0.01
    p0 = np.array([1.0, -2.0, 0.5, 1e-3])
    grads = [np.array([1e-7, -0.1, 0.2, 0.0]), np.array([-2e-7, 0.4, 0.1, 1e-9]), np.array([3e-8, 0.2, -0.3, 0.0])]
    p, m, v = p0.copy(), np.zeros(4), np.zeros(4)
    for t, g in enumerate(grads, start=1):  # torch.optim.Adam, weight_decay = coupled L2
        g = g + wd * p
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        denom = np.sqrt(v) / np.sqrt(1 - b2 ** t) + eps
        p = p - lr / (1 - b1 ** t) * m / denom
    adam = optimizers.TorchAdam(alpha=lr)
    link = _one_param_optimizer(adam, p0)
    adam.add_hook(chainer.optimizer_hooks.WeightDecay(wd))
    for g in grads:
        link.p.grad = g.copy()
        adam.update()
    np.testing.assert_allclose(link.p.array, p, rtol=1e-12, atol=1e-15)


def test_unknown_optimizer_is_a_bench_error() -> None:
    with pytest.raises(BenchError, match="sgd, adam"):
        ChainerBackend().build(ModelSpec("resnet8", 4, 32), OptimSpec("rmsprop", 0.1), CIFAR_INPUTS)


# ------------------------------------------------------------------------- Training


def test_load_arrays_accepts_torchvision_extras() -> None:
    """A torchvision state_dict carries num_batches_tracked, which Chainer has no place for."""
    state = make_backend().state_arrays()
    twin = make_backend(seed=5)
    twin.load_arrays(dict(state, **{"bn1.num_batches_tracked": np.array(3)}))
    assert not changed(state, twin.state_arrays())


def test_weight_files_and_torchvision_conversion(tmp_path) -> None:
    state = make_backend().state_arrays()
    raw = {f"module.{k}": v.astype(np.float64) for k, v in state.items()}
    raw["module.bn1.num_batches_tracked"] = np.array(7)
    converted = weights.convert_torchvision_state_dict(raw)
    assert set(converted) == set(state) and converted["fc.weight"].dtype == np.float32
    path = tmp_path / "w.npz"
    weights.save_npz(path, converted)
    assert not changed(converted, weights.load_npz(path))
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(BenchError, match="cannot read weights file"):
        weights.load_npz(tmp_path / "junk.npz")
    with pytest.raises(BenchError, match="not floating point"):
        weights.convert_torchvision_state_dict({"fc.weight": np.zeros(3, np.int64)})


def test_checkpoint_keeps_velocities_scaled_for_the_lr_and_names_its_writer(tmp_path) -> None:
    """Chainer's velocities are scaled by the lr (optimizers.py): a checkpoint written after
    set_lr must resume with those, not rescale them again."""
    batches = shape_batches(64)
    backend = make_backend()
    backend.train_epoch(batches[:1])
    backend.set_lr(0.02)  # velocities now scaled for 0.02; the checkpoint must keep that
    path = tmp_path / "ckpt"  # exactly this path, no suffix added
    backend.save_checkpoint(path)
    assert path.is_file()
    resumed = make_backend(seed=9)
    resumed.load_checkpoint(path)
    assert not changed(backend.state_arrays(), resumed.state_arrays())
    for b in (backend, resumed):
        b.train_epoch(batches[1:])
    assert not changed(backend.state_arrays(), resumed.state_arrays())

    foreign = tmp_path / "foreign.npz"
    np.savez(foreign, **{"__bench__/backend": np.asarray("torch"), "__bench__/model": np.asarray("resnet8")})
    with pytest.raises(BenchError, match="written by the 'torch' backend"):
        resumed.load_checkpoint(foreign)
    with pytest.raises(BenchError, match="does not exist"):
        resumed.load_checkpoint(tmp_path / "missing.npz")


# ------------------------------------------------------------------------- Transfer learning
