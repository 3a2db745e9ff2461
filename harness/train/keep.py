"""Checkpoints kept beside the latest one: ``best`` by a metric, and snapshots every K epochs.

The seeds kept what the latest checkpoint loses: 001 saves the model whenever the validation
loss improves, 004 snapshots every epoch. Both are hard links to the epoch's checkpoint
(:func:`harness.schema.atomic_link`), made in the commit step after checkpoint.json, so the
model is serialised once per epoch and a kept file is always of a committed epoch. Which
epoch is best is a function of the epochs.csv rows alone, so ``--resume`` recomputes it from
the restored rows and re-links a best or snapshot a kill came between (:func:`restore`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

from harness import schema as R
from harness.errors import BenchError

BEST_METRICS = ("auto", "valid_loss", "valid_acc", "valid_top5_acc", "test_loss", "test_acc", "test_top5_acc",
                "train_loss", "train_acc")
"""--best-metric's choices: epochs.csv columns (auto: the per-epoch evaluation's loss)."""
BEST_STEM = "checkpoint-best"


def snapshot_stem(epoch: int) -> str:
    return f"checkpoint-e{epoch}"


def evaluation_split(dataset: Any) -> str:
    """The split a dataset evaluates every epoch: "valid" when it has a validation split
    (``Dataset.per_epoch_split``), else "test"."""
    return str(dataset.per_epoch_split)


def resolve_metric(choice: str, split: str) -> str:
    """The epochs.csv column ``--best-metric`` selects by, for a run whose per-epoch
    evaluation is ``split`` ("valid" with a validation split, else "test"). Checked before
    the run folder is made: a valid_* metric needs a validation split, and with one, test
    is evaluated once at the end and never selects a model."""
    if choice == "auto":
        return f"{split}_loss"
    if choice.startswith("valid_") and split != "valid":
        raise BenchError(f"--best-metric {choice} needs a validation split (an image folder's valid/ beside test/, "
                         f"or --valid-size N): this run evaluates test every epoch; use auto or test_{choice[6:]}")
    if choice.startswith("test_") and split == "valid":
        raise BenchError(f"--best-metric {choice}: this run has a validation split, and test is evaluated once at "
                         f"the end, never to select a model; use auto or valid_{choice[5:]}")
    return choice


def maximises(metric: str) -> bool:
    """Accuracies are best high, losses low."""
    return metric.endswith("_acc")


def _value(row: Mapping[str, Any], metric: str) -> float | None:
    value: Any = row.get(metric)  # a number, a CSV string, "" or None
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def best_of(rows: Iterable[Mapping[str, Any]], metric: str) -> tuple[int, float] | None:
    """(epoch, value) of the best row; the earliest on a tie (a later equal epoch is no better)."""
    best: tuple[int, float] | None = None
    for row in rows:
        value = _value(row, metric)
        if value is None:
            continue
        if best is None or (value > best[1] if maximises(metric) else value < best[1]):
            best = (int(row["epoch"]), value)
    return best


@dataclass(frozen=True)
class Keep:
    """What a run keeps besides ``checkpoint<suffix>``."""

    metric: str  # resolved (:func:`resolve_metric`)
    snapshot_every: int | None
    suffix: str  # the backend's checkpoint suffix

    @classmethod
    def of(cls, best_metric: str, snapshot_every: int | None, dataset: Any, suffix: str) -> "Keep":
        """From the settings (--best-metric, --snapshot-every) and the run's dataset."""
        return cls(resolve_metric(best_metric, evaluation_split(dataset)), snapshot_every, suffix)

    @property
    def best_name(self) -> str:
        return f"{BEST_STEM}{self.suffix}"

    def snapshot_name(self, epoch: int) -> str:
        return f"{snapshot_stem(epoch)}{self.suffix}"

    def snapshot_due(self, epoch: int) -> bool:
        every = self.snapshot_every
        if not every:
            return False
        return epoch % every == 0

    def after_checkpoint(self, run_dir: Path, checkpoint: Path, row: Mapping[str, Any], meta: dict[str, Any]) -> None:
        """Called once the epoch's checkpoint and checkpoint.json are in place: link it as
        ``best`` when its metric beats run.json's best, and as a snapshot when one is due;
        ``meta`` (written to run.json next) records both."""
        value, best = _value(row, self.metric), meta.get("best")
        if value is not None and (best is None or (value > best["value"] if maximises(self.metric)
                                                   else value < best["value"])):
            R.atomic_link(checkpoint, run_dir / self.best_name)
            meta["best"] = {"metric": self.metric, "epoch": int(row["epoch"]), "value": value, "file": self.best_name}
        if self.snapshot_due(int(row["epoch"])):
            self._snapshot(run_dir, checkpoint, int(row["epoch"]), meta)

    def _snapshot(self, run_dir: Path, checkpoint: Path, epoch: int, meta: dict[str, Any]) -> None:
        R.atomic_link(checkpoint, run_dir / self.snapshot_name(epoch))
        kept = [s for s in meta.get("snapshots") or [] if s["epoch"] != epoch]
        meta["snapshots"] = kept + [{"epoch": epoch, "file": self.snapshot_name(epoch)}]

    def restore(self, run_dir: Path, checkpoint: Path, last_epoch: int, meta: dict[str, Any]) -> None:
        """--resume, after epochs.csv was cut back to ``last_epoch``: run.json's best from the
        rows (a kill may have come between checkpoint.json and run.json), and the best or
        snapshot of ``last_epoch`` linked again if the kill came before its link."""
        path = run_dir / R.EPOCHS_CSV
        rows = [r for r in R.read_epochs_rows(path) if r.get("status") == R.EPOCH_OK] if path.is_file() else []
        best = best_of(rows, self.metric)
        meta["best"] = None if best is None else {"metric": self.metric, "epoch": best[0], "value": best[1],
                                                   "file": self.best_name}
        if best is not None and best[0] == last_epoch and checkpoint.is_file():
            R.atomic_link(checkpoint, run_dir / self.best_name)
        meta["snapshots"] = [s for s in meta.get("snapshots") or [] if s["epoch"] <= last_epoch
                             and (run_dir / s["file"]).is_file()]
        if last_epoch and self.snapshot_due(last_epoch) and checkpoint.is_file():
            self._snapshot(run_dir, checkpoint, last_epoch, meta)
