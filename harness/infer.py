"""`bench infer` and `bench export`: a trained run's model, measured and exported in any backend.

``bench infer RUN_DIR|FILE`` loads the checkpoint a `bench run` wrote (torch ``.pt``, Chainer
``.npz``) or the ``.onnx`` that `bench export` made from it (onnxruntime), and records, in a
results folder of its own (``results/<id>/run.json`` with ``"kind": "infer"`` + infer.csv):

- top-1 and top-5 accuracy on the run's test set (same dataset, same subset, same resize);
- the top-5 classes with probabilities for one image (``--index N`` of the test set, or
  ``--image FILE``), as the Chainer seed's inference script prints them;
- latency percentiles and throughput of ``backend.predict`` at each ``--batch-sizes``.

What is timed is one ``predict`` call: uint8 NHWC images in, float32 logits on the host out,
so preprocessing and host<->device copies count, identically for every backend. ``predict``
returns host memory, so the device has finished when it returns (torch copies the logits
with ``.cpu()``, Chainer with ``CpuDevice().send``, ONNX Runtime's ``run`` is synchronous):
``time.perf_counter()`` is read after a synchronised result. Warm-up calls are not timed.

``bench export RUN_DIR|FILE --format onnx`` writes ``model.onnx`` (in the run folder unless
``--out``) through ``backends/<fw>_impl/export.py``, checks it in ONNX Runtime against the
framework's own ``predict`` at batch sizes other than the traced one, and writes the
comparison beside it (``model.onnx.json``, the "sidecar", which also names the source run).
"""
from __future__ import annotations

import dataclasses
import importlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from harness import __version__
from harness import schema as R
from harness.cache import file_sha256
from harness.backend import BACKENDS, Backend, InputSpec, ModelSpec, OptimSpec, create_backend
from harness.config import RunConfig
from harness.data.dataset import Dataset
from harness.data.preprocess import Preprocess
from harness.data.stream import eval_stream
from harness.errors import BenchError
from harness.metrics import top1_top5
from harness.train.prepare import model_specs
from harness.train.rundir import now_iso

ONNX_NAME = "model.onnx"  # where `bench export` writes in a run folder, and `bench infer` looks
# Each backend's ``checkpoint_suffix``, known without importing the framework (its capability
# entry), so that a file the backend cannot read is refused in a blink.
CHECKPOINT_SUFFIX = {name: entry.checkpoint_suffix for name, entry in BACKENDS.items()}
SUFFIX_BACKEND = {suffix: name for name, suffix in CHECKPOINT_SUFFIX.items()}
VERIFIER = "onnxruntime"  # runs an exported file to compare it with the framework
VERIFY_RTOL = 1e-4  # float32: max |onnx - framework| <= 1e-4 x max(1, max |logit|)
DEFAULT_BATCH_SIZES = (1, 8, 32, 128)


# --- where the model and its run come from -------------------------------------------------

@dataclass
class Source:
    meta: dict[str, Any]  # the training run's run.json (or the sidecar's copy of it)
    run_dir: Path | None
    model_file: Path  # checkpoint.pt / checkpoint.npz / model.onnx
    backend: str  # the backend that will read model_file


def sidecar_path(onnx_path: Path) -> Path:
    return onnx_path.with_name(onnx_path.name + ".json")


def resolve_source(path: Path, *, backend: str | None = None, run: Path | None = None) -> Source:
    """RUN_DIR: its checkpoint for ``backend`` (default: the backend that trained it), or its
    model.onnx for onnxruntime. FILE: that file, with the run folder it lies in, ``run``, or
    (for an .onnx elsewhere) the run its sidecar names."""
    path = Path(path)
    if path.is_dir():
        if run is not None:
            raise BenchError("--run pairs a model FILE with its run folder: with a RUN_DIR, leave --run out")
        meta = _train_meta(path)
        name = backend or meta["backend"]["name"]
        return Source(meta, path, _model_file_in(path, meta, name), name)
    if not path.is_file():
        raise BenchError(f"{path} does not exist: pass a run folder (results/<run_id>) or a checkpoint or .onnx file")
    name = backend or SUFFIX_BACKEND.get(path.suffix)
    if name is None:
        raise BenchError(f"cannot tell which backend reads {path.name}: pass --backend")
    _check_suffix(path, name)
    if run is not None:
        return Source(_train_meta(Path(run)), Path(run), path, name)
    if (path.parent / R.RUN_JSON).is_file():
        return Source(_train_meta(path.parent), path.parent, path, name)
    meta, run_dir = _meta_from_sidecar(path)
    return Source(meta, run_dir, path, name)


