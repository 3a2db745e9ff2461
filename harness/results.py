"""The results schema — the one source of truth for what a run folder holds — and its I/O.

A run folder is the interface between machines: a student's laptop and a TA's A10G each
write one, swap them, and ``bench compare``/``bench report`` read both. So this module owns
the column names, their units, the schema version written into run.json, and the reading
and validation used for folders from anywhere.

Layout of ``results/<run_id>/``:
  run.json          metadata: settings, seed, machine, versions, dataset identity, status
  epochs.csv        one row per epoch (EPOCH_COLUMNS), appended and fsync'd per epoch
  util.csv          utilisation samples (UTIL_BASE_COLUMNS + per-core/per-GPU columns)
  checkpoint.*      latest model + optimiser state (framework-native), replaced atomically
  checkpoint.json   which epoch the checkpoint holds, and that epoch's row

Units are in the column names (_s seconds, _pct percent, _mb MiB, _per_s per second).
A figure that does not apply (no GPU) is left empty, never written as 0.
"""
from __future__ import annotations

import csv
import io
import json
import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

from harness.errors import BenchError

SCHEMA_VERSION = 2
READABLE_SCHEMA_VERSIONS = (1, 2)
# Columns added after version 1: folders of older versions lack them and read as empty.
ADDED_IN_VERSION: dict[str, int] = {"harness_s": 2}

RUN_JSON = "run.json"
EPOCHS_CSV = "epochs.csv"
UTIL_CSV = "util.csv"
CHECKPOINT_JSON = "checkpoint.json"

# Run status values (run.json "status" and the epochs.csv "status" of the last row).
RUNNING, COMPLETED, INTERRUPTED, DIVERGED, FAILED = "running", "completed", "interrupted", "diverged", "failed"
# Row status of an ordinary finished epoch.
EPOCH_OK = "ok"

# name -> description (with unit). Order is the CSV column order.
EPOCH_COLUMNS: dict[str, str] = {
    "run_id": "the run folder's name",
    "backend": "framework backend (torch, chainer)",
    "model": "model name (resnet20, resnet50, ...)",
    "dataset": "dataset name (cifar10, synthetic, imagefolder:...)",
    "device": "device string (cpu, cuda:0)",
    "batch_size": "global training batch size (images)",
    "world_size": "number of data-parallel processes (1 when not distributed)",
    "epoch": "1-based epoch number",
    "train_loss": "mean training cross-entropy over the epoch (nats)",
    "train_acc": "training top-1 accuracy over the epoch, augmented images (fraction 0-1)",
    "test_loss": "mean test cross-entropy (nats)",
    "test_acc": "test top-1 accuracy (fraction 0-1)",
    "test_top5_acc": "test top-5 accuracy (fraction 0-1)",
    "lr": "learning rate used in this epoch",
    "epoch_time_s": "wall time of the epoch: training + evaluation + bookkeeping (s)",
    "train_time_s": "wall time of the training pass (s)",
    "eval_time_s": "wall time of the evaluation pass (s)",
    "data_wait_s": "time the training loop was blocked waiting for the next batch (s)",
    "harness_s": "time the harness spent on its own work in the epoch: utilisation samples, progress-bar "
                 "updates and the checkpoint (s; the row's own CSV and run.json writes follow it)",
    "train_images_per_s": "training images / train_time_s",
    "eval_images_per_s": "test images / eval_time_s",
    "train_gflops_per_s": "achieved training GFLOP/s (3 x forward FLOPs per image x images/s)",
    "cpu_util_mean_pct": "system-wide CPU utilisation during training, time-weighted mean (0-100)",
    "cpu_util_max_pct": "system-wide CPU utilisation during training, max over samples (0-100)",
    "process_cpu_pct": "this process's CPU use during training, mean (100 = one core busy; summed over the "
                       "ranks of a distributed run)",
    "rss_peak_mb": "peak resident memory of this process during the epoch (MiB; summed over the ranks of a "
                   "distributed run)",
    "gpu_util_mean_pct": "GPU utilisation of the run's device, mean (0-100; empty without GPU)",
    "gpu_util_max_pct": "GPU utilisation, max (0-100; empty without GPU)",
    "gpu_mem_peak_mb": "GPU memory used on the run's device, peak (MiB; empty without GPU)",
    "elapsed_s": "wall time since the run started, at the end of this epoch (s); excludes time "
    "between an interruption and its --resume",
    "status": "ok, or interrupted/diverged on the row where the run stopped",
}

