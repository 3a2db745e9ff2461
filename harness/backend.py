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
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterable, Iterator, NamedTuple, Protocol, TypeVar

import numpy as np

from harness.errors import BenchError
from harness.metrics import topk_correct


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
    # wall time of the steps in which a graph compiler compiled (--compile), None when not
    # compiling: part of compute_s, reported on its own and kept out of steady-state figures
    compile_s: float | None = None

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
    supports_training: ClassVar[bool]  # these four flags come from the class's BACKENDS entry
    checkpoint_suffix: ClassVar[str]  # ".pt", ".npz"

    def versions(self) -> dict[str, str]:
        """Framework and accelerator library versions, e.g. {"torch": "2.14.1", "cudnn": ""}."""

    def devices(self) -> list[DeviceStatus]:
        """Every device this backend could use here, usable or not (with the reason)."""

    def configure(self, *, device: str, threads: int | None, seed: int, deterministic: bool = False,
                  precision: str = "fp32", compile: str = "none") -> dict[str, Any]:
        """Select the device (BenchError if unusable), set CPU threads and seeds, with
        ``deterministic`` choose deterministic kernels (``--deterministic``; seed 001 set
        cuDNN's), and set the precision and compile mode :meth:`build` will use
        (harness/precision.py; the harness has refused what the BACKENDS flags rule out, the
        backend what only it can see: the GPU's generation, a missing compiler). Returns the
        framework's own settings in effect for run.json."""

    def execution(self) -> dict[str, Any]:
        """run.json's ``execution``: {"precision": {...dtypes, scaler...}, "compile": {mode, cache...}}."""

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

    def layer_summary(self, image_size: int) -> list[dict[str, Any]]:
        """Per layer holding parameters, in the order one eval-mode forward of a blank
        ``image_size`` image ran them: ``{"layer": torchvision name, "type": the framework's
        class, "output_shape": [C, H, W] (no batch axis), "params": int}`` (`bench summary`)."""

    def train_step_probe(self, batch: Batch) -> float:
        """Exactly one training step on ``batch``; its mean loss. `bench parity` compares the
        state after it across frameworks (harness/parity.py)."""

    def save_checkpoint(self, path: Path) -> None:
        """Model and optimiser state in the framework's native format, to exactly ``path``."""

    def load_checkpoint(self, path: Path) -> None:
        """Restore what :meth:`save_checkpoint` wrote (BenchError if it does not fit)."""


@dataclass(frozen=True)
class BackendEntry:
    """What the harness may know about a backend without importing its framework: where the
    class lives, the pip package to name when the import fails, and its capability flags.
    The backend class reads its ``ClassVar`` flags from here (one source of truth), so
    ``bench run --backend onnxruntime`` can be refused, and a launcher or checkpoint suffix
    chosen, by flag and never by comparing names."""

    name: str
    target: str  # "module:Class"
    package: str  # what `pip install` needs when the import fails
    supports_training: bool = True  # False: inference only (`bench infer` on an exported file)
    supports_onnx: bool = True  # `bench export` can write an .onnx from its checkpoints
    launcher: str | None = None  # multi-process launcher: "torchrun" | "mpiexec"; None: not distributed
    checkpoint_suffix: str = ".pt"  # the native checkpoint file: checkpoint<suffix>
    # device kind ("cpu", "cuda") -> the --precision names it can run (harness/precision.py)
    precisions: dict[str, tuple[str, ...]] = field(default_factory=lambda: {"cpu": ("fp32",), "cuda": ("fp32",)})
    precision_notes: dict[str, str] = field(default_factory=dict)  # precision -> why it is missing where it is
    compiler: str | None = None  # what --compile uses ("torch.compile (inductor)"); None: cannot compile
    no_compiler_reason: str = ""  # why not, when compiler is None

    @property
    def supports_distributed(self) -> bool:
        return self.launcher is not None


