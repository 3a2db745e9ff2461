"""The one reader of run folders, from this machine or any other, of this schema version or
an older readable one (round 1 wrote schema 1, without ``harness_s``).

``bench compare``, ``bench report``, ``bench infer`` and ``--resume`` read folders through
here and nowhere else, so a folder that one of them accepts, all of them accept.
"""
from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from harness.errors import BenchError
from harness.schema.columns import (
    ADDED_IN_VERSION,
    EPOCH_COLUMNS,
    EPOCHS_CSV,
    INFER_COLUMNS,
    INFER_CSV,
    KIND_INFER,
    READABLE_SCHEMA_VERSIONS,
    REFERENCE_JSON,
    RUN_JSON,
    SCHEMA_VERSION,
    UTIL_CSV,
)
from harness.schema.meta import validate_meta


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
    """run.json of ``folder``, validated (:func:`harness.schema.meta.validate_meta`) and of a
    readable schema version (this one or round 1's); BenchError naming the fix otherwise."""
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
    problem = validate_meta(meta)
    if problem is not None:
        raise BenchError(f"{meta_path}: {problem}: the run folder is damaged; re-run or remove it")
    version = meta.get("schema_version")
    if version not in READABLE_SCHEMA_VERSIONS:
        raise BenchError(
            f"{meta_path} has results schema version {version!r}; this bench reads "
            f"{', '.join(map(str, READABLE_SCHEMA_VERSIONS))}: upgrade bench (pip install -U) to read it"
        )
    return meta


def reference_view(folder: Path, meta: dict[str, Any]) -> dict[str, Any]:
    """``meta`` as comparisons see it. A run of a published reference set (a folder with
    REFERENCE_JSON beside it: results/reference/) is its own machine, also beside runs of the
    same hardware: a newcomer's `bench report results/reference <theirs>` run on the machine
    the reference was measured on must line the two up, not pool them as repeats. Its machine
    id gets a ``reference-`` prefix and its hostname says "reference"; the file is unchanged."""
    if not (Path(folder).parent / REFERENCE_JSON).is_file():
        return meta
    machine = dict(meta.get("machine") or {})
    if machine.get("reference"):
        return meta
    host = machine.get("hostname") or "?"
    machine.update(reference=True, hostname=f"reference ({host})",
                   machine_id=f"reference-{machine.get('machine_id') or host}")
    return {**meta, "machine": machine}


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
    meta = reference_view(folder, read_meta(folder))
    epochs_path = folder / EPOCHS_CSV
    if not epochs_path.is_file():
        raise BenchError(f"{folder} has no {EPOCHS_CSV}: the run recorded no epoch (re-run it, or leave it out)")
    try:
        epochs = pd.read_csv(epochs_path)
    except (ValueError, OSError) as exc:
        raise BenchError(f"{epochs_path} cannot be parsed as CSV ({exc}): the file is damaged") from None
    version = meta["schema_version"]  # read_meta refused a folder without a readable one
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
    unique: dict[Path, Path] = {}  # the first path given for each folder, in the order given
    for p in found:
        unique.setdefault(p.resolve(), p)
    return list(unique.values())


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
    meta = reference_view(folder, read_meta(folder))
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
