"""The Chainer implementation of :class:`harness.backend.Backend`.

Mirrors ``backends/torch_impl/backend.py`` method for method. Devices: ``cpu`` is numpy (and
its BLAS, see ``blas.py``); ``cuda``/``cuda:N`` is CuPy (``chainer.get_device('@cupy:N')``).

Data path: the uint8 NHWC batch crosses to the device as uint8 (4x fewer bytes than
float32), is transposed to NCHW there, and normalised as ``(x / 255 - mean) / std`` in
float32, the same operations in the same order as the torch backend, so both see
bit-identical inputs.

Timing and accounting: :func:`harness.backend.run_pass` (shared by every backend);
``_sync`` synchronises the CuPy device.

Parity with torch (same canonical weights, same batch; tests/test_parity.py): eval logits
agree to <= 2e-6 of the largest logit; after one SGD step parameters agree to ~3e-7 of the
largest parameter (resnet8), ~2e-4 for resnet18 at 64 px, where float32 gradients of the
early layers are ill-conditioned in both frameworks; in float64 the gradients agree to 1e-14.
``optimizers.py`` lists what the update rules take to match.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import zipfile
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterable, Iterator

import numpy as np

from ._compat import chainer
import chainer.functions as F
from chainer.backends import cuda

from harness.backend import (
    BACKENDS, Batch, DeviceStatus, EvalStats, InputSpec, ModelSpec, OptimSpec, StepCallback, StepResult,
    TrainStats, run_pass,
)
from harness.device import parse_device
from harness.errors import BenchError, Unsupported
from harness.precision import PRECISIONS

from . import blas, optimizers, weights
from .models import backbone_is_frozen, build_model, freeze_links

PREDICT_CHUNK = 256  # images per forward in predict()/features()
MARK = "__bench__/"  # checkpoint keys that describe the checkpoint itself
# --precision -> Chainer's dtype config: mixed16 = float16 compute over float32 master weights.
CONFIG_DTYPE = {"fp32": np.dtype(np.float32), "fp16-mixed": chainer.mixed16}
RNG = MARK + "rng/"  # numpy's global random state (dropout masks)


def _cuda_unavailable_reason() -> str | None:
    """None when CuPy imports and sees a GPU, else the reason and the fix."""
    if not cuda.available:
        error = getattr(cuda, "_resolution_error", None)
        if error is None or isinstance(error, ImportError):
            return "CuPy is not installed: pip install cupy-cuda12x"
        return f"CuPy cannot be used ({type(error).__name__}: {error})"
    if _gpu_count() == 0:
        return "no CUDA device: CuPy is installed but sees no GPU (check the NVIDIA driver and CUDA_VISIBLE_DEVICES)"
    return None


def _cudnn_version() -> str:
    if not (cuda.available and cuda.cudnn_enabled):
        return ""
    try:
        return str(cuda.cuda.cudnn.getVersion())
    except Exception:  # cudnn bindings moved between CuPy versions
        return "yes"


def _rng_state() -> dict[str, np.ndarray]:
    """numpy's global MT19937 state, which ``F.dropout`` draws its CPU masks from, as
    checkpoint arrays: a resumed run then draws the masks the uninterrupted run would have.
    CuPy's generator (dropout on the GPU) exposes no state to save: there a resumed run's
    masks differ (ARCHITECTURE.md says so)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    return {RNG + "kind": np.asarray(kind), RNG + "keys": np.asarray(keys, dtype=np.uint32),
            RNG + "pos": np.asarray(pos, dtype=np.int64), RNG + "has_gauss": np.asarray(has_gauss, dtype=np.int64),
            RNG + "gauss": np.asarray(gauss, dtype=np.float64)}


def _set_rng_state(data: dict[str, np.ndarray]) -> None:
    """Restore :func:`_rng_state`; a checkpoint written before it existed has none."""
    if RNG + "keys" not in data:
        return
    np.random.set_state((str(data[RNG + "kind"]), data[RNG + "keys"], int(data[RNG + "pos"]),
                         int(data[RNG + "has_gauss"]), float(data[RNG + "gauss"])))


def _gpu_count() -> int:
    try:
        return cuda.cupy.cuda.runtime.getDeviceCount()
    except Exception:  # CUDARuntimeError when there is no driver
        return 0


