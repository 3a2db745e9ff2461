"""The PyTorch implementation of :class:`harness.backend.Backend` (the reference backend).

Data path: the harness hands over uint8 NHWC numpy batches; they cross to the device as
uint8 (4x fewer bytes than float32), pinned and non-blocking on CUDA, and are normalised
there. ``permute(0, 3, 1, 2)`` of an NHWC buffer *is* a channels_last NCHW tensor, so the
channels_last layout costs no copy.

Timing and accounting: :func:`harness.backend.run_pass` (shared by every backend);
``_sync`` is ``torch.cuda.synchronize()`` on CUDA so queued kernels are counted.
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
import platform
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterable

import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from torch import Tensor, nn

from backends.torch_impl.models import build_model
from harness.backend import (
    BACKENDS, Batch, DeviceStatus, EvalStats, InputSpec, ModelSpec, OptimSpec, StepCallback, StepResult,
    TrainStats, run_pass,
)
from harness.device import parse_device
from harness.errors import BenchError, Unsupported
from harness.precision import PRECISIONS

PREDICT_CHUNK = 256  # images per forward in predict()/features()
# resnet20, batch 128, SGD training on this 2-core CPU (torch 2.14.1, 2 threads, idle
# machine): 449-468 img/s contiguous vs 615-621 img/s channels_last (+33 %), so channels_last
# is used on CPU as well as on CUDA. Measured with a 3-step warm-up and 8 timed steps per run.
CHANNELS_LAST = {"cpu": True, "cuda": True}
# --precision -> the autocast dtype (mixed precisions) or the parameters' dtype (pure).
AUTOCAST_DTYPE = {"bf16-mixed": torch.bfloat16, "fp16-mixed": torch.float16}
PARAM_DTYPE = {"bf16": torch.bfloat16}


def _cuda_unavailable_reason() -> str:
    # On aarch64 (a Jetson) the registry's wheel is a CPU / server-GPU build: the fix is the
    # platform's own torch, which scripts/ensure-venv.sh uses with BENCH_TORCH=system.
    fix = ("use the platform's torch (on a Jetson, NVIDIA's JetPack wheel) with BENCH_TORCH=system ./run.sh, "
           "see README 'Orin Nano / Jetson'" if platform.machine() == "aarch64" else "install a CUDA wheel of torch")
    if torch.version.cuda is None:
        return f"this torch build ({torch.__version__}) has no CUDA support: {fix}"
    return "torch.cuda.is_available() is False: no NVIDIA driver/GPU visible on this machine"


class TorchBackend:
    name: ClassVar[str] = "torch"
    supports_onnx: ClassVar[bool] = BACKENDS[name].supports_onnx
    supports_distributed: ClassVar[bool] = BACKENDS[name].supports_distributed
    supports_training: ClassVar[bool] = BACKENDS[name].supports_training
    checkpoint_suffix: ClassVar[str] = BACKENDS[name].checkpoint_suffix

    def __init__(self) -> None:
        self.device = torch.device("cpu")
        self.spec: ModelSpec | None = None
        self.model: nn.Module | None = None
        self.optimizer: torch.optim.Optimizer | None = None
        self.criterion = nn.CrossEntropyLoss()
        self.memory_format = torch.contiguous_format
        self._mean: Tensor | None = None
        self._std: Tensor | None = None
        self.precision = "fp32"
        self.compile_mode = "none"
        self.forward: nn.Module | Callable[[Tensor], Tensor] | None = None  # the model, or torch.compile's wrapper
        self.scaler: torch.amp.GradScaler | None = None
        self._compile_info: dict[str, Any] = {}

    # ---------------------------------------------------------------- Environment
    def versions(self) -> dict[str, str]:
        cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
        return {
            "torch": torch.__version__,
            "torchvision": torchvision.__version__,
            "cuda": torch.version.cuda or "",
            "cudnn": str(cudnn or ""),
            "mkl": "yes" if torch.backends.mkl.is_available() else "no",
            "mkldnn": "yes" if torch.backends.mkldnn.is_available() else "no",
            "openmp": "yes" if torch.backends.openmp.is_available() else "no",
        }

    def devices(self) -> list[DeviceStatus]:
        found = [DeviceStatus("cpu", True, f"CPU, {torch.get_num_threads()} torch threads")]
        if torch.cuda.is_available():
            found += [DeviceStatus(f"cuda:{i}", True, torch.cuda.get_device_name(i))
                      for i in range(torch.cuda.device_count())]
        else:
            found.append(DeviceStatus("cuda", False, _cuda_unavailable_reason()))
        return found

    def configure(self, *, device: str, threads: int | None, seed: int, deterministic: bool = False,
                  precision: str = "fp32", compile: str = "none") -> dict[str, Any]:
        self.device = self._parse_device(device)
        if deterministic:
            # cuBLAS is deterministic only with a fixed workspace, read when its handle is
            # created (PyTorch docs, "Reproducibility"); set before the first matmul.
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        # Process-wide: set either way, so a deterministic run does not leak into the next.
        # warn_only: on CUDA, AdaptiveAvgPool2d's backward and NLLLoss (every model here, and
        # the loss) have no deterministic kernel and would raise (torch docs,
        # use_deterministic_algorithms); they warn and stay as they are, everything else is
        # deterministic. run.json records this.
        torch.use_deterministic_algorithms(deterministic, warn_only=deterministic)
        torch.backends.cudnn.deterministic = deterministic
        self.precision, self.compile_mode = precision, compile
        self._check_precision()
        if compile != "none":
            self._compile_info = self._check_compiler()
        if threads is not None:
            if threads < 1:
                raise BenchError(f"--threads must be at least 1, got {threads}")
            torch.set_num_threads(threads)
        torch.manual_seed(seed)  # seeds every CUDA device too (dropout masks)
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
            # Fixed input shapes: let cuDNN time its algorithms once and keep the fastest
            # (not in deterministic mode: the timing may pick a different algorithm each run).
            torch.backends.cudnn.benchmark = not deterministic
            # fp32 means float32: torch lets cuDNN convolutions use TF32 unless told otherwise.
            tf32 = precision == "tf32"
            torch.backends.cuda.matmul.allow_tf32 = tf32
            torch.backends.cudnn.allow_tf32 = tf32
        settings = {
            "device": str(self.device),
            "torch_num_threads": torch.get_num_threads(),
            "torch_num_interop_threads": torch.get_num_interop_threads(),
            "cudnn_benchmark": bool(torch.backends.cudnn.benchmark),
            "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
            "deterministic_warn_only": torch.is_deterministic_algorithms_warn_only_enabled(),
            "cudnn_deterministic": bool(torch.backends.cudnn.deterministic),
        }
        if self.device.type == "cuda":  # how the harness finds this GPU in NVML (harness/measure/gpu_select.py)
            props = torch.cuda.get_device_properties(self.device)
            settings["pci_bus_id"] = f"{props.pci_domain_id:04x}:{props.pci_bus_id:02x}:{props.pci_device_id:02x}.0"
        return settings

    def _check_precision(self) -> None:
        """What the capability flags cannot know: the GPU's generation."""
        if self.device.type != "cuda":
            if self.precision == "tf32":  # the harness refuses it first (BACKENDS flags)
                raise Unsupported("--precision tf32 is an NVIDIA tensor-core format: use --device cuda")
            return
        major, minor = torch.cuda.get_device_capability(self.device)
        if self.precision == "tf32" and major < 8:
            raise Unsupported(f"--precision tf32 needs an NVIDIA GPU of compute capability 8.0 (Ampere) or newer; "
                             f"{torch.cuda.get_device_name(self.device)} is {major}.{minor}: use fp32 or fp16-mixed")
        if self.precision in ("bf16", "bf16-mixed") and not torch.cuda.is_bf16_supported():
            raise Unsupported(f"--precision {self.precision}: {torch.cuda.get_device_name(self.device)} has no "
                             f"bfloat16 support: use fp16-mixed")

    def _check_compiler(self) -> dict[str, Any]:
        """What inductor needs before it is asked to compile (a C++ compiler on the CPU, Triton on
        CUDA), as one BenchError; and where its cache is and whether it already held entries,
        so a run says whether it paid for a first compile or reused cached kernels."""
        from torch._inductor import config as inductor_config
        from torch._inductor.runtime.cache_dir_utils import cache_dir

        found = ""
        if self.device.type == "cpu":
            from torch._inductor import cpp_builder
            from torch._inductor.exc import InvalidCxxCompiler
            try:
                found = cpp_builder.get_cpp_compiler()
            except InvalidCxxCompiler:
                wanted = [c for c in inductor_config.cpp.cxx if c] if isinstance(inductor_config.cpp.cxx, (list, tuple)) \
                    else [inductor_config.cpp.cxx]
                raise Unsupported(f"--compile {self.compile_mode} on the CPU needs a C++ compiler and "
                                 f"{' or '.join(map(str, wanted))} (from $CXX, default g++) was not found or does not "
                                 f"run: install one (apt-get install g++) or set CXX, or use --compile none") from None
        else:
            from torch.utils._triton import has_triton
            if not has_triton():
                raise Unsupported(f"--compile {self.compile_mode} on CUDA needs Triton, which is not installed or "
                                 "does not support this GPU: pip install triton, or use --compile none")
            found = "triton"
        where = Path(cache_dir())
        entries = sum(1 for _ in where.rglob("*")) if where.is_dir() else 0
        return {"mode": self.compile_mode, "backend": "inductor", "compiler": found, "cache_dir": str(where),
                "cache_dir_from": "TORCHINDUCTOR_CACHE_DIR" if os.environ.get("TORCHINDUCTOR_CACHE_DIR") else "default",
                "cache_entries_before": entries,
                "cache": "warm (entries before the run: kernels may be reused)" if entries else
                         "cold (empty: first compile)"}

    def execution(self) -> dict[str, Any]:
        """run.json's record of how the arithmetic ran: precision and compilation."""
        info: dict[str, Any] = {"precision": self.precision, "format": PRECISIONS[self.precision].format,
                                "autocast_dtype": str(AUTOCAST_DTYPE.get(self.precision, "")).replace("torch.", ""),
                                "param_dtype": str(PARAM_DTYPE.get(self.precision, torch.float32)).replace("torch.", ""),
                                "grad_scaler": self.scaler is not None}
        if self.device.type == "cuda":
            info.update(tf32_matmul=bool(torch.backends.cuda.matmul.allow_tf32),
                        tf32_cudnn=bool(torch.backends.cudnn.allow_tf32))
        return {"precision": info, "compile": self._compile_info or {"mode": "none"}}

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        dtype = AUTOCAST_DTYPE.get(self.precision)
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=dtype)

    def _compiles(self) -> int:
        """Graphs dynamo has compiled so far in this process; run_pass times the steps in which
        it grew as compile time (the lazy backward compile happens in the same step)."""
        from torch._dynamo.utils import counters
        return int(counters["stats"]["unique_graphs"])

    @staticmethod
    def _parse_device(device: str) -> torch.device:
        parsed = parse_device(device)
        if not parsed.is_cuda:
            return torch.device("cpu")
        index = parsed.ordinal
        assert index is not None  # a CUDA device always has one
        if not torch.cuda.is_available():
            raise Unsupported(f"CUDA was requested but {_cuda_unavailable_reason()}; use --device cpu")
        count = torch.cuda.device_count()
        if index >= count:
            raise Unsupported(f"{device} was requested but only {count} CUDA device(s) are visible: "
                             f"use cuda:0 .. cuda:{count - 1}")
        return torch.device("cuda", index)

    # ---------------------------------------------------------------- Model
    def build(self, model: ModelSpec, optim: OptimSpec, inputs: InputSpec) -> None:
        self.spec = model
        use_cl = CHANNELS_LAST[self.device.type]
        self.memory_format = torch.channels_last if use_cl else torch.contiguous_format
        self.model = build_model(model).to(self.device, dtype=PARAM_DTYPE.get(self.precision, torch.float32),
                                           memory_format=self.memory_format)
        self.forward = self.model
        if self.compile_mode != "none":
            # The module is compiled, not the step: its parameters stay the model's (state_dict,
            # checkpoints unchanged). "default" is torch.compile's own default mode.
            mode = None if self.compile_mode == "default" else self.compile_mode
            self.forward = torch.compile(self.model, mode=mode)
        self.scaler = torch.amp.GradScaler(self.device.type) if self.precision == "fp16-mixed" else None
        params = [p for p in self.model.parameters() if p.requires_grad]
        if optim.name == "sgd":
            self.optimizer = torch.optim.SGD(
                params, lr=optim.lr, momentum=optim.momentum, weight_decay=optim.weight_decay)
        elif optim.name == "adam":  # coupled L2 (torch's Adam), not AdamW
            self.optimizer = torch.optim.Adam(params, lr=optim.lr, weight_decay=optim.weight_decay)
        else:
            raise BenchError(f"unknown optimiser {optim.name!r}: choose sgd or adam")
        shape = (1, 3, 1, 1)
        self._mean = torch.tensor(inputs.mean, dtype=torch.float32, device=self.device).view(shape)
        self._std = torch.tensor(inputs.std, dtype=torch.float32, device=self.device).view(shape)

    def param_count(self) -> tuple[int, int]:
        params = list(self._net.parameters())
        return sum(p.numel() for p in params), sum(p.numel() for p in params if p.requires_grad)

    def set_lr(self, lr: float) -> None:
        for group in self._optim.param_groups:
            group["lr"] = lr

    @property
    def _net(self) -> nn.Module:
        if self.model is None:
            raise RuntimeError("TorchBackend.build() must be called first")
        return self.model

    @property
    def _forward(self) -> nn.Module | Callable[[Tensor], Tensor]:
        """What a training or evaluation step calls: torch.compile's wrapper with --compile."""
        return self.forward if self.forward is not None else self._net

    @property
    def _optim(self) -> torch.optim.Optimizer:
        if self.optimizer is None:
            raise RuntimeError("TorchBackend.build() must be called first")
        return self.optimizer

    # ---------------------------------------------------------------- Data hand-over
    def _images(self, images: np.ndarray) -> Tensor:
        """uint8 NHWC numpy -> normalised float32 NCHW on the device."""
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
            raise TypeError(f"expected uint8 (N, H, W, 3) images, got {images.dtype} {images.shape}")
        x = self._upload(np.ascontiguousarray(images))
        x = x.permute(0, 3, 1, 2).contiguous(memory_format=self.memory_format)
        x = x.float().div_(255.0).sub_(self._mean).div_(self._std)
        dtype = PARAM_DTYPE.get(self.precision)
        return x if dtype is None else x.to(dtype)

    def _upload(self, array: np.ndarray) -> Tensor:
        t = torch.from_numpy(array)
        if self.device.type == "cuda":
            # Pinned host memory lets the copy run asynchronously with queued kernels.
            return t.pin_memory().to(self.device, non_blocking=True)
        return t

    def _labels(self, labels: np.ndarray) -> Tensor:
        return self._upload(np.ascontiguousarray(labels, dtype=np.int64))

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    # ---------------------------------------------------------------- Training
    def _update(self, forward: Callable[[Tensor], Tensor], x: Tensor,
                y: Tensor) -> tuple[Tensor, Tensor]:
        """One optimiser step; returns detached (logits, mean loss). Under autocast for the
        mixed precisions; the loss in float32; fp16-mixed scales it (GradScaler) so small
        gradients survive float16, and skips the update when they overflowed."""
        with self._autocast():
            logits = forward(x)
        loss = self.criterion(logits.float(), y)
        self._optim.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.step(self._optim)
            self.scaler.update()
        else:
            loss.backward()
            self._optim.step()
        return logits.detach(), loss.detach()

    def _train_step(self, batch: Batch) -> tuple[Tensor, Tensor, Tensor]:
        x, y = self._images(batch.images), self._labels(batch.labels)
        logits, loss = self._update(self._forward, x, y)
        return logits, loss, y

    def train_epoch(self, batches: Iterable[Batch], on_step: StepCallback | None = None) -> TrainStats:
        self._net.train()  # frozen BatchNorms stay in eval mode (models.freeze_backbone)
        return self._loop(batches, TrainStats(), self._train_step, on_step)

    def train_step_probe(self, batch: Batch) -> float:
        """Exactly one training step on ``batch``; returns its mean loss (the parity check
        compares this first step across frameworks from identical weights)."""
        self._net.train()
        _, loss, _ = self._train_step(batch)
        return float(loss)

    def train_head_epoch(self, feature_batches: Iterable[tuple[np.ndarray, np.ndarray]],
                         on_step: StepCallback | None = None) -> TrainStats:
        """One epoch of the classifier alone on cached ``features()`` outputs: the
        frozen-backbone experiment without re-running the backbone every epoch. Batches
        are (float32 features (N, F), int64 labels (N,)) pairs; same accounting as
        :meth:`train_epoch`. Only the head's parameters receive gradients."""
        head = self._net.get_submodule(self._net.head_name)
        head.train()

        def step(batch: tuple[np.ndarray, np.ndarray]) -> tuple[Tensor, Tensor, Tensor]:
            features, labels = batch
            x = self._upload(np.ascontiguousarray(features, dtype=np.float32))
            dtype = PARAM_DTYPE.get(self.precision)
            x = x if dtype is None else x.to(dtype)
            y = self._labels(labels)
            logits, loss = self._update(head, x, y)
            return logits, loss, y

        return self._loop(feature_batches, TrainStats(), step, on_step)

    def _loop(self, batches: Iterable[Any], stats: TrainStats,
              step: Callable[[Any], tuple[Tensor, Tensor, Tensor]],
              on_step: StepCallback | None = None) -> TrainStats:
        """:func:`harness.backend.run_pass` with this framework's step: the batch's loss sum
        as torch computes it (float32 ``loss * n``), queued on the device; run_pass fetches
        logits, loss and labels to the host one step later (``fetch``), so a GPU is never
        made to wait for the host's accounting."""
        # A CUDA-graph output (--compile reduce-overhead / max-autotune) is overwritten by the
        # next replay, which run_pass queues before fetching this step's logits: copy them.
        copy = self.device.type == "cuda" and self.compile_mode != "none"

        def framework_step(batch: Any) -> tuple[Tensor, Tensor, Tensor]:
            logits, loss, y = step(batch)
            logits = logits.float()
            return (logits.clone() if copy else logits), loss * y.shape[0], y

        def fetch(result: tuple[Tensor, Tensor, Tensor]) -> StepResult:
            logits, loss_sum, y = result
            return logits.cpu().numpy(), float(loss_sum), y.cpu().numpy()

        compiles = self._compiles if self.compile_mode != "none" else None
        return run_pass(batches, stats, framework_step, sync=self._sync, on_step=on_step, compiles=compiles,
                        fetch=fetch)

    # ---------------------------------------------------------------- Inference
    def evaluate(self, batches: Iterable[Batch]) -> EvalStats:
        self._net.eval()
        forward = self._forward

        def step(batch: Batch) -> tuple[Tensor, Tensor, Tensor]:
            x, y = self._images(batch.images), self._labels(batch.labels)
            with self._autocast():
                logits = forward(x)
            return logits, F.cross_entropy(logits.float(), y), y

        with torch.inference_mode():
            stats = self._loop(batches, EvalStats(), step)
        assert isinstance(stats, EvalStats)
        return stats

    def predict(self, images: np.ndarray) -> np.ndarray:
        return self._infer(self._net, images)

    def features(self, images: np.ndarray) -> np.ndarray:
        """Eval-mode outputs of everything before the classifier (float32, N x F), for the
        feature cache of frozen-backbone runs."""
        return self._infer(self._net.forward_features, images)

    def _infer(self, forward: Callable[[Tensor], Tensor], images: np.ndarray) -> np.ndarray:
        self._net.eval()
        outputs = []
        with torch.inference_mode():
            for i in range(0, len(images), PREDICT_CHUNK):
                with self._autocast():
                    outputs.append(forward(self._images(images[i:i + PREDICT_CHUNK])).float().cpu())
        if not outputs:
            raise ValueError("no images to run")
        return torch.cat(outputs).numpy()

    def layer_summary(self, image_size: int) -> list[dict[str, Any]]:
        """One eval-mode forward of a blank image with a forward hook on every module that
        holds parameters itself (convolutions, BatchNorms, linears), in the order they ran:
        name (torchvision's), type, output shape without the batch axis, parameters."""
        rows: list[dict[str, Any]] = []
        names = {m: n for n, m in self._net.named_modules()}

        def hook(module: nn.Module, _inputs: Any, output: Any) -> None:
            rows.append({"layer": names[module], "type": type(module).__name__,
                         "output_shape": list(output.shape[1:]),
                         "params": sum(p.numel() for p in module.parameters(recurse=False))})

        handles = [m.register_forward_hook(hook) for m in self._net.modules()
                   if next(m.parameters(recurse=False), None) is not None]
        try:
            self.predict(np.zeros((1, image_size, image_size, 3), dtype=np.uint8))
        finally:
            for handle in handles:
                handle.remove()
        return rows

    # ---------------------------------------------------------------- State
    def _state(self) -> dict[str, Tensor]:
        state = self._net.state_dict()
        return {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}

    def state_arrays(self) -> dict[str, np.ndarray]:
        # copy=True: on CPU .numpy() would otherwise alias the live parameters; the
        # contiguous format turns channels_last weights back into plain OIHW arrays.
        return {
            k: v.detach().to("cpu", torch.float32, memory_format=torch.contiguous_format, copy=True).numpy()
            for k, v in self._state().items()
        }

    def load_arrays(self, arrays: dict[str, np.ndarray], *, strict: bool = True) -> None:
        own = self._state()
        shapes = {k: tuple(np.shape(v)) for k, v in arrays.items()}
        self._check_fit(shapes, own, strict=strict, what="weights")
        with torch.no_grad():
            for name, array in arrays.items():
                if name in own:  # copy_ converts dtype, device and memory format
                    own[name].copy_(torch.from_numpy(np.asarray(array)))

    def _check_fit(self, shapes: dict[str, tuple[int, ...]], own: dict[str, Tensor], *,
                   strict: bool, what: str) -> None:
        """BenchError naming the first differences in names and shapes."""
        problems = []
        if strict:
            problems += [f"missing {k}" for k in own if k not in shapes]
            problems += [f"unexpected {k}" for k in shapes if k not in own]
        problems += [f"{k}: {tuple(shape)} but the model has {tuple(own[k].shape)}"
                     for k, shape in shapes.items() if k in own and tuple(shape) != tuple(own[k].shape)]
        if problems:
            more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
            raise BenchError(
                f"these {what} are for a different architecture than {self._describe()}: "
                f"{'; '.join(problems[:5])}{more}. "
                "Use the --model/--shortcut/--head/--classes they were made with"
            )

    def _describe(self) -> str:
        s = self.spec
        if s is None:
            return "the model"
        return f"{s.name} (shortcut {s.shortcut}, head {s.head}, {s.num_classes} classes)"

    def save_checkpoint(self, path: Path) -> None:
        torch.save({
            "bench_backend": self.name,
            "model_name": self.spec.name if self.spec else "",
            "model_spec": dataclasses.asdict(self.spec) if self.spec else {},
            "optimizer_name": type(self._optim).__name__,
            "model": self._net.state_dict(),
            "optimizer": self._optim.state_dict(),
            "rng": self._rng_state(),
            "grad_scaler": self.scaler.state_dict() if self.scaler is not None else None,
        }, path)

    def _rng_state(self) -> dict[str, Any]:
        """The generators dropout draws from, so a resumed run draws the masks the
        uninterrupted run would have (small_cnn, --head mlp)."""
        state: dict[str, Any] = {"cpu": torch.get_rng_state()}
        if self.device.type == "cuda":
            state["cuda"] = torch.cuda.get_rng_state(self.device)
        return state

    def _set_rng_state(self, state: dict[str, Any]) -> None:
        """Restore :meth:`_rng_state`; a checkpoint written before it existed has none (the
        masks then follow the fresh seed, as they did then)."""
        if "cpu" in state:
            torch.set_rng_state(state["cpu"].cpu())
        if "cuda" in state and self.device.type == "cuda":
            torch.cuda.set_rng_state(state["cuda"].cpu(), self.device)

    def load_checkpoint(self, path: Path) -> None:
        ckpt = self._read_checkpoint(Path(path))
        state = {k: v for k, v in ckpt["model"].items() if not k.endswith("num_batches_tracked")}
        shapes = {k: tuple(v.shape) for k, v in state.items()}
        self._check_fit(shapes, self._state(), strict=True, what="checkpoint weights")
        try:
            self._net.load_state_dict(ckpt["model"])
            self._optim.load_state_dict(ckpt["optimizer"])
            self._set_rng_state(ckpt.get("rng") or {})
            if self.scaler is not None and ckpt.get("grad_scaler"):
                self.scaler.load_state_dict(ckpt["grad_scaler"])  # the loss scale it had reached
        except (RuntimeError, ValueError, KeyError) as exc:
            raise BenchError(
                f"{path} does not fit this run ({_first_line(exc)}): resume with the same "
                "--freeze/--no-skip settings it was written with"
            ) from None

    def _read_checkpoint(self, path: Path) -> dict[str, Any]:
        """The checkpoint's dict, checked to be a torch checkpoint of this model and optimiser."""
        if not path.is_file():
            raise BenchError(f"checkpoint {path} does not exist: check the path or start without resuming")
        try:  # weights_only: a checkpoint is data, never code to unpickle
            ckpt = torch.load(path, map_location=self.device, weights_only=True)
        except Exception as exc:  # torch raises many types for a truncated or foreign file
            raise BenchError(
                f"cannot read checkpoint {path} ({type(exc).__name__}: {_first_line(exc)}): the file is "
                "damaged or not a torch checkpoint; delete it or pass another one"
            ) from None
        if not isinstance(ckpt, dict) or not isinstance(ckpt.get("model"), dict) or "optimizer" not in ckpt:
            raise BenchError(f"{path} is not a bench checkpoint (no model/optimizer state): "
                             "pass one that bench wrote")
        if ckpt.get("bench_backend") != self.name:
            raise BenchError(f"{path} was written by the {ckpt.get('bench_backend')!r} backend: "
                             "resume it with that backend")
        name = self.spec.name if self.spec else ""
        if ckpt.get("model_name") != name:
            raise BenchError(f"{path} holds a {ckpt.get('model_name')!r} checkpoint, not {name!r}: "
                             f"resume with --model {ckpt.get('model_name')}")
        optimizer = type(self._optim).__name__
        if ckpt.get("optimizer_name", optimizer) != optimizer:
            raise BenchError(f"{path} was trained with {ckpt['optimizer_name']}, this run uses {optimizer}: "
                             "resume with the optimiser it was written with")
        return ckpt


def _first_line(exc: BaseException) -> str:
    return (str(exc).splitlines() or [""])[0]
