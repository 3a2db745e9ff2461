"""Committing an epoch, and reading the commit back on --resume.

:func:`commit_epoch` writes the checkpoint beside the current one (``checkpoint.pending-eK``) ->
checkpoint.json (which holds the epoch's row: the commit point) -> renames the pending checkpoint
into place -> (best / snapshot links, harness/train/keep.py) -> the epochs.csv row -> run.json, each
only after the one before is in place, so ``kill -9`` at any point leaves the folder resumable. The
pending name carries the epoch, so a resume can tell a checkpoint whose epoch was committed
(checkpoint.json names that epoch: finish the rename, :func:`settle_pending`) from one whose epoch
was not (delete it: the previous checkpoint is whole and matches checkpoint.json). Renaming the
checkpoint in place first would leave epoch K's weights under checkpoint.json's K-1 after a kill
between the two, and the resumed run would train epoch K twice. :func:`read_checkpoint` gives the
epoch to continue after, and :func:`restore_rows` cuts epochs.csv back to it, restoring the row of a
kill that came between checkpoint.json and the CSV append. Every completed epoch then has exactly
one row.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

from harness import schema as R
from harness.backend import Backend
from harness.errors import BenchError
from harness.train.keep import Keep


def per_epoch_acc(row: Mapping[str, Any]) -> float:
    """The accuracy every epoch is judged by: validation when the run has a validation split
    (test is then evaluated once, on the last row, and never selects anything), else test."""
    valid = row.get("valid_acc")
    return valid if valid is not None and valid == valid else row["test_acc"]


def target_reached(target_acc: float | None, row: Mapping[str, Any]) -> bool:
    return target_acc is not None and per_epoch_acc(row) >= target_acc


@dataclass
class RunFiles:
    """What rank 0 writes every epoch (the other ranks of a distributed run hold none)."""

    run_dir: Path
    checkpoint: Path
    epochs: R.CsvAppender
    keep: Keep | None = None  # best / snapshots (harness/train/keep.py)

    @classmethod
    def open(cls, run_dir: Path, checkpoint_suffix: str, keep: Keep | None = None) -> "RunFiles":
        return cls(run_dir, run_dir / f"checkpoint{checkpoint_suffix}",
                   R.CsvAppender(run_dir / R.EPOCHS_CSV, list(R.EPOCH_COLUMNS)), keep)

    def save_pending(self, backend: Backend, epoch: int) -> Path:
        """The epoch's checkpoint, durable under its pending name (schema.atomic_path: file and
        folder fsync'd, the temporary removed on any error); the current one stays whole."""
        pending = pending_checkpoint(self.checkpoint, epoch)
        with R.atomic_path(pending) as tmp:
            backend.save_checkpoint(tmp)
        return pending

    def close(self) -> None:
        self.epochs.close()


def record_epoch(meta: dict[str, Any], row: Mapping[str, Any], target_acc: float | None) -> None:
    """run.json's progress fields after a completed epoch (time-to-accuracy the first time)."""
    meta["epochs_completed"] = row["epoch"]
    if target_reached(target_acc, row) and meta.get("time_to_target_s") is None:
        meta["time_to_target_s"] = row["elapsed_s"]
        meta["target_reached_epoch"] = row["epoch"]


def commit_epoch(files: RunFiles | None, backend: Backend, meta: dict[str, Any], row: dict[str, Any],
                 stamp: Callable[[float], Mapping[str, Any]], target_acc: float | None) -> None:
    """Record a completed epoch: checkpoint -> checkpoint.json (holding the row) -> the CSV
    row -> run.json. Every step is whole or absent after a kill, and each later file is only
    written once the earlier ones are in place, which is what --resume relies on.

    ``stamp(checkpoint_s)`` gives the row's timings once the checkpoint is written (so
    ``harness_s`` and ``epoch_time_s`` include it). ``files`` is None on ranks > 0, which
    keep ``meta`` in step but write nothing.
    """
    t0 = time.perf_counter()
    pending = files.save_pending(backend, row["epoch"]) if files is not None else None
    row.update(stamp(time.perf_counter() - t0))
    record_epoch(meta, row, target_acc)
    if files is not None and pending is not None:
        R.write_json(files.run_dir / R.CHECKPOINT_JSON, {"epoch": row["epoch"], "elapsed_s": row["elapsed_s"], "row": row})
        R.promote(pending, files.checkpoint)  # after the commit point: settle_pending redoes it after a kill
        if files.keep is not None:  # linked once the epoch is committed: a kept file is never of a lost epoch
            files.keep.after_checkpoint(files.run_dir, files.checkpoint, row, meta)
        files.epochs.append(row)
        R.write_json(files.run_dir / R.RUN_JSON, meta)


