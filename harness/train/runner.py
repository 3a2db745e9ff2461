"""One `bench run`: train a backend epoch by epoch, measure, and record with nothing lost.

Flow of a run (see ARCHITECTURE.md):
  validate settings -> load data once -> for each repeat, for each backend:
    create backend, select device, build model, load the harness's canonical initial weights
    -> create results/<run_id>/ and run.json -> per epoch: train (prefetched batches), eval,
    checkpoint (temp + rename), checkpoint.json, one fsync'd epochs.csv row, run.json update.

Ordering is what makes `kill -9` safe: the checkpoint and checkpoint.json (which also holds
the epoch's row) are renamed into place before the row is appended. On --resume the rows
are cut back to the checkpoint's epoch, and a row that was lost between the two writes is
restored from checkpoint.json, so every completed epoch has exactly one row.
"""
from __future__ import annotations

import math
import os
import secrets
import signal
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Protocol

from harness import __version__
from harness import results as R
from harness.backend import (Backend, EvalStats, InputSpec, ModelSpec, OptimSpec, StepCallback, TrainStats,
                             create_backend)
from harness.catalogue import model_info
from harness.measure.allocator import tune_malloc
from harness.config import RunConfig, lr_at
from harness.data import load_dataset
from harness.data.dataset import Dataset
from harness.data.stream import BatchStream, prefetch
from harness.distributed import LOCAL, Dist, UtilRelay, combine_epoch, epoch_part, per_rank_record, state_digest
from harness.errors import BenchError, Diverged
from harness.measure.flops import train_flops_per_image
from harness.init_weights import initial_state
from harness.measure.monitor import Monitor
from harness.measure.sysinfo import machine_info
from harness.weights import apply as apply_weights

EXIT_OK, EXIT_USAGE, EXIT_DIVERGED, EXIT_INTERRUPTED = 0, 2, 3, 130


class Interrupted(BaseException):
    """SIGTERM or Ctrl-C: stop after recording, status ``interrupted``."""


@dataclass
class RunOutcome:
    run_dir: Path
    status: str

    @property
    def exit_code(self) -> int:
        return {R.COMPLETED: EXIT_OK, R.DIVERGED: EXIT_DIVERGED, R.INTERRUPTED: EXIT_INTERRUPTED}.get(self.status, 1)


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def ensure_writable(folder: Path) -> None:
    """Fail before any work if results cannot be written there."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".bench-write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise BenchError(f"results dir {folder} is not writable ({exc.strerror}): choose another with --results-dir") from None


def new_run_dir(results_dir: Path, backend: str, model: str) -> Path:
    """A folder no other run has: timestamp + random suffix, claimed with an exclusive mkdir,
    so two runs started in the same second into the same results dir never collide."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    for _ in range(100):
        path = results_dir / f"{stamp}-{backend}-{model}-{secrets.token_hex(3)}"
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
    raise BenchError(f"could not create a run folder in {results_dir}: clean it up or choose another --results-dir")


def load_data(config: RunConfig) -> Dataset:
    info = model_info(config.model)
    size = config.input_size if config.dataset.startswith("imagefolder:") else 32
    dataset = load_dataset(config.dataset, data_dir=config.data_dir, train_size=config.train_size,
                           test_size=config.test_size, seed=0, image_size=size, download=config.download)
    n_train = len(dataset.train_labels)
    if config.batch_size > n_train:
        raise BenchError(f"--batch-size {config.batch_size} is larger than the {n_train} training images: "
                         f"lower it or raise --train-size")
    del info
    return dataset


@dataclass
class Prepared:
    backend: Backend
    spec: ModelSpec
    thread_settings: dict[str, Any]
    flops_per_image: int
    weights: dict[str, Any] = field(default_factory=dict)  # run.json model.weights (harness/weights.py)


