"""The epoch loop: run an epoch, then commit it, until the last epoch, the target accuracy,
a divergence or a signal.

- :meth:`EpochRunner.run` trains, evaluates and turns the figures into one epochs.csv row
  (:func:`epoch_row`); in a distributed run the ranks' figures are combined first, so every
  rank holds the same row and takes the same decisions.
- :func:`harness.train.commit.commit_epoch` records it, in the order that makes ``kill -9``
  safe: checkpoint -> checkpoint.json (which holds the row) -> the epochs.csv row -> run.json.
"""
from __future__ import annotations

import contextlib
import math
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from harness import schema as R
from harness.device import parse_device
from harness.backend import Backend, EvalStats, StepCallback, TrainStats
from harness.config import RunConfig, lr_at
from harness.data.dataset import Dataset
from harness.distributed import LOCAL, Dist, UtilRelay, combine_epoch, epoch_part, per_rank_record, state_digest
from harness.errors import BenchError, Diverged
from harness.measure.monitor import Monitor
from harness.train.commit import RunFiles, commit_epoch, target_reached
from harness.train.keep import Keep
from harness.train.prepare import Prepared
from harness.train.progress import Progress
from harness.train.signals import Interrupted, shield
from harness.train.sources import EpochSource, make_source


# --- one epoch -> one row ------------------------------------------------------------------

def eval_columns(stats: EvalStats, split: str) -> dict[str, float]:
    """``valid_*`` or ``test_*`` figures of one evaluation."""
    return {f"{split}_loss": stats.loss, f"{split}_acc": stats.accuracy, f"{split}_top5_acc": stats.top5_accuracy}


def epoch_row(base: Mapping[str, Any], epoch: int, lr: float, train: TrainStats, train_time: float,
              test: EvalStats, eval_time: float, util: Mapping[str, Any], flops_per_image: int,
              split: str = "test") -> dict[str, Any]:
    """An epochs.csv row from an epoch's figures (the timings of the commit are added by it).
    ``test`` is the per-epoch evaluation, of ``split`` ("valid" when the run has one)."""
    return dict(base) | dict(util) | eval_columns(test, split) | {
        "epoch": epoch, "lr": lr, "train_loss": train.loss, "train_acc": train.accuracy,
        "train_time_s": train_time, "eval_time_s": eval_time, "data_wait_s": train.data_wait_s,
        "compile_s": None if train.compile_s is None else train.compile_s + (test.compile_s or 0.0),
        "train_images_per_s": train.count / train_time if train_time > 0 else None,
        "eval_images_per_s": test.count / eval_time if eval_time > 0 else None,
        "train_gflops_per_s": flops_per_image * train.count / train_time / 1e9 if train_time > 0 else None,
        "images_per_j": train.count / util["train_energy_j"] if util.get("train_energy_j") else None,
        "status": R.EPOCH_OK,
    }


@dataclass
class EpochDone:
    row: dict[str, Any]
    parts: list[dict[str, Any]]  # every rank's own figures (one part in an ordinary run)
    started: float  # perf_counter() when the epoch began: epoch_time_s runs to the commit's end


@dataclass
class EpochRunner:
    """What every epoch of a run uses; :meth:`run` is one epoch's train + eval + row."""

    config: RunConfig
    backend: Backend
    source: EpochSource
    progress: Progress
    dist: Dist
    base_row: dict[str, Any]
    flops_per_image: int
    split: str = "test"  # evaluated every epoch: "valid" when the dataset has a validation split

    def run(self, epoch: int, monitor: Monitor) -> EpochDone:
        backend, dist = self.backend, self.dist
        lr = lr_at(self.config, epoch)
        backend.set_lr(lr)
        t0 = time.perf_counter()
        monitor.set_phase(epoch, "train")
        on_step = self.progress.start(f"{backend.name} {epoch}/{self.config.epochs}", self.source.train_images(epoch))
        if dist.distributed:
            on_step = _report_only(on_step)
        try:
            train = self.source.train(epoch, on_step)
        finally:
            self.progress.close()
        dist.comm.sync_buffers(backend)  # BatchNorm running statistics: the mean over ranks
        t1 = time.perf_counter()
        monitor.set_phase(epoch, "eval")
        test = self.source.evaluate(epoch)
        t2 = time.perf_counter()
        parts = dist.comm.allgather(epoch_part(train, t1 - t0, test, t2 - t1, monitor.take_epoch()))
        train, train_time, test, eval_time, util = combine_epoch(parts)
        row = epoch_row(self.base_row, epoch, lr, train, train_time, test, eval_time, util, self.flops_per_image,
                        self.split)
        return EpochDone(row, parts, t0)


