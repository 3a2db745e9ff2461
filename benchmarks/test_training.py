"""One training step (forward, loss, backward, optimiser update) of ResNet-20 at batch 128.

Timed through ``Backend.train_epoch`` over a one-batch list: the same per-step path a
``bench run`` epoch takes (hand-over, normalisation, step, on-device loss/accuracy sums),
without the data pipeline (see test_pipeline.py for that).
"""
from __future__ import annotations

import pytest

from benchmarks.conftest import BACKENDS
from benchmarks.support import measure
from harness.backend import Batch

BATCH = 128


@pytest.mark.benchmark(group="train step resnet20 b128")
@pytest.mark.parametrize("backend", BACKENDS)
def test_train_step_resnet20(benchmark, make_backend, cifar_data, backend):
    prepared = make_backend(backend, "resnet20")
    batch = Batch(cifar_data.train_images[:BATCH], cifar_data.train_labels[:BATCH])
    measure(benchmark, lambda: prepared.backend.train_epoch([batch]), images=BATCH, prepared=prepared,
            model="resnet20", batch_size=BATCH, optimizer="sgd")