def _train_meta(folder: Path) -> dict[str, Any]:
    meta = R.read_meta(folder)
    if meta.get("kind") == R.KIND_INFER:
        src = (meta.get("source") or {}).get("run_dir")
        raise BenchError(f"{folder} is an inference run (`bench infer`): pass the training run it measured ({src})")
    if not isinstance(meta.get("settings"), dict) or not isinstance(meta.get("dataset"), dict):
        raise BenchError(f"{folder}/{R.RUN_JSON} lacks settings or dataset: it was not written by `bench run`")
    return meta


def _suffix(name: str) -> str:
    return CHECKPOINT_SUFFIX[name]


def _model_file_in(run_dir: Path, meta: dict[str, Any], name: str) -> Path:
    suffix = _suffix(name)
    if suffix == ".onnx":
        path = run_dir / ONNX_NAME
        if not path.is_file():
            raise BenchError(f"{run_dir} has no {ONNX_NAME}: run `bench export {run_dir} --format onnx` first, "
                             "or pass the .onnx file with --run RUN_DIR")
        return path
    path = run_dir / f"checkpoint{suffix}"
    if not path.is_file():
        trained = meta["backend"]["name"]
        if trained != name:
            raise BenchError(f"{run_dir} was trained with {trained}, and --backend {name} cannot read its "
                             f"checkpoint: use --backend {trained}, or `bench export` it and use --backend {VERIFIER}")
        raise BenchError(f"{run_dir} has no {path.name}: the run stopped before its first checkpoint")
    return path


def _check_suffix(path: Path, name: str) -> None:
    suffix = _suffix(name)
    if path.suffix == suffix:
        return
    owner = SUFFIX_BACKEND.get(path.suffix)
    if owner is None:
        return  # an unusual name: let the backend's own reader judge the contents
    if suffix == ".onnx":
        raise BenchError(f"{path} is a {owner} checkpoint, not an ONNX model: `bench export` it first, then "
                         f"pass the .onnx to --backend {name}")
    what = "an ONNX model" if path.suffix == ".onnx" else f"a {owner} checkpoint"
    raise BenchError(f"{path} is {what}, and --backend {name} reads {suffix} checkpoints: use --backend {owner}")


def _meta_from_sidecar(path: Path) -> tuple[dict[str, Any], Path | None]:
    side = sidecar_path(path)
    if side.is_file():
        try:
            src = json.loads(side.read_text()).get("source") or {}
        except (OSError, ValueError, AttributeError):
            raise BenchError(f"{side} is not valid JSON: export the model again with `bench export`") from None
        run_dir = Path(src["run_dir"]) if src.get("run_dir") else None
        if run_dir is not None and (run_dir / R.RUN_JSON).is_file():
            return _train_meta(run_dir), run_dir
        if isinstance(src.get("meta"), dict):
            return src["meta"], None
    raise BenchError(f"cannot tell which run {path} belongs to (no run.json beside it, no sidecar naming one): "
                     "pass --run RUN_DIR")


# --- building the model from the run's settings --------------------------------------------

@dataclass
class Loaded:
    backend: Backend
    spec: ModelSpec
    optim: OptimSpec
    inputs: InputSpec
    thread_settings: dict[str, Any]


def run_config(source: Source, data_dir: Path | None = None) -> RunConfig:
    config = RunConfig.from_recorded(source.meta["settings"], Path("."))
    if data_dir is not None:
        config.data_dir = Path(data_dir)
    return config


def load_model(source: Source, config: RunConfig, *, device: str, threads: int | None) -> Loaded:
    backend = create_backend(source.backend)
    thread_settings = backend.configure(device=device, threads=threads, seed=int(source.meta.get("seed", 0)))
    spec, optim, inputs = model_specs(config, int(source.meta["dataset"]["num_classes"]))
    backend.build(spec, optim, inputs)
    backend.load_checkpoint(source.model_file)  # BenchError for a damaged, foreign or mismatched file
    return Loaded(backend, spec, optim, inputs, thread_settings)


# --- measuring -----------------------------------------------------------------------------