# Fixed util.csv columns; per-core "cpu{i}_pct" and per-GPU "gpu{i}_util_pct",
# "gpu{i}_mem_mb", "gpu{i}_power_w" follow them.
UTIL_BASE_COLUMNS: dict[str, str] = {
    "timestamp": "Unix time of the sample (s)",
    "elapsed_s": "time since the run started (s)",
    "rank": "data-parallel rank that took the sample (0 when not distributed)",
    "epoch": "epoch being run (1-based)",
    "phase": "train, eval or setup",
    "cpu_pct": "system-wide CPU utilisation since the previous sample (0-100)",
    "process_cpu_pct": "this process's CPU use since the previous sample (100 = one core)",
    "rss_mb": "resident memory of this process (MiB)",
}


def util_columns(n_cores: int, n_gpus: int) -> list[str]:
    cols = list(UTIL_BASE_COLUMNS)
    cols += [f"cpu{i}_pct" for i in range(n_cores)]
    for i in range(n_gpus):
        cols += [f"gpu{i}_util_pct", f"gpu{i}_mem_mb", f"gpu{i}_power_w"]
    return cols


# --- writing -------------------------------------------------------------------------------

def _format(value: Any) -> str:
    """Empty for None/NaN (pandas reads it as NaN), short repr for floats."""
    if value is None:
        return ""
    if isinstance(value, float):
        if math.isnan(value):
            return ""
        return repr(round(value, 6)) if abs(value) >= 1e-3 or value == 0 else f"{value:.6g}"
    return str(value)


def csv_line(columns: Iterable[str], row: Mapping[str, Any]) -> bytes:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow([_format(row.get(c)) for c in columns])
    return buf.getvalue().encode()


class CsvAppender:
    """Appends whole rows to a CSV with one ``write`` each, then flushes to disk.

    One ``os.write`` per row on an O_APPEND descriptor means a ``kill -9`` leaves either the
    whole row or none of it; ``fsync`` per row (``durable=True``) means a power cut loses at
    most the epoch in flight. The header is written when the file is new or empty.
    """

    def __init__(self, path: Path, columns: list[str], *, durable: bool = True) -> None:
        self.path = Path(path)
        self.columns = columns
        self.durable = durable
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        if os.fstat(self._fd).st_size == 0:
            self._write(csv_line(columns, dict(zip(columns, columns))))

    def _write(self, data: bytes) -> None:
        os.write(self._fd, data)
        if self.durable:
            os.fsync(self._fd)

    def append(self, row: Mapping[str, Any]) -> None:
        unknown = set(row) - set(self.columns)
        if unknown:
            raise ValueError(f"columns not in the schema: {sorted(unknown)}")
        self._write(csv_line(self.columns, row))

    def sync(self) -> None:
        os.fsync(self._fd)

    def close(self) -> None:
        if self._fd >= 0:
            os.fsync(self._fd)
            os.close(self._fd)
            self._fd = -1


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temporary file in the same folder, fsync, then rename over ``path``:
    readers see the old file or the new one, never half of one."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o644)  # mkstemp makes 0600; results are meant to be shared
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, float) and math.isnan(value):
        return None
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def write_json(path: Path, data: Mapping[str, Any]) -> None:
    atomic_write_bytes(path, (json.dumps(data, indent=2, default=_json_default, allow_nan=False) + "\n").encode())


def rewrite_epochs(path: Path, rows: list[dict[str, Any]]) -> None:
    """Replace epochs.csv with exactly ``rows`` (used by --resume to drop rows past the
    checkpoint), atomically."""
    columns = list(EPOCH_COLUMNS)
    data = csv_line(columns, dict(zip(columns, columns))) + b"".join(csv_line(columns, r) for r in rows)
    atomic_write_bytes(path, data)


