"""Experiment and suite files: TOML read with its line on a syntax error, found by name or path.

Why TOML (README): typed values without YAML's surprises (PyYAML reads ``1e-3`` as a string,
``no``/``on`` as booleans, ``3.10`` as a float), comments, and a reader in the standard
library (``tomllib``; ``tomli`` on Python 3.10). The layout of both files is EXPERIMENTS.md's.

An experiment file's top-level keys are `bench run` settings (flag names, ``-`` or ``_``)
plus the reserved keys below; a suite file lists ``[[experiment]]`` entries, each either
``use = "<shipped experiment or path>"`` with settings that override it, or an inline experiment.
"""
from __future__ import annotations

import hashlib
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import BenchError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - 3.10
    import tomli as tomllib

REPO_ROOT = Path(__file__).resolve().parents[2]  # next to harness/: experiments/, README.md
EXPERIMENTS_DIR = REPO_ROOT / "experiments"
SUITES_DIR = EXPERIMENTS_DIR / "suites"

TRAIN, INFER = "train", "infer"
# Keys an experiment holds besides `bench run` settings.
RESERVED = ("name", "version", "description", "kind", "exclude", "timeout_s", "processes")
# An infer cell's own keys (`bench infer` flags and where its model comes from).
INFER_KEYS = ("from", "source_backend", "batch_sizes", "iters", "warmup")
# The settings an infer cell may hold (they become `bench infer` flags); the model comes from the run.
INFER_SETTINGS = ("backends", "device", "threads", "model")
DEFAULT_TIMEOUT_S = 3600.0


@dataclass
class Experiment:
    """One experiment as read: settings may hold lists (matrix axes); nothing expanded yet."""
    name: str
    version: int = 1
    description: str = ""
    kind: str = TRAIN
    settings: dict[str, Any] = field(default_factory=dict)  # key as written -> value or list
    exclude: list[dict[str, Any]] = field(default_factory=list)
    timeout_s: float = DEFAULT_TIMEOUT_S
    processes: Any = 1  # an int or a list (axis): > 1 runs the cell under `bench launch`
    repeat_auto: bool = False  # repeat = "auto": until the figure is stable (harness/experiments/repeats.py)
    infer: dict[str, Any] = field(default_factory=dict)  # INFER_KEYS given
    file: Path | None = None
    sha256: str | None = None
    suite: str | None = None

    @property
    def source(self) -> str:
        """How errors name where the experiment came from."""
        where = str(self.file) if self.file else "the command line"
        return f"{where} [{self.name}]" if self.suite else where


def ADHOC_EXPERIMENT() -> Experiment:
    """The experiment of `bench run --backend a --backend b` without a file: ``adhoc``, version 0."""
    return Experiment(name="adhoc", version=0)


@dataclass
class Suite:
    name: str
    version: int
    description: str
    experiments: list[Experiment]
    file: Path
    sha256: str


def norm_key(key: Any) -> str:
    return str(key).strip().lstrip("-").replace("-", "_")