def _report_only(on_step: StepCallback) -> StepCallback:
    """Distributed runs: show the running loss but never stop one rank alone on a NaN (the
    others would wait for it in the next allreduce); divergence is decided at the epoch end
    on the combined loss, by every rank alike."""
    def update(done: int, loss: float | None) -> None:
        on_step(done, loss if loss is not None and math.isfinite(loss) else None)
    return update


def diverged(row: Mapping[str, Any], split: str = "test") -> bool:
    return not (math.isfinite(row["train_loss"]) and math.isfinite(row[f"{split}_loss"]))


def epoch_line(backend: str, epochs: int, row: Mapping[str, Any], split: str = "test") -> str:
    """The one line per epoch on stderr (the final test figures, where evaluated, after it)."""
    line = (f"{backend} epoch {row['epoch']}/{epochs}: train loss {row['train_loss']:.4f} "
            f"acc {row['train_acc']:.3f} | {split} loss {row[f'{split}_loss']:.4f} acc {row[f'{split}_acc']:.3f} | "
            f"{row['train_images_per_s']:.1f} img/s | {row['epoch_time_s']:.1f} s")
    if split != "test" and row.get("test_acc") is not None:
        line += f" | test (once) loss {row['test_loss']:.4f} acc {row['test_acc']:.3f}"
    return line


def final_test(source: EpochSource, row: dict[str, Any], meta: dict[str, Any]) -> None:
    """Evaluate the test split once, after the last epoch of a run with a validation split:
    its figures go on the last row and into run.json's ``evaluation.final``."""
    t0 = time.perf_counter()
    stats = source.test()
    row.update(eval_columns(stats, "test"))
    meta["evaluation"]["final"].update(epoch=row["epoch"], loss=stats.loss, acc=stats.accuracy,
                                       top5_acc=stats.top5_accuracy, eval_time_s=time.perf_counter() - t0)


# --- the loop ------------------------------------------------------------------------------

def _release(exc: BaseException) -> None:
    """Drop the locals of the frames a failed write left in ``exc``'s chain. A framework
    writer that failed on a full disk (torch.save's zip writer) still holds its deleted
    temporary open from there, so the space it took is not free again until they go; the
    interrupted row and run.json need a little of it."""
    seen: set[int] = set()
    chained: BaseException | None = exc
    while chained is not None and id(chained) not in seen:
        seen.add(id(chained))
        traceback.clear_frames(chained.__traceback__)  # frames still running are left as they are
        chained = chained.__cause__ or chained.__context__


def _gpu_index(device: str) -> int | None:
    return parse_device(device).ordinal