# --- reading and validation ----------------------------------------------------------------

@dataclass
class RunFolder:
    """A validated run folder: run.json as a dict, epochs as a pandas DataFrame, util or None."""

    path: Path
    meta: dict[str, Any]
    epochs: Any  # pandas.DataFrame
    util: Any  # pandas.DataFrame | None

    @property
    def run_id(self) -> str:
        return str(self.meta.get("run_id", self.path.name))


def read_meta(folder: Path) -> dict[str, Any]:
    folder = Path(folder)
    meta_path = folder / RUN_JSON
    if not folder.is_dir():
        raise BenchError(f"{folder} is not a folder: pass run folders made by `bench run` (results/<run_id>)")
    if not meta_path.is_file():
        raise BenchError(f"{folder} is not a bench run: it has no {RUN_JSON} (pass folders made by `bench run`)")
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError) as exc:
        raise BenchError(f"{meta_path} is not valid JSON ({exc}): the run folder is damaged; re-run or remove it") from None
    if not isinstance(meta, dict):
        raise BenchError(f"{meta_path} does not hold a JSON object: the run folder is damaged; re-run or remove it")
    version = meta.get("schema_version")
    if version not in READABLE_SCHEMA_VERSIONS:
        raise BenchError(
            f"{meta_path} has results schema version {version!r}; this bench reads "
            f"{', '.join(map(str, READABLE_SCHEMA_VERSIONS))}: upgrade bench (pip install -U) to read it"
        )
    return meta


def read_epochs_rows(path: Path) -> list[dict[str, str]]:
    """Complete rows of an epochs.csv as dicts of strings; a torn last line is ignored."""
    text = Path(path).read_text()
    if text and not text.endswith("\n"):
        text = text[: text.rfind("\n") + 1]
    return list(csv.DictReader(io.StringIO(text)))


def read_run(folder: Path, *, with_util: bool = True) -> RunFolder:
    """Read and validate one run folder (from this machine or any other)."""
    import pandas as pd

    folder = Path(folder)
    meta = read_meta(folder)
    epochs_path = folder / EPOCHS_CSV
    if not epochs_path.is_file():
        raise BenchError(f"{folder} has no {EPOCHS_CSV}: the run recorded no epoch (re-run it, or leave it out)")
    try:
        epochs = pd.read_csv(epochs_path)
    except (ValueError, OSError) as exc:
        raise BenchError(f"{epochs_path} cannot be parsed as CSV ({exc}): the file is damaged") from None
    version = meta.get("schema_version")
    for column, added in ADDED_IN_VERSION.items():
        if version < added and column not in epochs.columns:
            epochs[column] = float("nan")  # not measured by the bench that wrote this folder
    missing = [c for c in EPOCH_COLUMNS if c not in epochs.columns]
    if missing:
        raise BenchError(
            f"{epochs_path} lacks columns {', '.join(missing[:5])}: it was not written by this "
            f"schema (version {SCHEMA_VERSION}); re-run with this bench"
        )
    util = None
    util_path = folder / UTIL_CSV
    if with_util and util_path.is_file() and util_path.stat().st_size > 0:
        try:
            util = pd.read_csv(util_path)
        except (ValueError, OSError) as exc:
            raise BenchError(f"{util_path} cannot be parsed as CSV ({exc}): the file is damaged") from None
    return RunFolder(folder, meta, epochs, util)


def find_runs(patterns: Iterable[str]) -> list[Path]:
    """Expand run folders, globs and results trees (a folder holding run folders)."""
    import glob

    found: list[Path] = []
    for pattern in patterns:
        matches = sorted(glob.glob(pattern)) if any(ch in pattern for ch in "*?[") else [pattern]
        if not matches:
            raise BenchError(f"no run folders match {pattern!r}: check the path")
        before = len(found)
        for match in matches:
            path = Path(match)
            if (path / RUN_JSON).is_file() or not path.is_dir():
                found.append(path)
                continue
            children = sorted(p.parent for p in path.glob(f"*/{RUN_JSON}"))
            if not children and len(matches) == 1:
                raise BenchError(f"{path} is not a bench run and holds none: pass folders made by `bench run`")
            found.extend(children)  # a glob (results/*) may also match e.g. results/report: passed over
        if len(found) == before:
            raise BenchError(f"no bench runs match {pattern!r}: pass folders made by `bench run` or `bench infer`")
    seen: set[Path] = set()
    return [p for p in found if not (p.resolve() in seen or seen.add(p.resolve()))]


