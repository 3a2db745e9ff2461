"""harness.backend.run_pass, the loop every backend's training and evaluation pass runs in:
with ``fetch``, a step's results reach the host only after the next step is queued (no
synchronisation per step on a GPU), and every step is still counted once, with the same
figures as fetching at once. Then the real backends: evaluate() counts what predict() gives."""
from __future__ import annotations

import numpy as np
import pytest

from harness.backend import (Batch, EvalStats, InputSpec, ModelSpec, OptimSpec, TrainStats, create_backend,
                             run_pass, training_backends)
from harness.catalogue import CIFAR_MEAN, CIFAR_STD
from harness.metrics import top1_top5

CLASSES = 7


def _results(n_steps: int, batch: int = 5) -> list[tuple[np.ndarray, float, np.ndarray]]:
    rng = np.random.default_rng(0)
    return [(rng.normal(size=(batch, CLASSES)).astype(np.float32), float(rng.uniform(1, 3) * batch),
             rng.integers(0, CLASSES, batch)) for _ in range(n_steps)]


@pytest.mark.parametrize("stats_type", [TrainStats, EvalStats])
def test_fetch_comes_one_step_late_and_counts_every_step_once(stats_type):
    results = _results(4)
    events: list[str] = []
    progress: list[int] = []

    def step(i: int) -> int:
        events.append(f"step {i}")
        return i  # what a device would hold: a handle, not yet on the host

    def fetch(i: int):
        events.append(f"fetch {i}")
        return results[i]

    late = run_pass(range(4), stats_type(), step, sync=lambda: events.append("sync"), fetch=fetch,
                    on_step=lambda n, loss: progress.append(n))
    assert events == ["sync", "step 0", "step 1", "fetch 0", "step 2", "fetch 1", "step 3", "fetch 2", "fetch 3",
                      "sync"]
    assert progress == [5, 10, 15, 20]
    at_once = run_pass(range(4), stats_type(), lambda i: results[i], sync=lambda: None)
    for name in ("loss_sum", "correct", "count", "steps") + (("top5_correct",) if stats_type is EvalStats else ()):
        assert getattr(late, name) == getattr(at_once, name), name
    assert late.count == 20 and late.steps == 4


def test_an_empty_pass_fetches_nothing():
    stats = run_pass([], TrainStats(), lambda b: pytest.fail("no batch"), sync=lambda: None,
                     fetch=lambda r: pytest.fail("nothing to fetch"))
    assert stats.count == 0 and stats.steps == 0


def evaluate_matches_predict(backend) -> None:
    """Three batches (the last shorter) through ``backend.evaluate``'s lagged loop: the same
    image count, top-1 and top-5 as its predict() on the same images, with harness.metrics'
    rule. A step's logits read after the next step overwrote them would miscount."""
    rng = np.random.default_rng(3)
    batches = [Batch(rng.integers(0, 256, (n, 16, 16, 3), dtype=np.uint8), rng.integers(0, CLASSES, n))
               for n in (6, 6, 3)]
    stats = backend.evaluate(batches)
    logits = np.concatenate([backend.predict(b.images) for b in batches])
    labels = np.concatenate([b.labels for b in batches])
    top1, top5 = top1_top5(logits, labels)
    assert stats.count == 15 and stats.steps == 3
    assert (stats.correct, stats.top5_correct) == (top1, top5) and top5 > top1


def build(backend_name: str, **configure) -> object:
    backend = create_backend(backend_name)
    backend.configure(**{"device": "cpu", "threads": 1, "seed": 0, **configure})
    backend.build(ModelSpec("resnet8", CLASSES, 16), OptimSpec("sgd", lr=0.1), InputSpec(CIFAR_MEAN, CIFAR_STD))
    return backend


@pytest.mark.parametrize("backend_name", training_backends())
def test_evaluate_counts_what_predict_gives(backend_name):
    evaluate_matches_predict(build(backend_name))
