"""The torch backend with real torch at tiny sizes (resnet8, 32 px, a few hundred images).

Big ImageNet ResNets are built on the ``meta`` device (shapes only, no memory, no init), so
checking resnet152's state names against torchvision's costs milliseconds.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision

from backends.torch_impl.backend import TorchBackend
from backends.torch_impl.models import build_model, resnet_cifar
from backends.torch_impl.models.resnet_imagenet import Bottleneck
from harness.backend import Batch, InputSpec, ModelSpec, OptimSpec
from harness.catalogue import CIFAR_MEAN, CIFAR_STD, MODELS, block_names
from harness.errors import BenchError

CIFAR_INPUTS = InputSpec(CIFAR_MEAN, CIFAR_STD)
SGD = OptimSpec("sgd", lr=0.05, momentum=0.9, weight_decay=5e-4)


def make_backend(name: str = "resnet8", *, classes: int = 4, size: int = 32,
                 optim: OptimSpec = SGD, **spec: object) -> TorchBackend:
    backend = TorchBackend()
    backend.configure(device="cpu", threads=None, seed=0)
    backend.build(ModelSpec(name, classes, size, **spec), optim, CIFAR_INPUTS)
    return backend


def colour_batches(n: int = 256, *, classes: int = 4, size: int = 32, batch: int = 32,
                   seed: int = 0) -> list[Batch]:
    """Learnable random data: each class has its own mean colour (the same for every
    ``seed``), plus pixel noise."""
    palette = np.random.default_rng(1234).uniform(40, 215, size=(classes, 3))
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, n)
    images = palette[labels][:, None, None, :] + rng.normal(0, 30, (n, size, size, 3))
    images = np.clip(images, 0, 255).astype(np.uint8)
    return [Batch(images[i:i + batch], labels[i:i + batch].astype(np.int64)) for i in range(0, n, batch)]


def state_names(model: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    state = model.state_dict()
    return {k: tuple(v.shape) for k, v in state.items() if not k.endswith("num_batches_tracked")}


# ------------------------------------------------------------------------- Models
def test_resnet20_parameter_counts() -> None:
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    option_a = count(resnet_cifar(depth=20, num_classes=10, shortcut="A"))
    option_b = count(resnet_cifar(depth=20, num_classes=10, shortcut="B"))
    assert option_a == 269_722  # He et al. 2016 Table 6: "0.27M"
    assert option_b == 272_474 > option_a  # + two 1x1 projections with BatchNorm


@pytest.mark.parametrize("name", [n for n, i in MODELS.items() if i.family == "resnet_cifar"])
def test_cifar_resnets_have_torchvision_names(name: str) -> None:
    model = build_model(ModelSpec(name, 10, 32, shortcut="B"))
    names = state_names(model)
    assert {"conv1.weight", "bn1.weight", "fc.weight", "fc.bias"} <= set(names)
    blocks = block_names(MODELS[name])
    assert {k.rsplit(".", 2)[0] for k in names if k.startswith("layer")} >= set(blocks)
    assert "layer2.0.downsample.0.weight" in names and "layer2.0.downsample.1.running_var" in names
    assert "layer1.0.downsample.0.weight" not in names
    if name == "resnet8":
        assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


@pytest.mark.parametrize("name", [n for n, i in MODELS.items() if i.family == "resnet_imagenet"])
@pytest.mark.parametrize("head", ["linear", "mlp"])
def test_imagenet_resnets_match_torchvision(name: str, head: str) -> None:
    with torch.device("meta"):
        ours = state_names(build_model(ModelSpec(name, 1000, 224, head=head)))
        theirs = state_names(getattr(torchvision.models, name)(weights=None))
    if head == "linear":
        assert ours == theirs
    else:
        width = theirs["fc.weight"][1]
        assert {k: v for k, v in ours.items() if not k.startswith("fc.")} == {
            k: v for k, v in theirs.items() if not k.startswith("fc.")}
        assert {k: v for k, v in ours.items() if k.startswith("fc.")} == {
            "fc.0.weight": (512, width), "fc.0.bias": (512,),
            "fc.3.weight": (1000, 512), "fc.3.bias": (1000,)}


def test_small_cnn_shapes_and_forward() -> None:
    with torch.device("meta"):
        seed_size = build_model(ModelSpec("small_cnn", 10, 224))
    assert state_names(seed_size)["fc1.weight"] == (512, 64 * 28 * 28)
    model = build_model(ModelSpec("small_cnn", 7, 32))
    layers = ("conv1", "conv2", "conv3", "fc1", "fc2", "fc3")
    assert list(state_names(model)) == [f"{layer}.{leaf}" for layer in layers for leaf in ("weight", "bias")]
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 7)


def test_resnet18_mlp_head_runs() -> None:
    model = build_model(ModelSpec("resnet18", 3, 64, head="mlp")).eval()
    assert model(torch.zeros(2, 3, 64, 64)).shape == (2, 3)
    assert model.forward_features(torch.zeros(2, 3, 64, 64)).shape == (2, 512)


def test_unknown_no_skip_block_lists_valid_ones() -> None:
    with pytest.raises(BenchError, match="layer3.0"):
        build_model(ModelSpec("resnet8", 10, 32, no_skip=("layer4.0",)))
    with pytest.raises(BenchError, match="no residual blocks"):
        build_model(ModelSpec("small_cnn", 10, 32, no_skip=("layer1.0",)))


def test_no_skip_removes_identity_of_basic_block() -> None:
    """With both convs zeroed a block computes relu(bn2(0)) = relu(beta) without its skip
    and relu(x + beta) with it (eval mode, running stats 0/1)."""
    model = build_model(ModelSpec("resnet8", 10, 32, no_skip=("layer1.0",))).eval()
    ablated = model.layer1[0]
    assert ablated.use_skip is False and model.layer2[0].use_skip is True
    beta = torch.linspace(-0.5, 0.5, 16)
    with torch.no_grad():
        ablated.conv1.weight.zero_()
        ablated.conv2.weight.zero_()
        ablated.bn2.bias.copy_(beta)
        x = torch.randn(2, 16, 8, 8)
        expected_ablated = torch.relu(beta).view(1, 16, 1, 1).expand(2, 16, 8, 8)
        torch.testing.assert_close(ablated(x), expected_ablated, atol=1e-5, rtol=0)
        ablated.use_skip = True
        torch.testing.assert_close(ablated(x), torch.relu(x + beta.view(1, 16, 1, 1)), atol=1e-5, rtol=0)


def test_no_skip_bottleneck_and_downsampling_block() -> None:
    block = Bottleneck(64, 16).eval()  # 64 -> 16 -> 16 -> 64, identity shortcut
    x = torch.randn(1, 64, 4, 4)
    with torch.no_grad():
        block.conv3.weight.zero_()
        torch.testing.assert_close(block(x), torch.relu(x))
        block.use_skip = False
        assert torch.count_nonzero(block(x)) == 0
    model = build_model(ModelSpec("resnet8", 10, 32, no_skip=("layer2.0",)))
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


# ------------------------------------------------------------------------- Backend
def test_devices_versions_and_cuda_error() -> None:
    backend = TorchBackend()
    devices = backend.devices()
    assert devices[0].name == "cpu" and devices[0].usable
    assert set(backend.versions()) >= {"torch", "torchvision", "cuda", "cudnn"}
    with pytest.raises(BenchError, match="unknown device"):
        backend.configure(device="tpu", threads=None, seed=0)
    if torch.cuda.is_available():  # each GPU named, --device cuda used, an index past them refused
        count = torch.cuda.device_count()
        assert [d.name for d in devices[1:]] == [f"cuda:{i}" for i in range(count)] and all(d.usable for d in devices)
        assert backend.configure(device="cuda", threads=None, seed=0)["device"] == "cuda:0"
        with pytest.raises(BenchError, match=f"only {count} CUDA device"):
            backend.configure(device=f"cuda:{count}", threads=None, seed=0)
        return
    assert any(d.name == "cuda" and not d.usable for d in devices)
    with pytest.raises(BenchError, match="CUDA was requested but .*use --device cpu"):
        backend.configure(device="cuda", threads=None, seed=0)
    with pytest.raises(BenchError, match="CUDA was requested"):
        backend.configure(device="cuda:1", threads=None, seed=0)


def test_configure_reports_threads() -> None:
    before = torch.get_num_threads()
    try:
        settings = TorchBackend().configure(device="cpu", threads=1, seed=3)
        assert settings["torch_num_threads"] == 1 and settings["device"] == "cpu"
    finally:
        torch.set_num_threads(before)


def test_cuda_on_an_aarch64_cpu_build_names_the_platform_torch(monkeypatch):
    """On a Jetson with the registry's aarch64 wheel (a build without CUDA), --device cuda is
    refused in one line that names the fix (BENCH_TORCH=system). The platform is simulated:
    this machine is x86-64 and its torch has CUDA compiled in."""
    import platform

    monkeypatch.setattr(platform, "machine", lambda: "aarch64")
    monkeypatch.setattr(torch.version, "cuda", None)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(BenchError) as err:
        TorchBackend().configure(device="cuda", threads=None, seed=0)
    message = str(err.value)
    assert "\n" not in message and "has no CUDA support" in message and "BENCH_TORCH=system" in message