def train_loop(config: RunConfig, prepared: Prepared, dataset: Dataset, run_dir: Path, meta: dict[str, Any],
               seed: int, first_epoch: int, elapsed_offset: float, progress: Progress,
               dist: Dist = LOCAL) -> str:
    """Epochs ``first_epoch..config.epochs``; returns the final status. Writes every row.

    Distributed (``dist``, harness/distributed/): every rank runs this loop in step on its
    shard; each epoch's figures of all ranks are combined into one row (identically on every
    rank, so all take the same decisions), and only rank 0 (``is_writer``) touches the run folder.
    """
    backend = prepared.backend
    keep = Keep.of(config.best_metric, config.snapshot_every, dataset, backend.checkpoint_suffix)
    files = RunFiles.open(run_dir, backend.checkpoint_suffix, keep) if dist.is_writer else None
    base_row = {"run_id": run_dir.name, "backend": backend.name, "model": config.model, "dataset": config.dataset,
                "device": config.device, "batch_size": config.batch_size, "world_size": dist.world_size,
                "precision": config.precision, "compile": config.compile}
    split = dataset.per_epoch_split
    epochs = EpochRunner(config, backend, make_source(config, prepared, dataset, seed, shard=dist.shard),
                         progress, dist, base_row, prepared.flops_per_image, split)
    relay = UtilRelay(dist, run_dir / R.UTIL_CSV)  # ranks > 0 sample into a spool that rank 0 merges
    start = time.perf_counter()
    status = R.COMPLETED
    epoch = first_epoch
    monitor = Monitor(relay.monitor_path, interval_s=config.sample_interval_s,
                      gpu_index=_gpu_index(dist.rank_config(config).device),
                      gpu_pci_bus_id=prepared.thread_settings.get("pci_bus_id"),
                      rank=dist.rank, start_time=start, elapsed_offset_s=elapsed_offset)
    try:
        with monitor:
            if files is not None:
                meta["energy"] = monitor.energy_info()
            for epoch in range(first_epoch, config.epochs + 1):
                done = epochs.run(epoch, monitor)
                relay.exchange()
                if files is not None and dist.distributed:
                    meta["distributed"]["per_epoch"].append(per_rank_record(epoch, done.parts))
                if diverged(done.row, split):
                    raise Diverged()
                last = epoch == config.epochs or target_reached(config.target_acc, done.row)
                if split == "valid" and last and files is not None:
                    final_test(epochs.source, done.row, meta)  # the writer alone; the others wait at the digest

                def stamp(checkpoint_s: float, started: float = done.started) -> dict[str, float]:
                    # The harness's own work in this epoch (rank 0's in a distributed run).
                    harness_s = monitor.take_cost() + progress.take_cost() + checkpoint_s
                    now = time.perf_counter()
                    return {"harness_s": harness_s, "epoch_time_s": now - started,
                            "elapsed_s": elapsed_offset + now - start}

                commit_epoch(files, backend, meta, done.row, stamp, config.target_acc)
                progress.line(epoch_line(backend.name, config.epochs, done.row, split))
                if target_reached(config.target_acc, done.row):
                    break  # time-to-accuracy: stop at the target, as MLPerf does
        relay.exchange()  # the samples after the last epoch end
        if dist.distributed:  # proof that every rank ends with the same model (collective)
            digests = dist.comm.gather(state_digest(backend.state_arrays()))
            if files is not None and digests is not None:  # rank 0, the writer, gathers them
                meta["distributed"].update(final_state_sha256=digests, ranks_identical=len(set(digests)) == 1)
    except Diverged:
        shield()  # recording the end: a signal now waits for it (harness/train/signals.py)
        status = R.DIVERGED
        if files is not None:
            files.epochs.append(base_row | {"epoch": epoch, "status": R.DIVERGED, "train_loss": float("nan"),
                                            "elapsed_s": elapsed_offset + time.perf_counter() - start})
        meta["error"] = f"loss became NaN or infinite in epoch {epoch}: lower --lr"
    except (Interrupted, KeyboardInterrupt):
        shield()
        status = R.INTERRUPTED
        if files is not None:
            files.epochs.append(base_row | {"epoch": epoch, "status": R.INTERRUPTED,
                                            "elapsed_s": elapsed_offset + time.perf_counter() - start})
    except (BenchError, OSError) as exc:
        # A write that failed (a full disk) or another problem the user can fix: the epochs
        # committed so far stand; session.py records the run as interrupted and says how to resume.
        shield()
        _release(exc)
        if files is not None:
            with contextlib.suppress(BenchError, OSError):  # the disk may still be full
                files.epochs.append(base_row | {"epoch": epoch, "status": R.INTERRUPTED,
                                                "elapsed_s": elapsed_offset + time.perf_counter() - start})
        raise
    finally:
        shield()
        if monitor.errors:  # a source that failed while sampling (the rest kept sampling)
            meta.setdefault("sampling_errors", {}).update(monitor.errors)
        if files is not None:
            files.close()
        relay.close()
    return status
