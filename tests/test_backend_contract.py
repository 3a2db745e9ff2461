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
from harness.errors import BenchError
from harness.init_weights import initial_state
from harness.metrics import top1_top5
from harness.weights import head_prefix

SIZE, CLASSES, BATCH = 16, 5, 4
INPUTS = InputSpec(CIFAR_MEAN, CIFAR_STD)
SGD = OptimSpec("sgd", lr=0.02, momentum=0.9, weight_decay=5e-4)
GENTLE = OptimSpec("sgd", lr=0.002, momentum=0.9, weight_decay=5e-4)  # no overflow in resnet152
BACKEND_NAMES = training_backends()
# resnet101/152 cost 10-30 s per case on 2 cores (60M-parameter inits, ~0.5 GB checkpoints).
# Their Bottleneck blocks and state names are the same code as resnet50's, which every test
# runs; they are built, stepped and frozen in the freeze test (ALL_CASES), and their state
# names checked against torchvision's in test_torch_backend.py, but not checkpointed here.
HEAVY = {"resnet101", "resnet152"}
ALL_CASES = [pytest.param(b, m, id=f"{b}-{m}", marks=[pytest.mark.slow] if m in HEAVY else [])
             for b in BACKEND_NAMES for m in MODELS]
CASES = [pytest.param(b, m, id=f"{b}-{m}") for b in BACKEND_NAMES for m in MODELS if m not in HEAVY]
# Models with dropout in train mode: what the checkpoint's RNG state is for.
DROPOUT_SPECS = [("small_cnn", "linear"), ("resnet8", "mlp")]


def make(backend_name: str, model: str, *, seed: int = 0, optim: OptimSpec = SGD, **spec: object) -> Backend:
    backend = create_backend(backend_name)
    backend.configure(device="cpu", threads=1, seed=seed)
    backend.build(ModelSpec(model, CLASSES, SIZE, **spec), optim, INPUTS)
    # The canonical init, as harness.train.prepare.prepare_backend loads it (framework defaults differ).
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


@pytest.mark.parametrize("backend_name, model", ALL_CASES)
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
        backend.load_arrays(init)  # what harness.train.prepare.prepare_backend does with the canonical init
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


# --- resnet8 only: behaviour that does not depend on the architecture -------------------------

@pytest.mark.parametrize("backend_name", BACKEND_NAMES)
def test_epochs_learn_and_report_progress(backend_name: str) -> None:
    backend = make(backend_name, "resnet8")
    train = [batch(i, n=16) for i in range(4)]
    calls: list[tuple[int, float | None]] = []
    first = backend.train_epoch(train, on_step=lambda n, loss: calls.append((n, loss)))
    for _ in range(2):
        last = backend.train_epoch(train)
    assert (first.count, first.steps) == (64, 4) and first.compute_s > 0 and first.data_wait_s >= 0
    assert [n for n, _ in calls] == [16, 32, 48, 64] and calls[-1][1] == pytest.approx(first.loss)
    assert last.loss < 0.7 * first.loss, (first.loss, last.loss)
    result = backend.evaluate([batch(99, n=32)])
    assert result.count == 32 and result.steps == 1 and 0 <= result.correct <= result.top5_correct


@pytest.mark.parametrize("backend_name", BACKEND_NAMES)
def test_state_arrays_are_copies_and_misfits_are_bench_errors(backend_name: str) -> None:
    backend = make(backend_name, "resnet8")
    state = backend.state_arrays()
    assert "layer1.0.bn1.running_mean" in state and not any("num_batches" in k for k in state)
    assert all(v.dtype == np.float32 and v.flags.c_contiguous for v in state.values())
    state["fc.weight"][:] = 0  # a copy, not a view of the live weights
    assert np.abs(backend.state_arrays()["fc.weight"]).sum() > 0
    with pytest.raises(BenchError, match=r"different architecture.*fc\.weight: \(3, 64\)"):
        backend.load_arrays(dict(state, **{"fc.weight": np.zeros((3, 64), np.float32)}))
    with pytest.raises(BenchError, match="missing fc.bias"):
        backend.load_arrays({k: v for k, v in state.items() if k != "fc.bias"})
    with pytest.raises(BenchError, match="missing layer2.0.downsample"):
        make(backend_name, "resnet8", shortcut="B").load_arrays(state)
    make(backend_name, "resnet8", shortcut="B").load_arrays(state, strict=False)


@pytest.mark.parametrize("backend_name", BACKEND_NAMES)
def test_checkpoints_that_do_not_fit_are_bench_errors(backend_name: str, tmp_path: Path) -> None:
    backend = make(backend_name, "resnet8")
    backend.train_step_probe(batch())
    path = tmp_path / "ckpt"  # exactly this path, no suffix added
    backend.save_checkpoint(path)
    assert path.is_file()
    with pytest.raises(BenchError, match="'resnet8' checkpoint.*--model resnet8"):
        make(backend_name, "resnet20").load_checkpoint(path)
    with pytest.raises(BenchError, match="(?i)sgd"):
        make(backend_name, "resnet8", optim=OptimSpec("adam", lr=1e-3)).load_checkpoint(path)
    with pytest.raises(BenchError, match="different architecture"):
        other = create_backend(backend_name)
        other.configure(device="cpu", threads=1, seed=0)
        other.build(ModelSpec("resnet8", CLASSES + 1, SIZE), SGD, INPUTS)
        other.load_checkpoint(path)
    corrupt = tmp_path / "corrupt"
    corrupt.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(BenchError, match="cannot read checkpoint|is not a"):
        backend.load_checkpoint(corrupt)
    with pytest.raises(BenchError, match="does not exist"):
        backend.load_checkpoint(tmp_path / "missing")


@pytest.mark.parametrize("backend_name", BACKEND_NAMES)
def test_freeze_with_train_bn_and_an_ablated_block(backend_name: str) -> None:
    backend = make(backend_name, "resnet8", freeze="backbone", train_bn=True, no_skip=("layer2.0",))
    before = backend.state_arrays()
    backend.train_epoch([batch(i, n=16) for i in range(2)])
    after = backend.state_arrays()
    moved = {k for k in before if not np.array_equal(before[k], after[k])}
    assert {"fc.weight", "layer2.0.conv1.weight", "layer2.0.bn2.bias"} <= moved  # the ablated block trains
    assert {"bn1.running_mean", "layer1.0.bn1.running_var"} <= moved  # train_bn: statistics update
    assert not {"conv1.weight", "bn1.weight", "bn1.bias", "layer3.0.conv2.weight"} & moved


@pytest.mark.parametrize("backend_name", BACKEND_NAMES)
def test_features_and_head_only_training(backend_name: str) -> None:
    backend = make(backend_name, "resnet8", freeze="backbone")
    data = batch(n=16)
    features = backend.features(data.images)
    assert features.shape == (16, 64) and features.dtype == np.float32
    state = backend.state_arrays()
    np.testing.assert_allclose(backend.predict(data.images), features @ state["fc.weight"].T + state["fc.bias"],
                               rtol=1e-4, atol=1e-5)
    stats = backend.train_head_epoch([(features, data.labels)] * 3)
    assert (stats.count, stats.steps) == (48, 3)
    after = backend.state_arrays()
    assert {k for k in state if not np.array_equal(state[k], after[k])} == {"fc.weight", "fc.bias"}