def model_specs(config: RunConfig, num_classes: int) -> tuple[ModelSpec, OptimSpec, InputSpec]:
    """What the backend builds from ``config``; `bench infer` rebuilds a run's model with it."""
    info = model_info(config.model)
    spec = ModelSpec(name=config.model, num_classes=num_classes, image_size=config.input_size,
                     shortcut=config.shortcut, no_skip=tuple(config.no_skip), head=config.head,
                     freeze=config.freeze, train_bn=config.train_bn)
    optim = OptimSpec(name=config.optimizer, lr=config.learning_rate, momentum=config.momentum,
                      weight_decay=config.weight_decay)
    return spec, optim, InputSpec(mean=info.mean, std=info.std)


def prepare_backend(config: RunConfig, name: str, seed: int, num_classes: int) -> Prepared:
    """Create, configure and build a backend, and load the canonical initial weights."""
    backend = create_backend(name)
    threads = backend.configure(device=config.device, threads=config.threads, seed=seed)
    threads["malloc"] = tune_malloc()  # reuse freed step buffers (harness/measure/allocator.py)
    spec, optim, inputs = model_specs(config, num_classes)
    backend.build(spec, optim, inputs)
    shapes = {k: tuple(v.shape) for k, v in backend.state_arrays().items()}
    backend.load_arrays(initial_state(shapes, seed))
    # --weights over the canonical init; a head that does not fit and --no-skip blocks keep
    # the canonical init ("re-initialised and trainable"). harness/weights.py.
    weights = apply_weights(backend, spec=config.weights, model=config.model, no_skip=tuple(config.no_skip),
                            download=config.download, quiet=config.quiet)
    flops = train_flops_per_image(model_info(config.model), image_size=spec.image_size, num_classes=num_classes,
                                  shortcut=spec.shortcut, head=spec.head,
                                  frozen_backbone=spec.freeze == "backbone")
    return Prepared(backend, spec, threads, flops, weights)


class _Signals:
    """Turn SIGTERM into :class:`Interrupted` for the duration of a run (Ctrl-C already
    raises KeyboardInterrupt), restoring the previous handler afterwards."""

    def __enter__(self) -> "_Signals":
        def handler(signum: int, frame: object) -> None:
            raise Interrupted()

        self._old = signal.signal(signal.SIGTERM, handler)
        return self

    def __exit__(self, *exc: object) -> None:
        signal.signal(signal.SIGTERM, self._old)


