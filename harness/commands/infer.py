"""`bench infer`: accuracy, top-5 and latency/throughput of a trained model, in any backend.

The work is in :mod:`harness.infer`; this module parses flags, runs the steps in order
(everything that can fail on the user's input -- flags, paths, files, the framework, the
device -- fails before a results folder is created), and prints what a person reads.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness import schema as R
from harness.backend import REGISTRY
from harness.config import RunConfig
from harness.data.dataset import Dataset
from harness.data.stream import eval_stream
from harness.errors import BenchError
from harness.infer import (DEFAULT_BATCH_SIZES, Loaded, Source, accuracy, file_sha256,
                           load_model, pick_image, resolve_source, run_config, time_predict, top5)
from harness.experiments import context
from harness.train.prepare import load_data, resolve_device
from harness.train.rundir import ensure_writable, new_run_dir, now_iso
from harness.measure.sysinfo import machine_info

NAME = "infer"


@dataclass
class InferOptions:
    backend: str | None = None  # None: the backend that trained the run (or the file's)
    device: str = "cpu"
    batch_sizes: tuple[int, ...] = DEFAULT_BATCH_SIZES
    image: Path | None = None
    index: int | None = None  # None (and no image): test image 0, as the seed's script
    warmup: int = 5  # untimed predict() calls per batch size
    iters: int = 50  # timed predict() calls per batch size
    threads: int | None = None
    results_dir: Path = Path("results")
    data_dir: Path | None = None  # None: the run's
    run: Path | None = None  # the run folder of a FILE that lies elsewhere

    def validate(self) -> "InferOptions":
        if not self.batch_sizes or any(b < 1 for b in self.batch_sizes):
            raise BenchError(f"--batch-sizes must be positive integers, got {','.join(map(str, self.batch_sizes))}")
        if self.iters < 1 or self.warmup < 0:
            raise BenchError("--iters must be >= 1 and --warmup >= 0")
        if self.threads is not None and self.threads < 1:
            raise BenchError(f"--threads must be at least 1, got {self.threads}")
        if self.image is not None and self.index is not None:
            raise BenchError("--image and --index both choose the image to classify: pass one")
        return self


def infer_command(path: Path, opts: InferOptions, command: str) -> Path:
    """Everything `bench infer` does; returns the new results folder."""
    opts.validate()
    ensure_writable(opts.results_dir)
    source = resolve_source(path, backend=opts.backend, run=opts.run)
    config = run_config(source, opts.data_dir)
    opts.device = resolve_device(opts.device, source.backend)  # auto -> cuda when the backend can use it, else cpu
    dataset = load_data(config)
    _check_dataset(source, dataset)
    loaded = load_model(source, config, device=opts.device, threads=opts.threads)
    image, picked = pick_image(dataset, loaded.spec.image_size, image=opts.image, index=opts.index,
                               eval_resize=config.eval_resize)
    run_dir = new_run_dir(opts.results_dir, f"infer-{source.backend}", config.model)
    meta = _infer_meta(run_dir, source, config, dataset, loaded, opts, command)
    R.write_json(run_dir / R.RUN_JSON, meta)
    base = {"run_id": run_dir.name, "backend": source.backend, "model": config.model, "dataset": config.dataset,
            "device": opts.device}
    writer = R.CsvAppender(run_dir / R.INFER_CSV, list(R.INFER_COLUMNS))
    try:
        meta["accuracy"] = acc = accuracy(loaded.backend, dataset, loaded.spec.image_size,
                                          config.evaluation_batch_size, eval_resize=config.eval_resize)
        meta["prediction"] = picked | {"top5": top5(loaded.backend, image, dataset.class_names)}
        R.write_json(run_dir / R.RUN_JSON, meta)
        _print_head(meta)
        pool = next(iter(eval_stream(dataset.test_images[:max(opts.batch_sizes)],
                                     dataset.test_labels[:max(opts.batch_sizes)],
                                     batch_size=max(opts.batch_sizes), out_size=loaded.spec.image_size))).images
        print(f"{'batch':>6s} {'p50 ms':>9s} {'p90 ms':>9s} {'p99 ms':>9s} {'mean ms':>9s} {'images/s':>10s}")
        for row in time_predict(loaded.backend, pool, opts.batch_sizes, warmup=opts.warmup, iters=opts.iters):
            writer.append(base | row | {"top1_acc": acc["top1_acc"], "top5_acc": acc["top5_acc"]})
            print(f"{row['batch_size']:>6d} {row['latency_p50_ms']:>9.2f} {row['latency_p90_ms']:>9.2f} "
                  f"{row['latency_p99_ms']:>9.2f} {row['latency_mean_ms']:>9.2f} {row['images_per_s']:>10.1f}",
                  flush=True)
        meta["status"] = R.COMPLETED
    except KeyboardInterrupt:
        meta["status"] = R.INTERRUPTED
        raise
    except BaseException as exc:
        meta["status"], meta["error"] = R.FAILED, f"{type(exc).__name__}: {exc}"
        raise
    finally:
        writer.close()
        meta["ended_at"] = now_iso()
        R.write_json(run_dir / R.RUN_JSON, meta)
    print(f"-> {run_dir}")
    return run_dir


def _check_dataset(source: Source, dataset: Dataset) -> None:
    want = source.meta["dataset"]
    if len(dataset.class_names) != int(want["num_classes"]):
        raise BenchError(f"the dataset now has {len(dataset.class_names)} classes, the run was trained on "
                         f"{want['num_classes']}: point --data-dir at the data the run used")
    if want.get("sha256") and dataset.identity.get("sha256") != want["sha256"]:
        print(f"bench: warning: the test data differ from the run's (sha256 {str(dataset.identity.get('sha256'))[:12]} "
              f"vs {str(want['sha256'])[:12]}); accuracy is on the data found now", file=sys.stderr)


def _infer_meta(run_dir: Path, source: Source, config: RunConfig, dataset: Dataset, loaded: Loaded,
                opts: InferOptions, command: str) -> R.RunMeta:
    backend = loaded.backend
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in dataclasses.asdict(opts).items()}
    settings.update(backend=source.backend, batch_sizes=list(opts.batch_sizes), model=config.model,
                    dataset=config.dataset, image_size=loaded.spec.image_size)
    session = backend.session_options() if hasattr(backend, "session_options") else None
    total, _ = backend.param_count()
    src = source.meta
    return R.build_meta(
        kind=R.KIND_INFER, run_id=run_dir.name, command=command, settings=settings, machine=machine_info(),
        threads=R.threads_section(opts.threads, loaded.thread_settings),
        backend={"name": source.backend, "versions": backend.versions(), "session": session},
        source={"run_id": src.get("run_id"), "run_dir": str(source.run_dir.resolve()) if source.run_dir else None,
                "model_file": str(source.model_file.resolve()), "model_file_sha256": file_sha256(source.model_file),
                "trained_with": src["backend"]["name"], "status": src.get("status"),
                "epochs_completed": src.get("epochs_completed"), "group": src.get("group"),
                "settings": src["settings"]},
        model={"name": config.model, "params": total, "image_size": loaded.spec.image_size,
               "num_classes": loaded.spec.num_classes, "shortcut": loaded.spec.shortcut, "head": loaded.spec.head},
        dataset=dataset.identity | {"num_classes": len(dataset.class_names), "class_names": dataset.class_names,
                                    "matches_source": dataset.identity.get("sha256") == src["dataset"].get("sha256")},
        timing={"what": "one backend.predict() call: uint8 NHWC in, logits on the host out",
                "warmup_calls": opts.warmup, "timed_calls": opts.iters, "clock": "time.perf_counter"},
        accuracy=None, prediction=None,
        **context.infer_meta(),  # key, experiment and startup_s when a suite started it
    )


def _print_head(meta: R.RunMeta) -> None:
    acc, pred, s = meta["accuracy"], meta["prediction"], meta["settings"]
    assert acc is not None and pred is not None, "printed once both are measured"
    print(f"{s['model']} via {s['backend']} on {s['device']}, from run {meta['source']['run_id']}")
    print(f"test set ({s['dataset']}, {acc['images']} images): top-1 {acc['top1_acc']:.4f}  top-5 {acc['top5_acc']:.4f}")
    what = (f"image {pred['image']}" if "image" in pred
            else f"test image {pred['test_index']} (label {pred['label']} {pred['label_name']})")
    print(f"{what}: top-1 {pred['top5'][0]['name']}; top-5:")
    for p in pred["top5"]:
        print(f"  {p['rank']}. {p['name']:<16s} class {p['class']:<4d} p = {p['probability']:.4f}")


# --- argument parsing ----------------------------------------------------------------------

def _batch_sizes(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers like 1,8,32, got {text!r}") from None
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"batch sizes must be positive, got {text!r}")
    return sizes


def add_parser(sub: Any) -> None:
    d = InferOptions()
    p = sub.add_parser(
        NAME, help="accuracy, top-5 and latency/throughput of a trained model, in any backend",
        description="Load a checkpoint from `bench run` (or its `bench export` ONNX model) and record top-1/top-5 "
                    "accuracy on the run's test set, the top-5 classes of one image, and predict() latency "
                    "percentiles and images/s per batch size, in results/<id>/ (run.json + infer.csv).")
    a = p.add_argument
    a("path", type=Path, metavar="RUN_DIR|CHECKPOINT",
      help="a run folder, or checkpoint.pt / checkpoint.npz / model.onnx (in a run folder, or see --run)")
    a("--backend", choices=list(REGISTRY),
      help="backend to run it (default: the run's, or the file's: .pt torch, .npz chainer, .onnx onnxruntime)")
    a("--device", default=d.device, help=f"cpu, cuda, cuda:N or auto (cuda when usable, else cpu; default: {d.device})")
    a("--batch-sizes", type=_batch_sizes, default=d.batch_sizes, metavar="N,N,...",
      help=f"batch sizes to time (default: {','.join(map(str, DEFAULT_BATCH_SIZES))})")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--image", type=Path, metavar="FILE", help="classify this image file (resized and centre-cropped)")
    g.add_argument("--index", type=int, metavar="N", help="classify test image N (default: 0)")
    a("--warmup", type=int, default=d.warmup, metavar="N", help=f"untimed calls per batch size (default: {d.warmup})")
    a("--iters", type=int, default=d.iters, metavar="N",
      help=f"timed calls per batch size; p99 needs >= 100 to mean more than the maximum (default: {d.iters})")
    a("--threads", type=int, help="CPU threads for the framework / ONNX Runtime (default: the framework's own)")
    a("--results-dir", type=Path, default=d.results_dir, help=f"where the results folder is created (default: {d.results_dir})")
    a("--data-dir", type=Path, help="where the run's dataset is found (default: the run's --data-dir)")
    a("--run", type=Path, metavar="RUN_DIR", help="the training run a CHECKPOINT file elsewhere belongs to")


def run(args: argparse.Namespace) -> int:
    opts = InferOptions(backend=args.backend, device=args.device, batch_sizes=tuple(args.batch_sizes),
                        image=args.image, index=args.index, warmup=args.warmup, iters=args.iters,
                        threads=args.threads, results_dir=args.results_dir, data_dir=args.data_dir, run=args.run)
    infer_command(args.path, opts, args.command_line)
    return 0
