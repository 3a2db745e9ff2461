"""Settings validation and the learning-rate schedule."""
import math

import pytest

from harness.config import RunConfig, lr_at
from harness.errors import BenchError
from harness.measure.flops import forward_flops
from harness.catalogue import MODELS
from harness.init_weights import initial_state


@pytest.mark.parametrize("kwargs, message", [
    ({"model": "resnet21"}, "unknown model 'resnet21'"),
    ({"backends": ["mxnet"]}, "unknown backend 'mxnet'"),
    ({"dataset": "mnist"}, "unknown dataset 'mnist'"),
    ({"optimizer": "rmsprop"}, "unknown optimizer"),
    ({"epochs": 0}, "--epochs must be positive"),
    ({"batch_size": -1}, "--batch-size must be positive"),
    ({"lr": 0.0}, "--lr must be a positive"),
    ({"device": "gpu"}, "unknown device 'gpu'"),
    ({"no_skip": ("layer4.0",)}, "unknown blocks layer4.0"),
    ({"target_acc": 90}, "fraction"),
])
def test_bad_settings_are_named(kwargs, message):
    with pytest.raises(BenchError, match=message):
        RunConfig(**kwargs).validate()


def test_schedules():
    cfg = RunConfig(epochs=4, lr=0.1, schedule="cosine")
    assert [round(lr_at(cfg, e), 6) for e in range(1, 5)] == [0.1, round(0.05 * (1 + math.cos(math.pi / 4)), 6), 0.05,
                                                              round(0.05 * (1 + math.cos(3 * math.pi / 4)), 6)]
    cfg = RunConfig(epochs=8, lr=0.1, schedule="step")
    assert [round(lr_at(cfg, e), 6) for e in range(1, 9)] == [0.1] * 4 + [0.01] * 2 + [0.001] * 2
    assert RunConfig(optimizer="adam").learning_rate == 1e-3


def test_group_key_ignores_seed_and_backend():
    a = RunConfig(seed=1, backends=["torch"]).group_key()
    assert a == RunConfig(seed=2, backends=["chainer"]).group_key()
    assert a != RunConfig(batch_size=64).group_key()


def test_flops_match_published_counts():
    # torchvision's documented GFLOPS (multiply-adds) at 224 px: resnet18 1.81, resnet50 4.09;
    # He et al. 2016 quote ~41 M multiply-adds for CIFAR ResNet-20.
    def gmacs(name, size, classes):
        backbone, head = forward_flops(MODELS[name], image_size=size, num_classes=classes)
        return (backbone + head) / 2e9
    assert gmacs("resnet18", 224, 1000) == pytest.approx(1.81, abs=0.01)
    assert gmacs("resnet50", 224, 1000) == pytest.approx(4.09, abs=0.01)
    assert gmacs("resnet20", 32, 10) == pytest.approx(0.0406, abs=0.001)


def test_initial_state_is_deterministic_and_scaled():
    shapes = {"conv1.weight": (16, 3, 3, 3), "bn1.weight": (16,), "bn1.bias": (16,), "bn1.running_mean": (16,),
              "bn1.running_var": (16,), "fc.weight": (10, 64), "fc.bias": (10,)}
    a, b = initial_state(shapes, 0), initial_state(shapes, 0)
    assert all((a[k] == b[k]).all() for k in shapes)
    assert not (initial_state(shapes, 1)["conv1.weight"] == a["conv1.weight"]).all()
    assert (a["bn1.weight"] == 1).all() and (a["bn1.running_var"] == 1).all() and (a["bn1.bias"] == 0).all()
    big = initial_state({"c.weight": (256, 64, 3, 3)}, 0)["c.weight"]
    assert big.std() == pytest.approx(math.sqrt(2 / (256 * 9)), rel=0.02)  # Kaiming normal, fan_out
    assert abs(a["fc.weight"]).max() <= 1 / math.sqrt(64)
