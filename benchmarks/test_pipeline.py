"""Batch production: what the data pipeline does for every training batch of a CIFAR run.

``BatchStream.make_batch`` (gather, random crop with 4-pixel zero padding, horizontal flip;
the prefetch thread runs it in a run) followed by the backend's hand-over, ``_images`` and
``_labels`` (uint8 NHWC -> normalised float32 NCHW framework array, labels), the first thing
``train_epoch`` does with each batch. Those two methods are private to the backends but are
exactly the per-batch hand-over; a backend without them is skipped.
"""
from __future__ import annotations

import pytest

from benchmarks.conftest import BACKENDS, SEED
from benchmarks.support import measure
from harness.data import BatchStream

BATCH = 128


@pytest.mark.benchmark(group="batch production crop_flip 32px b128")
@pytest.mark.parametrize("backend", BACKENDS)
def test_batch_production(benchmark, make_backend, cifar_data, backend):
    prepared = make_backend(backend, "resnet20")
    b = prepared.backend
    if not (hasattr(b, "_images") and hasattr(b, "_labels")):
        pytest.skip(f"{backend} has no _images/_labels hand-over to time")
    stream = BatchStream(cifar_data.train_images, cifar_data.train_labels, batch_size=BATCH, seed=SEED,
                         epoch=1, shuffle=True, augment="crop_flip", out_size=32, drop_last=True)
    indices = list(stream.indices())
    state = {"k": 0}

    def produce():
        idx = indices[state["k"] % len(indices)]
        state["k"] += 1
        batch = stream.make_batch(idx)
        return b._images(batch.images), b._labels(batch.labels)

    measure(benchmark, produce, images=BATCH, prepared=prepared, batch_size=BATCH, augment="crop_flip")