# --- inference results (`bench infer`) --------------------------------------------------------
#
# An inference run is a folder of its own, beside training runs: run.json with
# ``"kind": "infer"`` (training runs have no "kind", or "train") and infer.csv, one row per
# batch size. Readers of training runs should pass over folders where :func:`is_infer_folder`
# is true; :func:`read_infer` reads them.

KIND_INFER = "infer"
INFER_CSV = "infer.csv"

# name -> description (with unit). Order is the CSV column order.
INFER_COLUMNS: dict[str, str] = {
    "run_id": "the inference run folder's name",
    "backend": "backend that ran the model (torch, chainer, onnxruntime)",
    "model": "model name (resnet20, resnet50, ...)",
    "dataset": "dataset name of the source training run (cifar10, synthetic, imagefolder:...)",
    "device": "device string (cpu, cuda:0)",
    "batch_size": "images per predict() call (images)",
    "images": "images timed at this batch size: batch_size x timed calls, warm-up excluded (images)",
    "latency_p50_ms": "median wall time of one predict() call: uint8 NHWC in, logits on the host out (ms)",
    "latency_p90_ms": "90th percentile of the call time (ms)",
    "latency_p99_ms": "99th percentile of the call time (ms; from --iters samples, so the maximum below 100)",
    "latency_mean_ms": "mean call time (ms)",
    "images_per_s": "images / total timed wall time at this batch size (images/s)",
    "top1_acc": "top-1 accuracy on the source run's test set (fraction 0-1; the same on every row)",
    "top5_acc": "top-5 accuracy on the source run's test set (fraction 0-1; the same on every row)",
}


@dataclass
class InferFolder:
    """A validated inference folder: run.json as a dict, infer.csv as a pandas DataFrame."""

    path: Path
    meta: dict[str, Any]
    rows: Any  # pandas.DataFrame, one row per batch size

    @property
    def run_id(self) -> str:
        return str(self.meta.get("run_id", self.path.name))


def is_infer_folder(folder: Path) -> bool:
    """True for a folder `bench infer` wrote (run.json says kind "infer"); never raises."""
    try:
        meta = json.loads((Path(folder) / RUN_JSON).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(meta, dict) and meta.get("kind") == KIND_INFER


def read_infer(folder: Path) -> InferFolder:
    """Read and validate one `bench infer` folder (from this machine or any other)."""
    import pandas as pd

    folder = Path(folder)
    meta = read_meta(folder)
    if meta.get("kind") != KIND_INFER:
        raise BenchError(f"{folder} is a training run, not an inference run: pass folders made by `bench infer`")
    csv_path = folder / INFER_CSV
    if not csv_path.is_file():
        raise BenchError(f"{folder} has no {INFER_CSV}: the inference run recorded nothing (re-run it, or leave it out)")
    try:
        rows = pd.read_csv(csv_path)
    except (ValueError, OSError) as exc:
        raise BenchError(f"{csv_path} cannot be parsed as CSV ({exc}): the file is damaged") from None
    missing = [c for c in INFER_COLUMNS if c not in rows.columns]
    if missing:
        raise BenchError(f"{csv_path} lacks columns {', '.join(missing[:5])}: it was not written by this "
                         f"schema (version {SCHEMA_VERSION}); re-run with this bench")
    return InferFolder(folder, meta, rows)


def split_by_kind(paths: Iterable[Path]) -> tuple[list[Path], list[Path]]:
    """(training run folders, inference run folders) of ``paths``, e.g. of :func:`find_runs`."""
    train: list[Path] = []
    infer: list[Path] = []
    for path in paths:
        (infer if is_infer_folder(path) else train).append(Path(path))
    return train, infer
