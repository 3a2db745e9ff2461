"""The Backend contract, checked the same way for every training backend and every model.

Each case builds the real model at a tiny size (16 px, 5 classes, batches of 4) in the real
framework on the CPU. What a backend must do, whatever its framework: train (a few steps on
one fixed batch lower its loss), hand its state out and take it back under the canonical
names, write a checkpoint that a fresh backend resumes from exactly (same predictions, same
next step, same dropout masks), keep a frozen backbone frozen, and count top-1/top-5 with
:mod:`harness.metrics`' rule. Framework-specific checks stay in test_<fw>_backend.py.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from harness.backend import (BACKENDS, Backend, Batch, InputSpec, ModelSpec, OptimSpec, create_backend,
                             training_backends)
from harness.catalogue import CIFAR_MEAN, CIFAR_STD, MODELS
from harness.init_weights import initial_state
from harness.metrics import top1_top5
from harness.weights import head_prefix

SIZE, CLASSES, BATCH = 16, 5, 4
INPUTS = InputSpec(CIFAR_MEAN, CIFAR_STD)
SGD = OptimSpec("sgd", lr=0.02, momentum=0.9, weight_decay=5e-4)
GENTLE = OptimSpec("sgd", lr=0.002, momentum=0.9, weight_decay=5e-4)  # no overflow in resnet152
BACKEND_NAMES = training_backends()
# resnet101/152 cost 10-30 s per case on 2 cores (60M-parameter inits, ~0.5 GB checkpoints);
# their Bottleneck blocks are the same code as resnet50's, which always runs.
HEAVY = {"resnet101", "resnet152"}
CASES = [pytest.param(b, m, id=f"{b}-{m}", marks=[pytest.mark.slow] if m in HEAVY else [])
         for b in BACKEND_NAMES for m in MODELS]
# Models with dropout in train mode: what the checkpoint's RNG state is for.
DROPOUT_SPECS = [("small_cnn", "linear"), ("resnet8", "mlp")]


def make(backend_name: str, model: str, *, seed: int = 0, optim: OptimSpec = SGD, **spec: object) -> Backend:
    backend = create_backend(backend_name)
    backend.configure(device="cpu", threads=1, seed=seed)
    backend.build(ModelSpec(model, CLASSES, SIZE, **spec), optim, INPUTS)
    # The canonical init, as runner.prepare_backend loads it (framework defaults differ).
    backend.load_arrays(initial_state({k: v.shape for k, v in backend.state_arrays().items()}, seed))
    return backend


def batch(seed: int = 0, n: int = BATCH) -> Batch:
    """Learnable data: each class its own mean colour plus noise."""
    palette = np.random.default_rng(1234).uniform(40, 215, size=(CLASSES, 3))
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, CLASSES, n)
    images = palette[labels][:, None, None, :] + rng.normal(0, 20, (n, SIZE, SIZE, 3))
    return Batch(np.clip(images, 0, 255).astype(np.uint8), labels.astype(np.int64))


def is_head(name: str, model: str) -> bool:
    prefix = head_prefix(model)
    return name == prefix or name.startswith(prefix + ".")


def assert_same_state(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_flags_come_from_the_light_registry() -> None:
    """The harness reads capabilities from BACKENDS without importing a framework; each class
    says the same (a class that disagreed would make `bench run` and the backend contradict)."""
    for name, entry in BACKENDS.items():
        cls = type(create_backend(name))
        assert (cls.name, cls.supports_training, cls.supports_onnx, cls.supports_distributed,
                cls.checkpoint_suffix) == (name, entry.supports_training, entry.supports_onnx,
                                           entry.supports_distributed, entry.checkpoint_suffix)
    assert set(BACKEND_NAMES) >= {"torch", "chainer"} and "onnxruntime" not in BACKEND_NAMES


@pytest.mark.parametrize("backend_name, model", CASES)
def test_training_steps_lower_the_loss(backend_name: str, model: str) -> None:
    # Adam's normalised steps suit every depth (SGD with momentum overshoots one batch on
    # resnet110 at 16 px); small_cnn, without BatchNorm and with dropout, needs larger ones.
    lr = 3e-3 if model == "small_cnn" else 3e-4
    backend = make(backend_name, model, optim=OptimSpec("adam", lr=lr, weight_decay=0.0))
    fixed = batch(n=8)
    losses = [backend.train_step_probe(fixed) for _ in range(4)]
    assert all(np.isfinite(losses)), losses
    assert losses[-1] < losses[0], losses


@pytest.mark.parametrize("backend_name, model", CASES)
def test_state_and_checkpoint_round_trip(backend_name: str, model: str, tmp_path: Path) -> None:
    """state_arrays -> load_arrays gives a model that predicts the same; a checkpoint gives a
    fresh backend the same predictions *and* the same next training step (optimiser state,
    BatchNorm statistics and dropout RNG all restored). The dropout generator is the
    process's, so ``a`` takes its step before ``c`` restores the saved state."""
    a = make(backend_name, model, optim=GENTLE)
    a.train_step_probe(batch(1))
    probe = batch(2)
    logits = a.predict(probe.images)

    b = make(backend_name, model, seed=7, optim=GENTLE)
    b.load_arrays(a.state_arrays())
    assert_same_state(a.state_arrays(), b.state_arrays())
    np.testing.assert_array_equal(logits, b.predict(probe.images))

    path = tmp_path / f"checkpoint{a.checkpoint_suffix}"
    a.save_checkpoint(path)
    next_loss, next_state = a.train_step_probe(probe), a.state_arrays()
    c = make(backend_name, model, seed=8, optim=GENTLE)  # not b's seed: nothing replays by chance
    c.load_checkpoint(path)
    np.testing.assert_array_equal(logits, c.predict(probe.images))
    assert c.train_step_probe(probe) == next_loss
    assert_same_state(next_state, c.state_arrays())