def accuracy(backend: Backend, dataset: Dataset, image_size: int, batch_size: int, *,
             eval_resize: int | None = None) -> dict[str, Any]:
    """Top-1/top-5 over the test set, batched and resized exactly as `bench run` evaluates
    (``eval_resize``: the run's ``--eval-resize``)."""
    hits1 = hits5 = count = 0
    pre = Preprocess(image_size=image_size, eval_resize=eval_resize)
    for batch in pre.eval_stream(dataset, "test", batch_size=batch_size):
        h1, h5 = top1_top5(backend.predict(batch.images), batch.labels)
        hits1, hits5, count = hits1 + h1, hits5 + h5, count + len(batch.labels)
    return {"top1_acc": hits1 / count, "top5_acc": hits5 / count, "images": count, "batch_size": batch_size}


def top5(backend: Backend, image: np.ndarray, class_names: Sequence[str]) -> list[dict[str, Any]]:
    logits = backend.predict(image[None]).astype(np.float64)[0]
    probs = np.exp(logits - logits.max())
    probs /= probs.sum()
    order = np.argsort(-logits, kind="stable")[:5]
    return [{"rank": r + 1, "class": int(c), "name": class_names[c], "probability": float(probs[c])}
            for r, c in enumerate(order)]


def pick_image(dataset: Dataset, image_size: int, *, image: Path | None,
               index: int | None, eval_resize: int | None = None) -> tuple[np.ndarray, dict[str, Any]]:
    """One uint8 (H, W, 3) image: a file (shorter side resized to ``eval_resize`` or the
    image size, centre crop, as image folders load) or test image ``index`` (resized as the
    test set is); and how to describe it."""
    if image is not None:
        from PIL import Image, UnidentifiedImageError

        from harness.data.imagefolder import load_image
        try:
            # np.array: Pillow's buffer is read-only, which torch.from_numpy warns about
            return np.array(load_image(Path(image), image_size, eval_resize)), {"image": str(image)}
        except (OSError, ValueError, UnidentifiedImageError, Image.DecompressionBombError) as exc:
            raise BenchError(f"cannot read image {image} ({exc}): pass a JPEG or PNG file") from None
    n = len(dataset.test_labels)
    index = 0 if index is None else index
    if not 0 <= index < n:
        raise BenchError(f"--index {index} is out of range: the test set has {n} images (0 to {n - 1})")
    resize_to = None if dataset.preprocessed else eval_resize
    batch = next(iter(eval_stream(dataset.test_images[index:index + 1], dataset.test_labels[index:index + 1],
                                  batch_size=1, out_size=image_size, resize_to=resize_to)))
    label = int(batch.labels[0])
    return batch.images[0], {"test_index": index, "label": label, "label_name": dataset.class_names[label]}


def time_predict(backend: Backend, pool: np.ndarray, batch_sizes: Sequence[int], *,
                 warmup: int, iters: int) -> Iterator[dict[str, Any]]:
    """Per batch size: ``warmup`` untimed calls, then ``iters`` timed ones (see module doc)."""
    for size in batch_sizes:
        x = np.ascontiguousarray(pool[np.arange(size) % len(pool)])
        for _ in range(warmup):
            backend.predict(x)
        times = np.empty(iters)
        for i in range(iters):
            t0 = time.perf_counter()
            backend.predict(x)
            times[i] = time.perf_counter() - t0
        p50, p90, p99 = np.percentile(times, [50, 90, 99]) * 1e3
        yield {"batch_size": size, "images": size * iters, "latency_p50_ms": p50, "latency_p90_ms": p90,
               "latency_p99_ms": p99, "latency_mean_ms": times.mean() * 1e3,
               "images_per_s": size * iters / times.sum()}


# --- export ------------------------------------------------------------------------------

def _exporter(backend: Backend) -> Any:
    """``export_onnx`` of the backend's package (``backends/<fw>_impl/export.py``)."""
    if not getattr(backend, "supports_onnx", False):
        raise BenchError(f"the {backend.name} backend cannot export to ONNX")
    package = type(backend).__module__.rsplit(".", 1)[0]
    try:
        module = importlib.import_module(f"{package}.export")
    except ModuleNotFoundError as exc:
        missing = (exc.name or "").split(".")[0]
        if missing in {"onnx", "onnxscript", "onnxruntime"}:
            raise BenchError(f"exporting to ONNX needs {missing}, which is not installed: run "
                             "scripts/ensure-venv.sh or `pip install -e .[onnx]`") from None
        raise
    if not hasattr(module, "export_onnx"):
        raise BenchError(f"the {backend.name} backend has no ONNX exporter ({package}.export.export_onnx)")
    return module.export_onnx


