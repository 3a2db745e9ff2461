"""Eval-mode forward passes: ResNet-20 at batch 128 and 1, and the frozen-backbone forward
(``features()``, what a ``--freeze backbone`` run computes for its feature cache) of
ResNet-18 and ResNet-50 at 224x224, batch 16. Each call includes the uint8 hand-over and
normalisation, as in a run."""
from __future__ import annotations

import pytest

from benchmarks.conftest import BACKENDS
from benchmarks.support import measure


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("batch", [128, 1])
def test_eval_forward_resnet20(benchmark, make_backend, cifar_data, backend, batch):
    benchmark.group = f"eval forward resnet20 b{batch}"
    prepared = make_backend(backend, "resnet20")
    images = cifar_data.test_images[:batch]
    measure(benchmark, lambda: prepared.backend.predict(images), images=batch, prepared=prepared,
            model="resnet20", batch_size=batch)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("model", ["resnet18", "resnet50"])
def test_frozen_backbone_forward(benchmark, make_backend, images_224, backend, model):
    benchmark.group = f"frozen-backbone forward {model} 224px b16"
    prepared = make_backend(backend, model, freeze="backbone")
    images = images_224[:16]
    measure(benchmark, lambda: prepared.backend.features(images), images=len(images), prepared=prepared,
            model=model, batch_size=len(images), image_size=224, freeze="backbone")