@pytest.mark.parametrize("backend_name, model", CASES)
def test_freeze_backbone_changes_only_the_head(backend_name: str, model: str) -> None:
    backend = make(backend_name, model, freeze="backbone")
    before = backend.state_arrays()
    backend.train_step_probe(batch())
    after = backend.state_arrays()
    changed = {k for k in before if not np.array_equal(before[k], after[k])}
    assert changed and all(is_head(k, model) for k in changed), sorted(changed)[:5]
    total, trainable = backend.param_count()
    assert 0 < trainable < total


@pytest.mark.parametrize("backend_name", BACKEND_NAMES)
@pytest.mark.parametrize("model, head", DROPOUT_SPECS)
def test_resume_reproduces_the_uninterrupted_run(backend_name: str, model: str, head: str,
                                                 tmp_path: Path) -> None:
    """Three epochs straight vs one epoch, checkpoint, a fresh backend (re-seeded, as a new
    process is), two epochs: the losses must be identical, dropout masks included."""
    epochs = [[batch(10 * e + i) for i in range(2)] for e in range(3)]
    init = make(backend_name, model, head=head).state_arrays()

    def fresh():
        backend = make(backend_name, model, head=head)
        backend.load_arrays(init)  # what runner.prepare_backend does with the canonical init
        return backend

    straight = fresh()
    want = [straight.train_epoch(e).loss_sum for e in epochs]

    first = fresh()
    got = [first.train_epoch(epochs[0]).loss_sum]
    path = tmp_path / f"checkpoint{first.checkpoint_suffix}"
    first.save_checkpoint(path)
    resumed = fresh()
    resumed.load_checkpoint(path)
    got += [resumed.train_epoch(e).loss_sum for e in epochs[1:]]
    assert got == want


@pytest.mark.parametrize("backend_name", BACKEND_NAMES)
def test_constant_logits_score_zero_in_evaluate_and_predict(backend_name: str) -> None:
    """Round 1: a model with equal logits scored ~1/classes top-1 in `bench run` (argmax picks
    index 0) and 100 % in `bench infer`. Both now use harness.metrics: ties never count."""
    backend = make(backend_name, "resnet8")
    state = backend.state_arrays()
    backend.load_arrays({**state, "fc.weight": np.zeros_like(state["fc.weight"]),
                         "fc.bias": np.zeros_like(state["fc.bias"])})
    data = batch(3, n=4 * CLASSES)
    data = Batch(data.images, np.arange(len(data.labels)) % CLASSES)  # label 0 included
    stats = backend.evaluate([data])
    assert (stats.correct, stats.top5_correct, stats.count) == (0, len(data.labels), len(data.labels))
    assert top1_top5(backend.predict(data.images), data.labels) == (0, len(data.labels))