def read_toml(path: Path) -> tuple[dict[str, Any], str]:
    """(content, sha256 of the bytes). A missing or malformed file is a BenchError with the line."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise BenchError(f"{path} does not exist: pass an experiment file (.toml) or the name of a shipped one "
                         f"(`bench suite list`)") from None
    except OSError as exc:
        raise BenchError(f"{path} cannot be read ({exc.strerror}): check its permissions") from None
    try:
        content = tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise BenchError(f"{path} is not UTF-8 text: save it as UTF-8 TOML") from None
    except tomllib.TOMLDecodeError as exc:
        raise BenchError(f"{path}: TOML syntax error: {exc}: fix that line (https://toml.io)") from None
    return content, hashlib.sha256(data).hexdigest()


def _shipped(name: str, folder: Path, what: str) -> Path:
    """NAME -> folder/NAME.toml; a path (with / or .toml) is taken as given."""
    if name.endswith(".toml") or "/" in name or Path(name).is_file():
        return Path(name)
    path = folder / f"{name}.toml"
    if not path.is_file():
        known = ", ".join(shipped_names(folder)) or "none"
        raise BenchError(f"no shipped {what} {name!r} (in {folder}): choose one of {known}, or pass a .toml file")
    return path


def shipped_names(folder: Path) -> list[str]:
    return sorted(p.stem for p in folder.glob("*.toml")) if folder.is_dir() else []


def experiment_path(name: str) -> Path:
    return _shipped(name, EXPERIMENTS_DIR, "experiment")


def suite_path(name: str) -> Path:
    return _shipped(name, SUITES_DIR, "suite")


def _int(value: Any, label: str, fix: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise BenchError(f"{label} must be a positive integer, got {value!r}: {fix}")
    return value


def experiment_from_mapping(content: Mapping[str, Any], *, source: str, default_name: str, file: Path | None,
                            sha256: str | None, suite: str | None = None) -> Experiment:
    """An :class:`Experiment` from a file's (or a suite entry's) table. Reserved keys are
    checked here; settings are checked when the cells are built (matrix.expand)."""
    exp = Experiment(name=str(content.get("name") or default_name), file=file, sha256=sha256, suite=suite)
    label = f"{source}:"
    for key, value in content.items():
        k = norm_key(key)
        if k == "name":
            if not isinstance(value, str) or not value.strip():
                raise BenchError(f"{label} name must be a non-empty string, got {value!r}")
        elif k == "version":
            exp.version = _int(value, f"{label} version", "bump it (1, 2, ...) when the experiment's meaning changes")
        elif k == "description":
            exp.description = str(value)
        elif k == "kind":
            if value not in (TRAIN, INFER):
                raise BenchError(f"{label} kind must be \"train\" or \"infer\", got {value!r}")
            exp.kind = value
        elif k == "exclude":
            if not isinstance(value, list) or not all(isinstance(e, dict) for e in value):
                raise BenchError(f"{label} exclude must be an array of tables, e.g. "
                                 f"[[exclude]] backend = \"chainer\" threads = 1")
            exp.exclude = [{norm_key(a): b for a, b in e.items()} for e in value]
        elif k == "timeout_s":
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise BenchError(f"{label} timeout_s must be a positive number of seconds, got {value!r}")
            exp.timeout_s = float(value)
        elif k == "processes":
            for v in (value if isinstance(value, list) else [value]):
                _int(v, f"{label} processes", "the number of data-parallel processes (1: no launcher)")
            exp.processes = value
        elif k == "repeat" and value == "auto":
            exp.repeat_auto = True
        elif k in INFER_KEYS:
            exp.infer[k] = value
        else:
            exp.settings[str(key)] = value
    if exp.infer and exp.kind != INFER:
        raise BenchError(f"{label} {', '.join(sorted(exp.infer))} belong to an inference cell: add kind = \"infer\"")
    if exp.kind == INFER and "from" not in exp.infer:
        raise BenchError(f"{label} an infer experiment needs from = \"<training experiment in the same suite>\" "
                         f"(the run whose model it times)")
    return exp


def load_experiment(name_or_path: str, suite: str | None = None) -> Experiment:
    path = experiment_path(name_or_path)
    content, sha = read_toml(path)
    if "experiment" in content:
        raise BenchError(f"{path} is a suite file ([[experiment]] entries): run it with `bench suite run {path}`")
    return experiment_from_mapping(content, source=str(path), default_name=path.stem, file=path, sha256=sha, suite=suite)


def load_suite(name_or_path: str) -> Suite:
    path = suite_path(name_or_path)
    content, sha = read_toml(path)
    name = str(content.get("name") or path.stem)
    unknown = sorted(set(content) - {"name", "version", "description", "experiment"})
    if unknown:
        raise BenchError(f"{path}: unknown suite key {unknown[0]!r}: a suite holds name, version, description and "
                         f"[[experiment]] entries (settings go inside an entry)")
    entries = content.get("experiment")
    if not isinstance(entries, list) or not entries or not all(isinstance(e, dict) for e in entries):
        raise BenchError(f"{path}: a suite needs [[experiment]] entries, each `use = \"NAME\"` or an inline experiment")
    experiments = []
    for i, entry in enumerate(entries, 1):
        source = f"{path} experiment {i}"
        if "use" in entry:
            base_path = experiment_path(str(entry["use"]))
            if not base_path.is_absolute() and not base_path.is_file():
                base_path = path.parent / base_path
            base, base_sha = read_toml(base_path)
            merged = {**base, **{k: v for k, v in entry.items() if k != "use"}}
            # the entry's settings override the file's under any spelling (batch-size over batch_size)
            for k in entry:
                for bk in list(base):
                    if bk != k and norm_key(bk) == norm_key(k):
                        merged.pop(bk)
            experiments.append(experiment_from_mapping(merged, source=f"{source} (use {base_path})",
                                                       default_name=base_path.stem, file=base_path,
                                                       sha256=base_sha, suite=name))
        else:
            if "name" not in entry:
                raise BenchError(f"{source}: an inline experiment needs a name (or use = \"<experiment file>\")")
            experiments.append(experiment_from_mapping(entry, source=source, default_name=str(entry["name"]),
                                                       file=path, sha256=sha, suite=name))
    names = [e.name for e in experiments]
    dup = next((n for n in names if names.count(n) > 1), None)
    if dup:
        raise BenchError(f"{path}: two experiments are named {dup!r}: give each entry its own name")
    version = content.get("version", 1)
    return Suite(name, _int(version, f"{path}: version", "bump it when the suite changes"),
                 str(content.get("description", "")), experiments, path, sha)
