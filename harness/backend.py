"""The seam between the harness and a framework: the ``Backend`` protocol and its registry.

Only numpy arrays, plain numbers and dicts cross this seam. The harness produces the
batches (uint8 NHWC images, already augmented and resized, plus int64 labels), so every
backend sees the same bytes in the same order; the backend moves them to its device,
normalises them there, and reports back plain Python figures it alone can measure
(device-synchronised compute time, time blocked waiting for data).

Backends are registered as ``"module:Class"`` strings and imported only when asked for,
so ``bench list`` can say "chainer: not installed" without importing chainer, and a
command that uses only torch never pays for importing chainer.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterable, Iterator, NamedTuple, Protocol

import numpy as np

from harness.errors import BenchError


class Batch(NamedTuple):
    """One batch as the harness hands it over: images uint8 (N, H, W, 3), labels int64 (N,)."""

    images: np.ndarray
    labels: np.ndarray


@dataclass(frozen=True)
class ModelSpec:
    """What to build. ``name`` is a key of :data:`harness.catalogue.MODELS`."""

    name: str
    num_classes: int
    image_size: int
    shortcut: str = "A"  # CIFAR ResNets: "A" identity + zero-pad channels, "B" 1x1 projection
    no_skip: tuple[str, ...] = ()  # blocks ("layer2.5") whose residual addition is removed
    head: str = "linear"  # "linear": Linear(in, classes); "mlp": Linear(in,512)-ReLU-Dropout(0.2)-Linear
    freeze: str = "none"  # "none" | "backbone" (everything but fc is not updated)
    train_bn: bool = False  # with freeze=backbone: let BatchNorm running statistics update


@dataclass(frozen=True)
class OptimSpec:
    """Optimiser settings. Weight decay is *coupled* L2 (added to the gradient) on every
    trainable parameter, BatchNorm and biases included, in both frameworks: torch's
    ``SGD/Adam(weight_decay=...)`` semantics, reproduced in Chainer with the
    ``WeightDecay`` optimizer hook."""

    name: str  # "sgd" (momentum, PyTorch formulation) | "adam"
    lr: float
    momentum: float = 0.9
    weight_decay: float = 1e-4


@dataclass(frozen=True)
class InputSpec:
    """Per-channel normalisation applied on the device: x = (u8 / 255 - mean) / std."""

    mean: tuple[float, float, float]
    std: tuple[float, float, float]


@dataclass
class TrainStats:
    """One pass over training batches. ``loss_sum`` is the sum of per-image losses."""

    loss_sum: float = 0.0
    correct: int = 0
    count: int = 0
    steps: int = 0
    data_wait_s: float = 0.0  # blocked in next(batches)
    compute_s: float = 0.0  # forward/backward/update, device-synchronised

    @property
    def loss(self) -> float:
        return self.loss_sum / self.count if self.count else float("nan")

    @property
    def accuracy(self) -> float:
        return self.correct / self.count if self.count else float("nan")


@dataclass
class EvalStats(TrainStats):
    top5_correct: int = 0

    @property
    def top5_accuracy(self) -> float:
        return self.top5_correct / self.count if self.count else float("nan")


@dataclass(frozen=True)
class DeviceStatus:
    name: str  # "cpu", "cuda:0"
    usable: bool
    detail: str  # the device's name when usable, the reason (and fix) when not


# Called by a backend during an epoch, at most every few steps: (images so far, running loss
# or None when reading it would force a device sync). Lets the CLI draw a progress bar.
StepCallback = Callable[[int, "float | None"], None]


class Backend(Protocol):
    """What every framework implements. See backends/torch_impl/backend.py for the reference."""

    name: ClassVar[str]
    supports_onnx: ClassVar[bool]
    supports_distributed: ClassVar[bool]
    supports_training: ClassVar[bool]  # False: inference only (INFERENCE_ONLY below), e.g. onnxruntime
    checkpoint_suffix: ClassVar[str]  # ".pt", ".npz"

    def versions(self) -> dict[str, str]:
        """Framework and accelerator library versions, e.g. {"torch": "2.14.1", "cudnn": ""}."""

    def devices(self) -> list[DeviceStatus]:
        """Every device this backend could use here, usable or not (with the reason)."""

    def configure(self, *, device: str, threads: int | None, seed: int) -> dict[str, Any]:
        """Select the device (BenchError if unusable), set CPU threads and seeds.
        Returns the framework's own thread settings for run.json."""

    def build(self, model: ModelSpec, optim: OptimSpec, inputs: InputSpec) -> None:
        """Build model + optimiser on the configured device (random init; the harness then
        loads its canonical initial weights through :meth:`load_arrays`)."""

    def param_count(self) -> tuple[int, int]:
        """(all parameters, trainable parameters)."""

    def state_arrays(self) -> dict[str, np.ndarray]:
        """Model state under torchvision's names and layouts (``layer1.0.conv1.weight``,
        OIHW convs, (out, in) linears, BatchNorm ``running_mean``/``running_var``)."""

    def load_arrays(self, arrays: dict[str, np.ndarray], *, strict: bool = True) -> None:
        """Load arrays named as in :meth:`state_arrays`; shapes are checked (BenchError)."""

    def set_lr(self, lr: float) -> None:
        """Learning rate for the next steps (the schedule lives in the harness)."""

    def train_epoch(self, batches: Iterable[Batch], on_step: StepCallback | None = None) -> TrainStats:
        """One pass over ``batches`` in train mode: forward, loss, backward, update."""

    def evaluate(self, batches: Iterable[Batch]) -> EvalStats:
        """Eval mode, no gradients: loss, top-1 and top-5 over ``batches``."""

    def predict(self, images: np.ndarray) -> np.ndarray:
        """Eval-mode logits (float32, N x classes) for uint8 NHWC images."""

    def features(self, images: np.ndarray) -> np.ndarray:
        """Eval-mode outputs of everything before the classifier (float32, N x F) for uint8
        NHWC images: what ``--cache-features`` stores (harness/feature_cache.py)."""

    def train_head_epoch(self, feature_batches: Iterable[tuple[np.ndarray, np.ndarray]],
                         on_step: StepCallback | None = None) -> TrainStats:
        """:meth:`train_epoch` for the classifier alone, on (features, labels) batches of
        :meth:`features` outputs; only the head's parameters change."""

    def train_step_probe(self, batch: Batch) -> float:
        """Exactly one training step on ``batch``; its mean loss. `bench parity` compares the
        state after it across frameworks (harness/parity.py)."""

    def save_checkpoint(self, path: Path) -> None:
        """Model and optimiser state in the framework's native format, to exactly ``path``."""

    def load_checkpoint(self, path: Path) -> None:
        """Restore what :meth:`save_checkpoint` wrote (BenchError if it does not fit)."""


