"""Fixtures for the micro-benchmarks: backends built exactly as ``bench run`` builds them.

``harness.train.prepare.prepare_backend`` is the code ``bench run`` calls: create the backend by
name, ``configure`` it (cpu, default threads, seed), ``build`` the ModelSpec and load the
harness's canonical initial weights. A benchmark therefore times the very model, optimiser
and data hand-over a run uses. Backends are cached per session (building ResNet-50 in
Chainer takes seconds) and a missing framework skips its benchmarks instead of failing.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import pytest

from harness.backend import load_backend_class
from harness.config import RunConfig
from harness.data import make_synthetic
from harness.data.dataset import Dataset
from harness.errors import BenchError
from harness.train.prepare import Prepared, prepare_backend

BACKENDS = ("torch", "chainer")
SEED = 0
NUM_CLASSES = 10


def run_config(name: str, model: str, *, freeze: str = "none", optimizer: str = "sgd") -> RunConfig:
    """The RunConfig of ``bench run --backend NAME --model MODEL --device cpu`` (+ flags)."""
    return RunConfig(backends=[name], device="cpu", model=model, freeze=freeze, optimizer=optimizer).validate()


@pytest.fixture(scope="session")
def make_backend() -> Callable[..., Prepared]:
    """``make_backend(name, model, freeze="none")`` -> a configured, built, initialised
    :class:`harness.train.prepare.Prepared` (``.backend``, ``.thread_settings``), cached."""
    cache: dict[tuple[str, str, str], Prepared] = {}

    def make(name: str, model: str = "resnet20", *, freeze: str = "none") -> Prepared:
        try:
            load_backend_class(name)
        except BenchError as exc:  # framework not installed here
            pytest.skip(str(exc))
        key = (name, model, freeze)
        if key not in cache:
            config = run_config(name, model, freeze=freeze)
            cache[key] = prepare_backend(config, name, SEED, NUM_CLASSES)
        return cache[key]

    return make


@pytest.fixture(scope="session")
def cifar_data() -> Dataset:
    """Synthetic CIFAR-shaped data (uint8 32x32x3), as ``--dataset synthetic`` makes it."""
    return make_synthetic(train_size=1024, test_size=128, seed=SEED, image_size=32, num_classes=NUM_CLASSES)


@pytest.fixture(scope="session")
def images_224() -> np.ndarray:
    """16 synthetic images at 224x224, the transfer-learning input size."""
    return make_synthetic(train_size=16, test_size=1, seed=SEED, image_size=224, num_classes=NUM_CLASSES).train_images