class Progress:
    """tqdm bar per epoch (images, loss, images/s) on stderr; silent with --quiet."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.bar: Any = None
        self.cost_s = 0.0  # time spent in the step callbacks since take_cost() (harness_s)
        if not quiet:
            import tqdm  # noqa: F401  (imported here, once, not inside the first epoch's timing)

    def start(self, desc: str, total: int) -> Callable[[int, float | None], None]:
        if self.quiet:
            def check_only(done: int, loss: float | None) -> None:
                if loss is not None and not math.isfinite(loss):
                    raise Diverged()
            return check_only
        from tqdm import tqdm

        t0 = time.perf_counter()
        self.bar = tqdm(total=total, desc=desc, unit="img", leave=False, dynamic_ncols=True, file=sys.stderr)
        self.cost_s += time.perf_counter() - t0

        def update(done: int, loss: float | None) -> None:
            t0 = time.perf_counter()
            try:
                self.bar.update(done - self.bar.n)
                if loss is not None:
                    if not math.isfinite(loss):
                        raise Diverged()
                    self.bar.set_postfix(loss=f"{loss:.3f}", refresh=False)
            finally:
                self.cost_s += time.perf_counter() - t0
        return update

    def take_cost(self) -> float:
        cost, self.cost_s = self.cost_s, 0.0
        return cost

    def close(self) -> None:
        if self.bar is not None:
            t0 = time.perf_counter()
            self.bar.close()
            self.bar = None
            self.cost_s += time.perf_counter() - t0

    def line(self, text: str) -> None:
        if not self.quiet:
            print(text, file=sys.stderr, flush=True)


def _gpu_index(device: str) -> int | None:
    if device == "cpu":
        return None
    return int(device.split(":")[1]) if ":" in device else 0


def _bn_statistics(config: RunConfig) -> str:
    """What happens to BatchNorm running statistics during training, for run.json."""
    if config.train_bn or config.freeze == "none":
        return "trained"
    return "frozen (trained only in the --no-skip blocks)" if config.no_skip else "frozen"


def start_run(config: RunConfig, name: str, seed: int, repeat_index: int, command: str,
              dataset: Dataset, prepared: Prepared,
              distributed: dict[str, Any] | None = None) -> tuple[Path, dict[str, Any]]:
    """Create the run folder and run.json. ``distributed``: run.json's section for a
    distributed run (harness.distributed.Dist.run_meta; rank 0 alone calls this)."""
    run_dir = new_run_dir(config.results_dir, name, config.model)
    total, trainable = prepared.backend.param_count()
    settings = config.settings()
    settings.update(backend=name, seed=seed)
    settings.pop("backends", None)
    meta: dict[str, Any] = {
        "schema_version": R.SCHEMA_VERSION, "run_id": run_dir.name, "bench_version": __version__,
        "status": R.RUNNING, "started_at": now_iso(), "ended_at": None, "command": command,
        "settings": settings, "seed": seed, "group": config.group_key(), "repeat_index": repeat_index,
        "dataset": dataset.identity | {"num_classes": len(dataset.class_names), "class_names": dataset.class_names},
        "model": {"name": config.model, "params": total, "trainable_params": trainable,
                  "image_size": prepared.spec.image_size, "train_flops_per_image": prepared.flops_per_image,
                  "shortcut": config.shortcut, "no_skip": list(config.no_skip), "head": config.head,
                  "freeze": config.freeze, "bn_statistics": _bn_statistics(config),
                  "init": f"harness canonical init (harness/init_weights.py), seed {seed}", "weights": config.weights,
                  # where --weights came from (path, sha256) and which parts kept the canonical init
                  "weights_source": prepared.weights},
        "machine": machine_info(),
        "threads": {"requested": config.threads, "env": {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")},
                    "framework": prepared.thread_settings},
        "backend": {"name": name, "versions": prepared.backend.versions()},
        "world_size": distributed["world_size"] if distributed else 1,
        "target_acc": config.target_acc, "time_to_target_s": None,
        "epochs_completed": 0, "resumes": [], "error": None,
    }
    if distributed:
        meta["distributed"] = distributed
    R.write_json(run_dir / R.RUN_JSON, meta)
    return run_dir, meta


class EpochSource(Protocol):
    """Where an epoch's training and evaluation come from. The default streams augmented
    batches through the whole model; other sources (a frozen backbone's cached features,
    a rank's shard) plug in here without touching the bookkeeping around them."""

    def train_images(self, epoch: int) -> int: ...

    def train(self, epoch: int, on_step: StepCallback) -> TrainStats: ...

    def evaluate(self, epoch: int) -> EvalStats: ...


@dataclass
class StreamSource:
    """Batches from :class:`BatchStream` (seeded by (seed, epoch)), built ahead by a thread."""

    config: RunConfig
    backend: Backend
    dataset: Dataset
    seed: int
    image_size: int
    # (rank, world) of a distributed run: this rank's part of every global batch, for training
    # and evaluation alike. config.batch_size is the global batch (it divides by world:
    # harness.distributed.plan checked), so the images of global step k never depend on world.
    shard: tuple[int, int] = (0, 1)

    def _stream(self, epoch: int, train: bool) -> BatchStream:
        d = self.dataset
        images, labels = (d.train_images, d.train_labels) if train else (d.test_images, d.test_labels)
        return BatchStream(images, labels, batch_size=self.config.batch_size // self.shard[1], seed=self.seed,
                           epoch=epoch, shuffle=train, augment=self.config.augmentation if train else "none",
                           out_size=self.image_size, drop_last=train, shard=self.shard)

    def train_images(self, epoch: int) -> int:
        return self._stream(epoch, True).num_images

    def train(self, epoch: int, on_step: StepCallback) -> TrainStats:
        with prefetch(self._stream(epoch, True)) as batches:
            return self.backend.train_epoch(batches, on_step)

    def evaluate(self, epoch: int) -> EvalStats:
        with prefetch(self._stream(epoch, False)) as batches:
            return self.backend.evaluate(batches)


def make_source(config: RunConfig, prepared: "Prepared", dataset: Dataset, seed: int) -> EpochSource:
    if config.cache_features:  # frozen backbone: its features once, then the head alone
        from harness.feature_cache import FeatureSource

        return FeatureSource(config, prepared, dataset, seed)
    return StreamSource(config, prepared.backend, dataset, seed, prepared.spec.image_size)


def train_loop(config: RunConfig, prepared: Prepared, dataset: Dataset, run_dir: Path, meta: dict[str, Any],
               seed: int, first_epoch: int, elapsed_offset: float, progress: Progress,
               dist: Dist = LOCAL) -> str:
    """Epochs ``first_epoch..config.epochs``; returns the final status. Writes every row.

    Distributed (``dist``, harness/distributed/): every rank runs this loop in step on its
    shard; each epoch's figures of all ranks are combined into one row (identically on every
    rank, so all take the same decisions), and only rank 0 (``writes``) touches the run folder.
    """
    backend = prepared.backend
    writes = dist.is_writer
    ckpt_path = run_dir / f"checkpoint{backend.checkpoint_suffix}"
    writer = R.CsvAppender(run_dir / R.EPOCHS_CSV, list(R.EPOCH_COLUMNS)) if writes else None
    base_row = {"run_id": run_dir.name, "backend": backend.name, "model": config.model, "dataset": config.dataset,
                "device": config.device, "batch_size": config.batch_size, "world_size": dist.world_size}
    # A rank streams its shard of every global batch (--cache-features is refused with --distributed).
    source = (StreamSource(config, backend, dataset, seed, prepared.spec.image_size, shard=dist.shard)
              if dist.distributed else make_source(config, prepared, dataset, seed))
    relay = UtilRelay(dist, run_dir / R.UTIL_CSV)  # ranks > 0 sample into a spool that rank 0 merges
    start = time.perf_counter()
    status = R.COMPLETED
    epoch = first_epoch
    try:
        with _Signals(), Monitor(relay.monitor_path, interval_s=config.sample_interval_s,
                                 gpu_index=_gpu_index(dist.rank_config(config).device),
                                 rank=dist.rank, start_time=start, elapsed_offset_s=elapsed_offset) as monitor:
            for epoch in range(first_epoch, config.epochs + 1):
                lr = lr_at(config, epoch)
                backend.set_lr(lr)
                t0 = time.perf_counter()
                monitor.set_phase(epoch, "train")
                on_step = progress.start(f"{backend.name} {epoch}/{config.epochs}", source.train_images(epoch))
                if dist.distributed:
                    on_step = _report_only(on_step)
                try:
                    train = source.train(epoch, on_step)
                finally:
                    progress.close()
                dist.comm.sync_buffers(backend)  # BatchNorm running statistics: the mean over ranks
                t1 = time.perf_counter()
                monitor.set_phase(epoch, "eval")
                test = source.evaluate(epoch)
                t2 = time.perf_counter()
                parts = dist.comm.allgather(epoch_part(train, t1 - t0, test, t2 - t1, monitor.take_epoch()))
                train, train_time, test, eval_time, util = combine_epoch(parts)
                relay.exchange()
                if writes and dist.distributed:
                    meta["distributed"]["per_epoch"].append(per_rank_record(epoch, parts))
                row = base_row | util | {
                    "epoch": epoch, "lr": lr, "train_loss": train.loss, "train_acc": train.accuracy,
                    "test_loss": test.loss, "test_acc": test.accuracy, "test_top5_acc": test.top5_accuracy,
                    "train_time_s": train_time, "eval_time_s": eval_time, "data_wait_s": train.data_wait_s,
                    "train_images_per_s": train.count / train_time if train_time > 0 else None,
                    "eval_images_per_s": test.count / eval_time if eval_time > 0 else None,
                    "train_gflops_per_s": prepared.flops_per_image * train.count / train_time / 1e9 if train_time > 0 else None,
                    "status": R.EPOCH_OK,
                }
                if not (math.isfinite(train.loss) and math.isfinite(test.loss)):
                    raise Diverged()
                t3 = time.perf_counter()
                if writes:
                    tmp = ckpt_path.with_name(f".{ckpt_path.name}.tmp")
                    backend.save_checkpoint(tmp)
                    os.replace(tmp, ckpt_path)
                # The harness's own work in this epoch (rank 0's in a distributed run).
                row["harness_s"] = monitor.take_cost() + progress.take_cost() + time.perf_counter() - t3
                row["epoch_time_s"] = time.perf_counter() - t0
                row["elapsed_s"] = elapsed_offset + time.perf_counter() - start
                meta["epochs_completed"] = epoch
                reached = config.target_acc is not None and test.accuracy >= config.target_acc
                if reached and meta.get("time_to_target_s") is None:
                    meta["time_to_target_s"] = row["elapsed_s"]
                    meta["target_reached_epoch"] = epoch
                if writes:
                    R.write_json(run_dir / R.CHECKPOINT_JSON, {"epoch": epoch, "elapsed_s": row["elapsed_s"], "row": row})
                    writer.append(row)  # type: ignore[union-attr]
                    R.write_json(run_dir / R.RUN_JSON, meta)
                progress.line(f"{backend.name} epoch {epoch}/{config.epochs}: train loss {train.loss:.4f} "
                              f"acc {train.accuracy:.3f} | test loss {test.loss:.4f} acc {test.accuracy:.3f} | "
                              f"{row['train_images_per_s']:.1f} img/s | {row['epoch_time_s']:.1f} s")
                if reached:
                    break  # time-to-accuracy: stop at the target, as MLPerf does
        relay.exchange()  # the samples after the last epoch end
        if dist.distributed:  # proof that every rank ends with the same model (collective)
            digests = dist.comm.gather(state_digest(backend.state_arrays()))
            if writes:
                meta["distributed"].update(final_state_sha256=digests, ranks_identical=len(set(digests)) == 1)
    except Diverged:
        status = R.DIVERGED
        if writer is not None:
            writer.append(base_row | {"epoch": epoch, "status": R.DIVERGED, "train_loss": float("nan"),
                                      "elapsed_s": elapsed_offset + time.perf_counter() - start})
        meta["error"] = f"loss became NaN or infinite in epoch {epoch}: lower --lr"
    except (Interrupted, KeyboardInterrupt):
        status = R.INTERRUPTED
        if writer is not None:
            writer.append(base_row | {"epoch": epoch, "status": R.INTERRUPTED,
                                      "elapsed_s": elapsed_offset + time.perf_counter() - start})
    finally:
        if writer is not None:
            writer.close()
        relay.close()
    return status


def _report_only(on_step: StepCallback) -> StepCallback:
    """Distributed runs: show the running loss but never stop one rank alone on a NaN (the
    others would wait for it in the next allreduce); divergence is decided at the epoch end
    on the combined loss, by every rank alike."""
    def update(done: int, loss: float | None) -> None:
        on_step(done, loss if loss is not None and math.isfinite(loss) else None)
    return update


def finish(run_dir: Path, meta: dict[str, Any], status: str) -> None:
    meta.update(status=status, ended_at=now_iso())
    R.write_json(run_dir / R.RUN_JSON, meta)