# name -> "module:Class", and the pip package to name when the import fails.
REGISTRY: dict[str, tuple[str, str]] = {
    "torch": ("backends.torch_impl.backend:TorchBackend", "torch==2.14.1 torchvision==0.29.1"),
    "chainer": ("backends.chainer_impl.backend:ChainerBackend", "chainer==7.8.1"),
    # Inference only (`bench infer` on a model `bench export` wrote); cannot train.
    "onnxruntime": ("backends.onnxruntime_impl.backend:OnnxRuntimeBackend", "onnxruntime==1.32.0 onnx==1.23.2"),
}

# Backends whose class says ``supports_training = False``, known without importing them so
# that `bench run --backend onnxruntime` fails in RunConfig.validate() before any work.
# tests/test_onnx.py checks this set against the classes' flags.
INFERENCE_ONLY: frozenset[str] = frozenset({"onnxruntime"})


def backend_names() -> list[str]:
    return list(REGISTRY)


def load_backend_class(name: str) -> type:
    """Import a backend by name; a missing framework is a BenchError naming the package."""
    try:
        target, package = REGISTRY[name]
    except KeyError:
        raise BenchError(
            f"unknown backend {name!r}: choose one of {', '.join(REGISTRY)}"
        ) from None
    module_name, class_name = target.split(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = (exc.name or "").split(".")[0]
        if missing in {"torch", "torchvision", "chainer", "cupy", "onnx", "onnxruntime"}:
            raise BenchError(
                f"backend {name!r} needs {missing}, which is not installed: "
                f"run scripts/ensure-venv.sh or `pip install {package}`"
            ) from None
        raise
    return getattr(module, class_name)


def create_backend(name: str) -> Backend:
    return load_backend_class(name)()


def backend_availability(name: str) -> tuple[bool, str]:
    """(importable, version or reason) without raising; for ``bench list``."""
    try:
        cls = load_backend_class(name)
    except BenchError as exc:
        return False, str(exc)
    try:
        versions = cls().versions()
    except Exception as exc:  # a broken install is reported, not fatal to `bench list`
        return False, f"{type(exc).__name__}: {exc}"
    return True, versions.get(name, "")


def iter_with_wait(batches: Iterable[Batch], stats: TrainStats, clock: Callable[[], float]) -> Iterator[Batch]:
    """Yield from ``batches`` while adding the time spent blocked in ``next`` to
    ``stats.data_wait_s``: the same accounting for every backend."""
    iterator = iter(batches)
    while True:
        t0 = clock()
        try:
            batch = next(iterator)
        except StopIteration:
            stats.data_wait_s += clock() - t0
            return
        stats.data_wait_s += clock() - t0
        yield batch


@dataclass
class Capabilities:
    """Capability flags for ``bench list --json`` and tests that skip by capability."""

    onnx: bool
    distributed: bool
    devices: list[DeviceStatus] = field(default_factory=list)