# Where a new backend goes: backends/<fw>_impl/ (the symbols of backends/torch_impl/, mirrored),
# plus one entry here.
BACKENDS: dict[str, BackendEntry] = {e.name: e for e in (
    BackendEntry("torch", "backends.torch_impl.backend:TorchBackend", "torch==2.14.1 torchvision==0.29.1",
                 launcher="torchrun", checkpoint_suffix=".pt",
                 # fp16-mixed on the CPU runs (autocast + GradScaler) but is slow without AMX-FP16.
                 precisions={"cpu": ("fp32", "bf16-mixed", "fp16-mixed", "bf16"),
                             "cuda": ("fp32", "tf32", "bf16-mixed", "fp16-mixed", "bf16")},
                 precision_notes={"tf32": "TF32 is an NVIDIA tensor-core format (Ampere or newer): use --device "
                                          "cuda, or bf16-mixed on a CPU"},
                 compiler="torch.compile (inductor)"),
    BackendEntry("chainer", "backends.chainer_impl.backend:ChainerBackend", "chainer==7.8.1",
                 launcher="mpiexec", checkpoint_suffix=".npz",  # ONNX via onnx-chainer, ranks via ChainerMN
                 # chainer.mixed16 (float16 compute, float32 master weights) with loss scaling, on CuPy.
                 # On NumPy it runs but a ResNet-20 step measured ~30x slower than float32 (no float16
                 # kernels in NumPy's BLAS): refused rather than reported as a precision result.
                 precisions={"cpu": ("fp32",), "cuda": ("fp32", "fp16-mixed")},
                 precision_notes={
                     "tf32": "Chainer/CuPy have no TF32 mode",
                     "bf16-mixed": "NumPy and CuPy have no bfloat16 type",
                     "bf16": "NumPy and CuPy have no bfloat16 type",
                     "fp16-mixed": "NumPy has no fast float16 kernels (a mixed16 ResNet-20 step measured ~30x "
                                   "slower than float32 on a CPU): use --device cuda (CuPy)"},
                 no_compiler_reason="Chainer has no graph compiler (it runs define-by-run, op by op)"),
    BackendEntry("onnxruntime", "backends.onnxruntime_impl.backend:OnnxRuntimeBackend",
                 "onnxruntime==1.32.0 onnx==1.23.2", supports_training=False, checkpoint_suffix=".onnx",
                 no_compiler_reason="an exported graph is run as it is"),
)}

# Views of BACKENDS kept for the modules that read them (choices= lists, config validation).
REGISTRY: dict[str, tuple[str, str]] = {n: (e.target, e.package) for n, e in BACKENDS.items()}
INFERENCE_ONLY: frozenset[str] = frozenset(n for n, e in BACKENDS.items() if not e.supports_training)


def training_backends() -> list[str]:
    """The backends that can `bench run` (what the contract tests are parametrised over)."""
    return [n for n, e in BACKENDS.items() if e.supports_training]


def load_backend_class(name: str) -> type[Backend]:
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


B = TypeVar("B")  # a Batch, or a (features, labels) pair from the feature cache


def iter_with_wait(batches: Iterable[B], stats: TrainStats, clock: Callable[[], float]) -> Iterator[B]:
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


# What a backend's step hands to :func:`run_pass`: CPU logits (N x classes, numpy), the
# batch's summed loss (mean loss x N, as the framework computed it) and the int labels (N,).
StepResult = tuple[np.ndarray, float, np.ndarray]


def run_pass(batches: Iterable[Any], stats: TrainStats, step: Callable[[Any], Any], *,
             sync: Callable[[], None], on_step: StepCallback | None = None,
             compiles: Callable[[], int] | None = None,
             fetch: Callable[[Any], StepResult] | None = None) -> TrainStats:
    """The framework-free skeleton of every training and evaluation pass, so each backend
    supplies only ``step`` (its framework calls) and ``sync`` (wait for the device).

    Per batch: time blocked on ``batches`` goes to ``data_wait_s`` (:func:`iter_with_wait`);
    the loss sum, top-1 and, for :class:`EvalStats`, top-5 are accumulated with
    :mod:`harness.metrics`' one tie rule; ``on_step`` gets (images so far, running loss).
    ``compute_s`` is the pass's wall time after the final ``sync`` minus the data wait.

    The logits come to the host for that rule (N x classes floats per step). Without
    ``fetch``, ``step`` returns them there (a :data:`StepResult`). With ``fetch``, ``step``
    returns what the device holds and ``fetch`` brings it over *one step late*, after the next
    step is queued: a GPU then never idles while the host copies and counts (a copy right
    after each step is a synchronisation per step, which empties the device's queue). Every
    step is accounted either way, the last after the loop.

    ``compiles`` (a backend that compiles): the number of graphs compiled so far; a step
    during which it grew is a compiling step, and its wall time goes to ``compile_s`` (the
    compile dominates it: seconds against milliseconds)."""
    top5 = isinstance(stats, EvalStats)
    if compiles is not None:
        stats.compile_s = 0.0

    def account(result: Any) -> None:
        logits, loss_sum, labels = fetch(result) if fetch is not None else result
        stats.loss_sum += loss_sum
        stats.correct += topk_correct(logits, labels, 1)
        if top5:
            stats.top5_correct += topk_correct(logits, labels, 5)  # type: ignore[attr-defined]
        stats.count += len(labels)
        stats.steps += 1
        if on_step is not None:
            on_step(stats.count, stats.loss)

    pending: list[Any] = []  # the step queued before this one, not yet on the host (with fetch)
    sync()
    start = time.perf_counter()
    for batch in iter_with_wait(batches, stats, time.perf_counter):
        if compiles is None:
            result = step(batch)
        else:
            before, t0 = compiles(), time.perf_counter()
            result = step(batch)
            if compiles() != before:
                stats.compile_s += time.perf_counter() - t0  # type: ignore[operator]
        if fetch is None:
            account(result)
            continue
        if pending:
            account(pending.pop())
        pending.append(result)
    if pending:
        account(pending.pop())
    sync()
    stats.compute_s = time.perf_counter() - start - stats.data_wait_s
    return stats