def verify_onnx(loaded: Loaded, path: Path, *, images: int = 5, seed: int = 0) -> dict[str, Any]:
    """Run ``path`` in ONNX Runtime (CPU) and compare with the framework's ``predict`` on the same
    uint8 images, as one batch of 1 and one of ``images - 1``: neither is the traced batch,
    so this also shows that the batch dimension is dynamic."""
    runner = create_backend(VERIFIER)
    runner.configure(device="cpu", threads=None, seed=seed)
    runner.build(loaded.spec, loaded.optim, loaded.inputs)
    runner.load_checkpoint(path)
    size = loaded.spec.image_size
    x = np.random.default_rng(seed).integers(0, 256, (images, size, size, 3), dtype=np.uint8)
    want = loaded.backend.predict(x)
    got = np.concatenate([runner.predict(x[:1]), runner.predict(x[1:])])
    diff = float(np.abs(got.astype(np.float64) - want).max())
    scale = max(1.0, float(np.abs(want).max()))
    return {"compared_with": loaded.backend.name, "runtime": VERIFIER, "images": images,
            "batch_sizes": [1, images - 1], "max_abs_diff": diff, "max_abs_logit": float(np.abs(want).max()),
            "tolerance": VERIFY_RTOL * scale, "ok": diff <= VERIFY_RTOL * scale,
            "same_top1": bool((got.argmax(1) == want.argmax(1)).all())}


def export_onnx(loaded: Loaded, out: Path, *, opset: int | None = None,
                source: dict[str, Any] | None = None) -> dict[str, Any]:
    """Export, check (onnx.checker in the exporter, then :func:`verify_onnx`), and only then put
    the file at ``out`` and its sidecar beside it. Returns the sidecar's contents."""
    export = _exporter(loaded.backend)
    spec = loaded.spec
    metadata = {"bench_spec": json.dumps(dataclasses.asdict(spec)), "bench_framework": loaded.backend.name,
                "bench_mean": json.dumps(list(loaded.inputs.mean)), "bench_std": json.dumps(list(loaded.inputs.std)),
                "bench_input": "float32 NCHW, (uint8 / 255 - mean) / std", "bench_version": __version__}
    if source and source.get("run_id"):
        metadata["bench_source_run"] = str(source["run_id"])
    out = Path(out)
    with R.atomic_path(out, suffix=".onnx") as tmp:
        info = export(loaded.backend, tmp, opset=opset, metadata=metadata)
        check = verify_onnx(loaded, tmp)
        if not check["ok"]:
            raise BenchError(f"the exported {spec.name} disagrees with {loaded.backend.name}: max |difference| "
                             f"{check['max_abs_diff']:.3g} > tolerance {check['tolerance']:.3g}; nothing was written")
        digest = file_sha256(tmp)
    sidecar = {
        "format": "onnx", "file": out.name, "sha256": digest, "bytes": out.stat().st_size,
        "created_at": now_iso(), "bench_version": __version__, "framework": loaded.backend.name,
        "framework_versions": loaded.backend.versions(), **info,
        "input": {"name": "images", "shape": ["batch", 3, spec.image_size, spec.image_size], "dtype": "float32",
                  "preprocessing": "uint8 NHWC -> NCHW, (x / 255 - mean) / std", "mean": list(loaded.inputs.mean),
                  "std": list(loaded.inputs.std)},
        "output": {"name": "logits", "shape": ["batch", spec.num_classes], "dtype": "float32"},
        "model": dataclasses.asdict(spec), "check": check, "source": source or {},
    }
    R.write_json(sidecar_path(out), sidecar)
    return sidecar


def source_record(source: Source) -> dict[str, Any]:
    """What the sidecar says about the run, with enough of its run.json (``meta``) for
    `bench infer FILE.onnx` to rebuild the test set where the run folder is absent."""
    meta = source.meta
    keep = ("schema_version", "run_id", "settings", "seed", "dataset", "backend", "model", "status",
            "epochs_completed", "group")
    return {"run_id": meta.get("run_id"), "run_dir": str(source.run_dir.resolve()) if source.run_dir else None,
            "checkpoint": str(source.model_file.resolve()), "checkpoint_sha256": file_sha256(source.model_file),
            "meta": {k: meta[k] for k in keep if k in meta}}