def pending_checkpoint(checkpoint: Path, epoch: int) -> Path:
    """Where epoch ``epoch``'s checkpoint waits for its commit: checkpoint.pending-e3.pt."""
    return checkpoint.with_name(f"{checkpoint.stem}.pending-e{epoch}{checkpoint.suffix}")


# --- the other side: --resume ----------------------------------------------------------------

def settle_pending(run_dir: Path, checkpoint: Path) -> None:
    """Finish or undo an epoch commit a kill interrupted (rank 0, before anyone loads): the
    pending checkpoint of the epoch checkpoint.json names is renamed into place; any other
    pending checkpoint belongs to an epoch that was never committed and is removed."""
    committed: int | None = None
    try:
        committed = int(json.loads((run_dir / R.CHECKPOINT_JSON).read_text())["epoch"])
    except (OSError, ValueError, KeyError, TypeError):
        pass  # no commit yet (or damaged: read_checkpoint says so)
    for pending in sorted(run_dir.glob(f"{checkpoint.stem}.pending-e*{checkpoint.suffix}")):
        if committed is not None and pending == pending_checkpoint(checkpoint, committed):
            R.promote(pending, checkpoint)
        else:
            pending.unlink()

@dataclass
class Checkpointed:
    """What checkpoint.json says about the last committed epoch."""

    epoch: int
    elapsed_s: float
    row: dict[str, Any]


def read_checkpoint(run_dir: Path, checkpoint: Path) -> Checkpointed | None:
    """The last committed epoch, or None when there is none to continue from (a run killed
    during its first epoch, or a folder without its checkpoint)."""
    ckpt_json = run_dir / R.CHECKPOINT_JSON
    if not (ckpt_json.is_file() and checkpoint.is_file()):
        return None
    try:
        state = json.loads(ckpt_json.read_text())
        return Checkpointed(int(state["epoch"]), float(state["elapsed_s"]), state["row"])
    except (ValueError, KeyError, TypeError) as exc:
        raise BenchError(f"{ckpt_json} is damaged ({exc}): the run cannot be resumed; start a new one") from None


def restore_rows(run_dir: Path, last: Checkpointed | None) -> None:
    """epochs.csv cut back to the checkpointed epoch: the completed rows before it, then its
    own row from checkpoint.json (even if the kill came before it was appended)."""
    done = last.epoch if last is not None else 0
    path = run_dir / R.EPOCHS_CSV
    rows: list[dict[str, Any]] = []
    if path.is_file():
        rows = [r for r in R.read_epochs_rows(path) if r.get("status") == R.EPOCH_OK and int(r["epoch"]) < done]
    if last is not None:
        rows.append(last.row)
    R.rewrite_epochs(path, rows)


def recorded_epochs(run_dir: Path, meta: Mapping[str, Any]) -> int:
    """How many epochs the folder says were completed (run.json, or epochs.csv's ok rows)."""
    path = run_dir / R.EPOCHS_CSV
    rows = [r for r in R.read_epochs_rows(path) if r.get("status") == R.EPOCH_OK] if path.is_file() else []
    return max(int(meta.get("epochs_completed") or 0), len(rows))


def check_resumable(run_dir: Path, checkpoint: Path, meta: Mapping[str, Any]) -> None:
    """Refuse a run with recorded epochs but no checkpoint to continue them from (a folder
    copied without its large file): starting over would rewrite epochs.csv from epoch 1 and
    lose them. A run killed during its first epoch has neither, and starts over."""
    done = recorded_epochs(run_dir, meta)
    missing = [p.name for p in (checkpoint, run_dir / R.CHECKPOINT_JSON) if not p.is_file()]
    if missing and (done or (run_dir / R.CHECKPOINT_JSON).is_file()):
        raise BenchError(f"{run_dir} records {done} completed epoch(s) but has no {' or '.join(missing)} to continue "
                         f"from (a folder copied without its checkpoint?): put the file back, or add --restart to "
                         f"start over from epoch 1 (the recorded rows are kept, renamed to epochs.<time>.csv)")


def set_aside(run_dir: Path, checkpoint: Path, stamp: str) -> list[str]:
    """--restart: move the earlier attempt's rows, samples and checkpoint to ``name.<stamp>.ext``
    (never deleted), so the run starts over in the same folder. Returns the new names."""
    moved = []
    for path in (run_dir / R.EPOCHS_CSV, run_dir / R.UTIL_CSV, run_dir / R.CHECKPOINT_JSON, checkpoint):
        if path.is_file():
            target = path.with_name(f"{path.stem}.{stamp}{path.suffix}")
            R.move_aside(path, target)
            moved.append(target.name)
    return moved