class ChainerBackend:
    name: ClassVar[str] = "chainer"
    supports_onnx: ClassVar[bool] = BACKENDS[name].supports_onnx  # via onnx-chainer
    supports_distributed: ClassVar[bool] = BACKENDS[name].supports_distributed  # via ChainerMN
    supports_training: ClassVar[bool] = BACKENDS[name].supports_training
    checkpoint_suffix: ClassVar[str] = BACKENDS[name].checkpoint_suffix

    def __init__(self) -> None:
        self.device = chainer.get_device("@numpy")
        self.spec: ModelSpec | None = None
        self.optim_spec: OptimSpec | None = None
        self.model: chainer.Chain | None = None
        self.optimizer: chainer.Optimizer | None = None
        self._mean = self._std = None
        self.precision = "fp32"

    # ---------------------------------------------------------------- Environment
    def versions(self) -> dict[str, str]:
        return {
            "chainer": chainer.__version__,
            "cupy": cuda.cupy.__version__ if cuda.available else "",
            "cudnn": _cudnn_version(),
            "numpy": np.__version__,
            "blas": blas.blas_name(),
        }

    def devices(self) -> list[DeviceStatus]:
        found = [DeviceStatus("cpu", True, f"CPU, numpy {blas.blas_name()}, {blas.blas_threads()} BLAS threads")]
        reason = _cuda_unavailable_reason()
        if reason is not None:
            return found + [DeviceStatus("cuda", False, reason)]
        runtime = cuda.cupy.cuda.runtime
        return found + [DeviceStatus(f"cuda:{i}", True, runtime.getDeviceProperties(i)["name"].decode())
                        for i in range(_gpu_count())]

    def configure(self, *, device: str, threads: int | None, seed: int, deterministic: bool = False,
                  precision: str = "fp32", compile: str = "none") -> dict[str, Any]:
        if precision not in CONFIG_DTYPE or compile != "none":  # the harness refuses these first (BACKENDS)
            raise Unsupported(f"chainer cannot run --precision {precision} --compile {compile}: use fp32 and none")
        self.device = self._parse_device(device)
        self.precision = precision
        if threads is not None and threads < 1:
            raise BenchError(f"--threads must be at least 1, got {threads}")
        np.random.seed(seed)  # Chainer draws dropout masks and default inits from numpy's RNG
        # Process-wide: set either way, so a deterministic run does not leak into the next.
        # On the CPU (numpy) every kernel is deterministic already.
        chainer.global_config.cudnn_deterministic = deterministic
        settings: dict[str, Any] = {"device": device, "cudnn_deterministic": deterministic}
        if self._on_gpu:
            self.device.use()
            cuda.cupy.random.seed(seed)
            # Fixed input shapes: let cuDNN time its convolution algorithms once, keep the
            # fastest (not in deterministic mode: the timing may pick another algorithm).
            chainer.global_config.autotune = not deterministic
            chainer.global_config.use_cudnn = "auto"
            settings.update(cudnn=bool(cuda.cudnn_enabled), autotune=not deterministic,
                            # how the harness finds this GPU in NVML (harness/measure/gpu_select.py)
                            pci_bus_id=self.device.device.pci_bus_id)
        settings.update(blas.thread_report(threads))
        return settings

    def execution(self) -> dict[str, Any]:
        """run.json's record of how the arithmetic ran: precision (no compiler in Chainer)."""
        mixed = self.precision == "fp16-mixed"
        return {"precision": {"precision": self.precision, "format": PRECISIONS[self.precision].format,
                              "config_dtype": str(CONFIG_DTYPE[self.precision]),
                              "param_dtype": "float16 (float32 master copies)" if mixed else "float32",
                              "loss_scaling": "dynamic" if mixed else None},
                "compile": {"mode": "none"}}

    @staticmethod
    def _parse_device(device: str):
        parsed = parse_device(device)
        if not parsed.is_cuda:
            return chainer.get_device("@numpy")
        index = parsed.ordinal
        assert index is not None  # a CUDA device always has one
        reason = _cuda_unavailable_reason()
        if reason is not None:
            raise Unsupported(f"CUDA was requested but {reason}; use --device cpu")
        count = _gpu_count()
        if index >= count:
            raise Unsupported(f"{device} was requested but only {count} CUDA device(s) are visible: "
                             f"use cuda:0 .. cuda:{count - 1}")
        return chainer.get_device(f"@cupy:{index}")

    @property
    def _on_gpu(self) -> bool:
        return self.device.xp is not np

    def _sync(self) -> None:
        if self._on_gpu:
            self.device.device.synchronize()

    # ---------------------------------------------------------------- Model
    def build(self, model: ModelSpec, optim: OptimSpec, inputs: InputSpec) -> None:
        if optim.name not in optimizers.OPTIMIZERS:  # fail before building a large model
            raise BenchError(f"unknown optimiser {optim.name!r}: choose one of {', '.join(optimizers.OPTIMIZERS)}")
        self.spec, self.optim_spec = model, optim
        with chainer.using_config("dtype", CONFIG_DTYPE[self.precision]):
            net = build_model(model)
        net.to_device(self.device)
        self.model = net
        self.optimizer = optimizers.make_optimizer(optim, net)
        if self.precision == "fp16-mixed":
            # mixed16 makes convolution/linear weights float16; the update runs on float32 master
            # copies (use_fp32_update), the loss scale is dynamic (halved on overflow, update skipped).
            self.optimizer.use_fp32_update()
            self.optimizer.loss_scaling()
        for link in freeze_links(net):  # needs the update rules that setup() just made
            link.disable_update()
        xp = self.device.xp
        self._mean = xp.asarray(np.asarray(inputs.mean, dtype=np.float32).reshape(1, 3, 1, 1))
        self._std = xp.asarray(np.asarray(inputs.std, dtype=np.float32).reshape(1, 3, 1, 1))

    def param_count(self) -> tuple[int, int]:
        params = list(self._net.params())
        trainable = [p for p in params if p.update_rule is not None and p.update_rule.enabled]
        return sum(p.size for p in params), sum(p.size for p in trainable)

    def set_lr(self, lr: float) -> None:
        optimizers.set_lr(self._optim, lr)

    @property
    def _net(self) -> chainer.Chain:
        if self.model is None:
            raise RuntimeError("ChainerBackend.build() must be called first")
        return self.model

    @property
    def _optim(self) -> chainer.Optimizer:
        if self.optimizer is None:
            raise RuntimeError("ChainerBackend.build() must be called first")
        return self.optimizer

    # ---------------------------------------------------------------- Data hand-over
    def _images(self, images: np.ndarray):
        """uint8 NHWC numpy -> normalised float32 NCHW on the device."""
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
            raise TypeError(f"expected uint8 (N, H, W, 3) images, got {images.dtype} {images.shape}")
        xp = self.device.xp
        x = self.device.send(np.ascontiguousarray(images))
        x = xp.ascontiguousarray(x.transpose(0, 3, 1, 2)).astype(np.float32)
        x /= np.float32(255.0)
        x -= self._mean
        x /= self._std
        return x.astype(np.float16) if self.precision == "fp16-mixed" else x

    def _labels(self, labels: np.ndarray):
        # int32: what Chainer's softmax_cross_entropy kernels index with.
        return self.device.send(np.ascontiguousarray(labels, dtype=np.int32))

    @contextlib.contextmanager
    def _mode(self, train: bool) -> Iterator[None]:
        """Train or eval config; no graph in eval; no argument type checks in timed loops."""
        with chainer.using_device(self.device), chainer.using_config("train", train), \
                chainer.using_config("enable_backprop", train), chainer.using_config("type_check", False), \
                chainer.using_config("dtype", CONFIG_DTYPE[self.precision]):
            yield

    # ---------------------------------------------------------------- Training
    def _forward_train(self, x):
        net = self._net
        if backbone_is_frozen(net):
            # Nothing before the head trains: no backward graph through the backbone at all.
            with chainer.no_backprop_mode():
                features = net.forward_features(x)
            return getattr(net, net.head_name)(features)
        return net(x)

    def _update(self, forward: Callable, x, t):
        """One optimiser step; returns (logits array, mean loss array)."""
        logits = forward(x)
        loss = F.softmax_cross_entropy(F.cast(logits, np.float32), t)  # the loss in float32, as torch's
        self._net.cleargrads()
        loss.backward()
        self._optim.update()
        return logits.array, loss.array

    def _train_step(self, batch: Batch):
        x, t = self._images(batch.images), self._labels(batch.labels)
        logits, loss = self._update(self._forward_train, x, t)
        return logits, loss, t

    def train_epoch(self, batches: Iterable[Batch], on_step: StepCallback | None = None) -> TrainStats:
        with self._mode(train=True):  # frozen BatchNorms keep running statistics (models.common)
            return self._loop(batches, TrainStats(), self._train_step, on_step)

    def train_step_probe(self, batch: Batch) -> float:
        """Exactly one training step on ``batch``; returns its mean loss (the parity check
        compares this first step across frameworks from identical weights)."""
        with self._mode(train=True):
            _, loss, _ = self._train_step(batch)
        return float(loss)

    def train_head_epoch(self, feature_batches: Iterable[tuple[np.ndarray, np.ndarray]],
                         on_step: StepCallback | None = None) -> TrainStats:
        """One epoch of the classifier alone on cached :meth:`features` outputs (float32
        (N, F) features, int64 labels); same accounting as :meth:`train_epoch`. Only the head
        gets gradients, so the optimisers skip every other parameter, as torch's do."""
        head = getattr(self._net, self._net.head_name)

        def step(batch: tuple[np.ndarray, np.ndarray]):
            features, labels = batch
            x = self.device.send(np.ascontiguousarray(features, dtype=np.float32))
            t = self._labels(labels)
            logits, loss = self._update(head, x, t)
            return logits, loss, t

        with self._mode(train=True):
            return self._loop(feature_batches, TrainStats(), step, on_step)

    def _loop(self, batches: Iterable[Any], stats: TrainStats, step: Callable[[Any], tuple],
              on_step: StepCallback | None = None) -> TrainStats:
        """:func:`harness.backend.run_pass` with this framework's step: the batch's loss sum
        as Chainer computes it (``loss * n``), on the device; run_pass fetches logits, loss
        and labels to the host one step later (``fetch``: with CuPy, no sync per step)."""
        cpu = chainer.backend.CpuDevice()

        def framework_step(batch: Any) -> tuple:
            logits, loss, t = step(batch)
            return logits, loss * t.shape[0], t

        def fetch(result: tuple) -> StepResult:
            logits, loss_sum, t = result
            return cpu.send(logits), float(loss_sum), cpu.send(t)

        return run_pass(batches, stats, framework_step, sync=self._sync, on_step=on_step, fetch=fetch)

    # ---------------------------------------------------------------- Inference
    def evaluate(self, batches: Iterable[Batch]) -> EvalStats:
        net = self._net

        def step(batch: Batch):
            x, t = self._images(batch.images), self._labels(batch.labels)
            logits = F.cast(net(x), np.float32)
            return logits.array, F.softmax_cross_entropy(logits, t).array, t

        with self._mode(train=False):
            stats = self._loop(batches, EvalStats(), step)
        assert isinstance(stats, EvalStats)
        return stats

    def predict(self, images: np.ndarray) -> np.ndarray:
        return self._infer(self._net, images)

    def features(self, images: np.ndarray) -> np.ndarray:
        """Eval-mode outputs of everything before the classifier (float32, N x F), for the
        feature cache of frozen-backbone runs."""
        return self._infer(self._net.forward_features, images)

    def _infer(self, forward: Callable, images: np.ndarray) -> np.ndarray:
        if not len(images):
            raise ValueError("no images to run")
        outputs = []
        with self._mode(train=False):
            for i in range(0, len(images), PREDICT_CHUNK):
                y = forward(self._images(images[i:i + PREDICT_CHUNK]))
                outputs.append(chainer.backend.CpuDevice().send(y.array).astype(np.float32))
        return np.concatenate(outputs).astype(np.float32, copy=False)

    def layer_summary(self, image_size: int) -> list[dict[str, Any]]:
        """One eval-mode forward of a blank image traced by a link hook on every link that
        holds parameters itself (convolutions, BatchNorms, linears), in the order they ran:
        name (torchvision's, through weights.canonical_entries), type, output shape without
        the batch axis, parameters."""
        names = {id(link): name.rsplit(".", 1)[0] for name, (link, _, _) in weights.canonical_entries(self._net).items()}
        rows: list[dict[str, Any]] = []

        class Trace(chainer.LinkHook):
            name = "bench_layer_summary"

            def forward_postprocess(self, args: Any) -> None:
                if id(args.link) in names:
                    rows.append({"layer": names[id(args.link)], "type": type(args.link).__name__,
                                 "output_shape": list(args.out.shape[1:]),
                                 "params": sum(p.size for p in args.link.params(include_uninit=False))})

        with Trace():
            self.predict(np.zeros((1, image_size, image_size, 3), dtype=np.uint8))
        return rows

    # ---------------------------------------------------------------- State
    def state_arrays(self) -> dict[str, np.ndarray]:
        return weights.state_arrays(self._net)

    def load_arrays(self, arrays: dict[str, np.ndarray], *, strict: bool = True) -> None:
        weights.load_arrays(self._net, arrays, strict=strict, describe=self._describe())

    def _describe(self) -> str:
        s = self.spec
        return "the model" if s is None else f"{s.name} (shortcut {s.shortcut}, head {s.head}, {s.num_classes} classes)"

    def save_checkpoint(self, path: Path) -> None:
        """One .npz: canonical model arrays under ``model/``, Chainer's optimiser state
        (step counts, velocities or moments, by Chainer parameter path) under ``optimizer/``,
        and ``__bench__/*`` keys saying what wrote it."""
        optimizer_state: dict[str, Any] = {}
        self._optim.serialize(chainer.serializers.DictionarySerializer(optimizer_state))
        arrays = {f"model/{k}": v for k, v in self.state_arrays().items()}
        arrays.update({f"optimizer/{k}": np.asarray(v) for k, v in optimizer_state.items()})
        spec = dataclasses.asdict(self.spec) if self.spec else {}
        arrays.update({
            MARK + "backend": np.asarray(self.name),
            MARK + "model": np.asarray(self.spec.name if self.spec else ""),
            MARK + "spec": np.asarray(json.dumps(spec)),
            MARK + "optimizer": np.asarray(self.optim_spec.name if self.optim_spec else ""),
            MARK + "lr": np.asarray(optimizers.get_lr(self._optim), dtype=np.float64),
        })
        arrays.update(_rng_state())
        with open(path, "wb") as f:  # a file object: np.savez would otherwise append ".npz"
            np.savez(f, **arrays)

    def load_checkpoint(self, path: Path) -> None:
        data = self._read_checkpoint(Path(path))
        name = self.spec.name if self.spec else ""
        if str(data[MARK + "model"]) != name:
            raise BenchError(f"{path} holds a {str(data[MARK + 'model'])!r} checkpoint, not {name!r}: "
                             f"resume with --model {data[MARK + 'model']}")
        saved_optim = str(data.get(MARK + "optimizer", ""))
        if self.optim_spec and saved_optim != self.optim_spec.name:
            raise BenchError(f"{path} was written with --optimizer {saved_optim}: resume with that optimiser")
        model = {k[len("model/"):]: v for k, v in data.items() if k.startswith("model/")}
        state = {k[len("optimizer/"):]: v for k, v in data.items() if k.startswith("optimizer/")}
        own = {p.lstrip("/") for p, _ in self._net.namedparams()}
        foreign = sorted({k.rsplit("/", 1)[0] for k in state if "/" in k} - own)
        if foreign:
            raise BenchError(f"{path} has optimiser state for parameters this model lacks ({', '.join(foreign[:3])}): "
                             "resume with the same --model/--shortcut/--head it was written with")
        weights.check_fit(self._net, model, what="the checkpoint weights", describe=self._describe())
        try:
            # strict=False: parameters that never took a step (frozen, or untouched by
            # head-only training) have no saved state and keep none.
            self._optim.serialize(chainer.serializers.NpzDeserializer(state, strict=False))
        except (KeyError, ValueError, TypeError) as exc:
            raise BenchError(f"{path} does not fit this run ({exc}): resume with the same "
                             "--freeze/--no-skip/--optimizer settings it was written with") from None
        weights.load_arrays(self._net, model, what="the checkpoint weights", describe=self._describe())
        # The saved velocities belong to the saved lr: adopt it without rescaling them.
        optimizers.set_lr(self._optim, float(data[MARK + "lr"]), rescale=False)
        _set_rng_state(data)

    def _read_checkpoint(self, path: Path) -> dict[str, np.ndarray]:
        if not path.is_file():
            raise BenchError(f"checkpoint {path} does not exist: check the path or start without resuming")
        try:
            with np.load(path, allow_pickle=False) as npz:
                if MARK + "backend" not in npz.files:
                    torch_file = any(f.endswith("data.pkl") for f in npz.files)
                    writer = "the torch backend (a .pt file)" if torch_file else "something else"
                    raise BenchError(f"{path} is not a Chainer bench checkpoint (it looks like {writer}): "
                                     "resume with the backend that wrote it")
                data = {k: npz[k] for k in npz.files}
        except BenchError:
            raise
        except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as exc:
            raise BenchError(f"cannot read checkpoint {path} ({type(exc).__name__}: {exc}): the file is "
                             "damaged or not a Chainer checkpoint; delete it or pass another one") from None
        backend = str(data[MARK + "backend"])
        if backend != self.name:
            raise BenchError(f"{path} was written by the {backend!r} backend: resume it with that backend")
        return data
