"""ONNX Runtime as a :class:`harness.backend.Backend` for inference only.

It runs an ``.onnx`` file that `bench export` wrote from a torch or Chainer checkpoint: the
file takes float32 NCHW images already normalised, so this backend does the harness's
preprocessing -- uint8 NHWC -> ``(x / 255 - mean) / std`` in float32, the same operations in
the same order as the torch and Chainer backends -- in numpy before ``session.run``.

The "checkpoint" is the ``.onnx`` file. :meth:`load_checkpoint` refuses a file that is
damaged (not parseable), that changed since export (sha256 in the sidecar JSON), or that
holds a different model than the run (the ``bench_spec`` metadata `bench export` embeds,
then the input and output shapes). Training methods raise :class:`BenchError`:
``supports_training = False`` (its ``harness.backend.BACKENDS`` entry) keeps the harness from
trying.

Session options are fixed and recorded (:meth:`session_options`): all graph optimisations
(constant folding, Conv+BatchNorm fusion, ...), sequential execution, ``--threads`` intra-op
threads (ORT's default, one per physical core, when not given), one inter-op thread.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar, Iterable

import numpy as np
import onnxruntime as ort

from harness.backend import (BACKENDS, Batch, DeviceStatus, EvalStats, InputSpec, ModelSpec, OptimSpec,
                             StepCallback, StepResult, TrainStats, run_pass)
from harness.cache import file_sha256
from harness.device import parse_device
from harness.errors import BenchError

PREDICT_CHUNK = 256  # images per session.run in predict(), as the other backends
CUDA_EP, CPU_EP = "CUDAExecutionProvider", "CPUExecutionProvider"
# ModelSpec fields that change the function the model computes (freeze/train_bn do not).
SPEC_KEYS = ("name", "num_classes", "image_size", "shortcut", "no_skip", "head")


def preprocess(images: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """uint8 (N, H, W, 3) -> float32 (N, 3, H, W), ``(x / 255 - mean) / std`` as the torch
    and Chainer backends compute it (same float32 operations, same order)."""
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise TypeError(f"expected uint8 (N, H, W, 3) images, got {images.dtype} {images.shape}")
    x = np.ascontiguousarray(images.transpose(0, 3, 1, 2)).astype(np.float32)
    x /= np.float32(255.0)
    x -= mean
    x /= std
    return x


def _inference_only(what: str) -> BenchError:
    return BenchError(f"the onnxruntime backend runs exported models only and cannot {what}: "
                      "train with --backend torch or chainer, then `bench export` the run")


class OnnxRuntimeBackend:
    name: ClassVar[str] = "onnxruntime"
    supports_onnx: ClassVar[bool] = BACKENDS[name].supports_onnx
    supports_distributed: ClassVar[bool] = BACKENDS[name].supports_distributed
    supports_training: ClassVar[bool] = BACKENDS[name].supports_training
    checkpoint_suffix: ClassVar[str] = BACKENDS[name].checkpoint_suffix

    def __init__(self) -> None:
        self.device = "cpu"
        self.threads: int | None = None
        self.spec: ModelSpec | None = None
        self.session: ort.InferenceSession | None = None
        self.path: Path | None = None
        self._mean = self._std = np.zeros((1, 3, 1, 1), np.float32)
        self._params = 0

    # ---------------------------------------------------------------- Environment
    def versions(self) -> dict[str, str]:
        try:
            import onnx
            onnx_version = onnx.__version__
        except ImportError:
            onnx_version = ""
        return {"onnxruntime": ort.__version__, "onnx": onnx_version,
                "providers": ",".join(ort.get_available_providers())}

    def devices(self) -> list[DeviceStatus]:
        found = [DeviceStatus("cpu", True, f"{CPU_EP}, onnxruntime {ort.__version__}")]
        if CUDA_EP in ort.get_available_providers():
            found.append(DeviceStatus("cuda", True, f"{CUDA_EP} (onnxruntime-gpu)"))
        else:
            found.append(DeviceStatus("cuda", False, self._no_cuda_reason()))
        return found

    @staticmethod
    def _no_cuda_reason() -> str:
        return (f"this onnxruntime ({ort.__version__}) has no {CUDA_EP} (providers: "
                f"{', '.join(ort.get_available_providers())}): install onnxruntime-gpu instead of onnxruntime")

    def configure(self, *, device: str, threads: int | None, seed: int, deterministic: bool = False,
                  precision: str = "fp32", compile: str = "none") -> dict[str, Any]:
        if precision != "fp32" or compile != "none":  # BACKENDS' flags refuse these before here
            raise BenchError("onnxruntime runs an exported float32 graph: --precision fp32 --compile none")
        parsed = parse_device(device)
        if not parsed.is_cuda:
            self.device = "cpu"
        else:
            if CUDA_EP not in ort.get_available_providers():
                raise BenchError(f"CUDA was requested but {self._no_cuda_reason()}; or use --device cpu")
            self.device = f"cuda:{parsed.ordinal}"
        if threads is not None and threads < 1:
            raise BenchError(f"--threads must be at least 1, got {threads}")
        self.threads = threads
        del seed  # inference is deterministic; nothing to seed
        # ORT_SEQUENTIAL execution with fixed kernels: the same model and input give the same
        # output on every call, so --deterministic changes nothing here; recorded all the same.
        return {"device": self.device, "intra_op_num_threads": threads or 0, "inter_op_num_threads": 1,
                "deterministic": deterministic}

    # ---------------------------------------------------------------- Model
    def build(self, model: ModelSpec, optim: OptimSpec, inputs: InputSpec) -> None:
        """Remember what the run's model is; the network itself comes from :meth:`load_checkpoint`."""
        del optim  # nothing to train
        self.spec = model
        self._mean = np.asarray(inputs.mean, np.float32).reshape(1, 3, 1, 1)
        self._std = np.asarray(inputs.std, np.float32).reshape(1, 3, 1, 1)

    def _options(self) -> ort.SessionOptions:
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.intra_op_num_threads = self.threads or 0  # 0: ORT's default, one per physical core
        options.inter_op_num_threads = 1  # sequential execution uses none; fixed for the record
        options.log_severity_level = 3  # errors only: warnings become our own BenchErrors
        return options

    def _providers(self) -> list[Any]:
        if self.device.startswith("cuda"):
            return [(CUDA_EP, {"device_id": parse_device(self.device).ordinal}), CPU_EP]
        return [CPU_EP]

    def session_options(self) -> dict[str, Any]:
        """What run.json records about the session: threads, optimisation, providers in effect."""
        options = self._options()
        return {
            "intra_op_num_threads": options.intra_op_num_threads,
            "inter_op_num_threads": options.inter_op_num_threads,
            "graph_optimization_level": options.graph_optimization_level.name,
            "execution_mode": options.execution_mode.name,
            "providers_requested": [p[0] if isinstance(p, tuple) else p for p in self._providers()],
            "providers": self.session.get_providers() if self.session else [],
            "model_file": str(self.path) if self.path else None,
        }

    def param_count(self) -> tuple[int, int]:
        if self.session is None:
            raise BenchError("the onnxruntime backend counts parameters of a loaded .onnx file only")
        return self._params, 0

    # ---------------------------------------------------------------- Loading
    def load_checkpoint(self, path: Path) -> None:
        """Open the ``.onnx`` file and check that it is the run's model."""
        path = Path(path)
        if not path.is_file():
            raise BenchError(f"ONNX model {path} does not exist: run `bench export RUN_DIR --format onnx` first")
        self._check_sidecar(path)
        try:
            session = ort.InferenceSession(str(path), sess_options=self._options(), providers=self._providers())
        except Exception as exc:  # InvalidProtobuf, Fail, NoSuchFile...: a damaged or foreign file
            first = (str(exc).splitlines() or [""])[0][:300]
            raise BenchError(f"cannot load ONNX model {path} ({type(exc).__name__}: {first}): the file is "
                             "damaged or not an ONNX model; export it again with `bench export`") from None
        if self.device.startswith("cuda") and CUDA_EP not in session.get_providers():
            raise BenchError(f"onnxruntime could not start {CUDA_EP} for {path} (check the CUDA and cuDNN "
                             "libraries onnxruntime-gpu needs), or use --device cpu")
        self._check_fits(path, session)
        self.session, self.path = session, path
        self._params = self._count_params(path)

    @staticmethod
    def _check_sidecar(path: Path) -> None:
        sidecar = path.with_name(path.name + ".json")
        if not sidecar.is_file():
            return
        try:
            expected = json.loads(sidecar.read_text()).get("sha256")
        except (OSError, ValueError, AttributeError):
            raise BenchError(f"{sidecar} is not valid JSON: export the model again with `bench export`") from None
        if expected:
            if file_sha256(path) != expected:
                raise BenchError(f"{path} does not match the sha256 in {sidecar.name}: the file was changed or "
                                 "truncated since `bench export`; export it again")

    def _check_fits(self, path: Path, session: ort.InferenceSession) -> None:
        spec = self.spec
        if spec is None:
            raise RuntimeError("OnnxRuntimeBackend.build() must be called before load_checkpoint()")
        meta = session.get_modelmeta().custom_metadata_map
        if "bench_spec" in meta:
            try:
                saved = json.loads(meta["bench_spec"])
            except ValueError:
                saved = {}
            saved["no_skip"] = list(saved.get("no_skip", []))
            want = {k: list(v) if isinstance(v, tuple) else v for k, v in vars(spec).items()}
            diff = [f"{k} {saved.get(k)!r} (run: {want[k]!r})" for k in SPEC_KEYS if saved.get(k) != want[k]]
            if diff:
                raise BenchError(f"{path} holds a different model than this run: {'; '.join(diff)}. "
                                 "Pass the .onnx exported from this run (`bench export RUN_DIR --format onnx`)")
        inputs, outputs = session.get_inputs(), session.get_outputs()
        shape = list(inputs[0].shape) if len(inputs) == 1 else []
        want_in = [3, spec.image_size, spec.image_size]
        if len(shape) != 4 or any(isinstance(d, int) and d != w for d, w in zip(shape[1:], want_in)):
            raise BenchError(f"{path} takes inputs {[i.shape for i in inputs]}, not a batch of 3x{spec.image_size}"
                             f"x{spec.image_size} images: it is not this run's {spec.name}")
        out = list(outputs[0].shape) if outputs else []
        if not out or (isinstance(out[-1], int) and out[-1] != spec.num_classes):
            raise BenchError(f"{path} outputs {out}, not {spec.num_classes} class scores: it is not this run's model")

    @staticmethod
    def _count_params(path: Path) -> int:
        try:
            import onnx
        except ImportError:
            return 0
        model = onnx.load(str(path), load_external_data=False)
        return int(sum(int(np.prod(t.dims)) for t in model.graph.initializer if t.data_type == onnx.TensorProto.FLOAT))

    # ---------------------------------------------------------------- Inference
    def predict(self, images: np.ndarray) -> np.ndarray:
        if self.session is None:
            raise RuntimeError("OnnxRuntimeBackend.load_checkpoint() must be called first")
        if not len(images):
            raise ValueError("no images to run")
        name = self.session.get_inputs()[0].name
        outputs = [self.session.run(None, {name: preprocess(images[i:i + PREDICT_CHUNK], self._mean, self._std)})[0]
                   for i in range(0, len(images), PREDICT_CHUNK)]
        return np.concatenate(outputs).astype(np.float32, copy=False)

    def evaluate(self, batches: Iterable[Batch]) -> EvalStats:
        """:func:`harness.backend.run_pass` with the loss in numpy (float64 log-softmax);
        there is nothing to sync: ORT's ``run`` returns when the outputs are on the host."""
        def step(batch: Batch) -> StepResult:
            logits = self.predict(batch.images)
            wide = logits.astype(np.float64)
            shifted = wide - wide.max(axis=1, keepdims=True)
            log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
            labels = batch.labels
            return logits, float(-log_probs[np.arange(len(labels)), labels].sum()), labels

        stats = run_pass(batches, EvalStats(), step, sync=lambda: None)
        assert isinstance(stats, EvalStats)
        return stats

    # ---------------------------------------------------------------- Training: not supported
    def state_arrays(self) -> dict[str, np.ndarray]:
        raise _inference_only("hand out weights by name")

    def load_arrays(self, arrays: dict[str, np.ndarray], *, strict: bool = True) -> None:
        raise _inference_only("load initial weights")

    def set_lr(self, lr: float) -> None:
        raise _inference_only("set a learning rate")

    def train_epoch(self, batches: Iterable[Batch], on_step: StepCallback | None = None) -> TrainStats:
        raise _inference_only("train")

    def save_checkpoint(self, path: Path) -> None:
        raise _inference_only("write a training checkpoint")
