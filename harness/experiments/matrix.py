"""An experiment -> its cells: every combination of its list values (file order), minus ``exclude``.

A list value is an axis, except where a list *is* the value: ``no-skip`` (a list of block
names; a list of lists is an axis) and an infer cell's ``batch-sizes``. ``backend`` is always
an axis: each cell runs one backend. Every cell's settings are checked through
``RunConfig.from_mapping`` (the single declaration of settings), so a bad value fails for
the whole file before anything runs, naming the file and the key. Settings given on the
command line (``overrides``, field names) replace the whole axis.
"""
from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from harness.config import SETTINGS, RunConfig, parse_mapping, setting_name, value_type
from harness.errors import BenchError
from harness.experiments import keys
from harness.experiments.files import INFER, INFER_SETTINGS, Experiment

DEFAULT_BATCH_SIZES = (1, 8, 32)


@dataclass
class Cell:
    """One combination of an experiment's axes: what one child process runs (per repeat)."""
    experiment: Experiment
    axes: dict[str, Any]  # axis name (field name, or "processes") -> this cell's value
    values: dict[str, Any]  # field name -> typed value: the file's settings with this cell's axis values
    config: RunConfig | None  # train cells: validated, overrides applied
    processes: int = 1
    infer: dict[str, Any] = field(default_factory=dict)
    key: str = ""

    @property
    def kind(self) -> str:
        return self.experiment.kind

    @property
    def backend(self) -> str:
        return self.values["backends"][0]

    @property
    def device_requested(self) -> str:
        return str(self.values.get("device", "cpu"))

    def label(self) -> str:
        axes = " ".join(f"{k.replace('_', '-')}={_show(v)}" for k, v in self.axes.items() if k != "backends")
        return f"{self.experiment.name} {self.backend}{' ' + axes if axes else ''}"

    def record(self) -> dict[str, Any]:
        """run.json's ``experiment`` section for this cell (EXPERIMENTS.md)."""
        e = self.experiment
        return {"name": e.name, "version": e.version, "kind": e.kind, "file": str(e.file) if e.file else None,
                "sha256": e.sha256, "suite": e.suite, "key": self.key,
                "cell": {k: _json(v) for k, v in self.axes.items()}}


def _show(value: Any) -> str:
    return ",".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)


def _json(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _is_axis(name: str, value: Any, kind: str) -> bool:
    if not isinstance(value, list):
        return False
    if name == "backends" or (kind == INFER and name == "batch_sizes"):
        return name == "backends"
    if name in SETTINGS and value_type(name) in (list, tuple):
        return bool(value) and all(isinstance(v, list) for v in value)  # no-skip: a list of lists
    return True


def expand(exp: Experiment, overrides: Mapping[str, Any] | None = None) -> list[Cell]:
    """Every cell of ``exp`` in file order, each validated; ``overrides`` (field names, typed
    values, from the command line) replace the file's value or axis."""
    overrides = dict(overrides or {})
    source = exp.source
    raw: dict[str, Any] = {}
    for key, value in exp.settings.items():  # check names (and spellings) once, with the file's words
        name = _field_name(key, source, exp.kind)
        raw[name] = (key, value)
    if "backends" in overrides and isinstance(overrides["backends"], list) and len(overrides["backends"]) > 1:
        raw["backends"] = ("backend", list(overrides.pop("backends")))
    for name in list(overrides):
        raw.pop(name, None)  # a flag replaces the file's value or whole axis
    axes = {n: v for n, (k, v) in raw.items() if _is_axis(n, v, exp.kind)}
    procs = exp.processes
    axis_items = list(axes.items()) + ([("processes", procs)] if isinstance(procs, list) else [])
    for name, values in axis_items:
        if not values:
            raise BenchError(f"{source}: {name.replace('_', '-')} is an empty list: give at least one value")
    cells: list[Cell] = []
    for combo in itertools.product(*[v for _, v in axis_items]):
        chosen = dict(zip([n for n, _ in axis_items], combo))
        mapping = {k: chosen.get(n, v) for n, (k, v) in raw.items()}
        processes = int(chosen.get("processes", procs if not isinstance(procs, list) else 1))
        given = {n: v for n, (k, v) in raw.items() if n not in chosen} | chosen | overrides
        if _excluded(exp, given, processes):
            continue
        cells.append(_cell(exp, chosen, mapping, overrides, processes))
    if not cells:
        raise BenchError(f"{source}: every cell is excluded: loosen the exclude entries")
    return cells


def _field_name(key: str, source: str, kind: str) -> str:
    """The field a file key names; unknown keys fail in parse_mapping with a suggestion."""
    name = setting_name(key)
    if name is None:
        parse_mapping({key: None}, source)  # raises: unknown setting, with its suggestion
    assert name is not None
    if kind == INFER and name not in INFER_SETTINGS:
        raise BenchError(f"{source}: {key} is a training setting: an infer cell takes "
                         f"backend, device, threads, model and its own "
                         f"from/batch-sizes/iters/warmup (the rest comes from the training run)")
    return name


def _excluded(exp: Experiment, values: dict[str, Any], processes: int) -> bool:
    for entry in exp.exclude:
        match = True
        for k, want in entry.items():
            got: Any
            if k == "processes":
                got = processes
            else:
                name = setting_name(k)
                if name is None:
                    parse_mapping({k: None}, f"{exp.source} exclude")  # unknown key: one line with a suggestion
                assert name is not None
                got = values.get(name)
                if name == "backends" and isinstance(got, list) and len(got) == 1:
                    got = got[0]
            if got != want and not (isinstance(got, (list, tuple)) and list(got) == want):
                match = False
                break
        if match:
            return True
    return False


def _cell(exp: Experiment, chosen: dict[str, Any], mapping: dict[str, Any], overrides: dict[str, Any],
          processes: int) -> Cell:
    source = exp.source
    axes = {n: v for n, v in chosen.items()}
    if exp.kind == INFER:
        return _infer_cell(exp, axes, mapping, overrides, processes)
    if isinstance(mapping.get("backend"), str):
        mapping["backend"] = [mapping["backend"]]
    config = RunConfig.from_mapping(mapping, source, overrides, capabilities=False)  # support.py decides, per machine
    if len(config.backends) != 1:
        config.backends = config.backends[:1]
    values = {n: getattr(config, n) for n in SETTINGS if n in parse_mapping(mapping, source) or n in overrides}
    values["backends"] = list(config.backends)
    cell = Cell(exp, axes, values, config, processes)
    if processes > 1:
        if config.cache_features:
            raise BenchError(f"{source}: processes = {processes} cannot be used with cache-features: drop one")
        if config.batch_size % processes:
            raise BenchError(f"{source}: batch-size {config.batch_size} does not divide by processes = {processes}: "
                             f"choose a multiple")
    settings = config.settings()
    settings["device"] = config.device  # requested (auto stays auto)
    cell.key = keys.comparison_key(exp.name, exp.version,
                                   keys.key_settings(settings, backend=config.backends[0], processes=processes))
    return cell


def _infer_cell(exp: Experiment, axes: dict[str, Any], mapping: dict[str, Any], overrides: dict[str, Any],
                processes: int) -> Cell:
    from harness.backend import REGISTRY

    source = exp.source
    if processes != 1:
        raise BenchError(f"{source}: an infer cell runs in one process: drop processes")
    # the backend of an infer cell may be inference-only (onnxruntime), which `bench run` refuses
    backend_key = next((k for k in mapping if setting_name(k) == "backends"), None)
    backend = mapping.pop(backend_key) if backend_key else "torch"
    backend = backend[0] if isinstance(backend, list) else backend
    if backend not in REGISTRY:
        raise BenchError(f"{source}: backend {backend!r} is not one of {', '.join(REGISTRY)}")
    values = parse_mapping(mapping, source) | {k: v for k, v in overrides.items() if k in INFER_SETTINGS}
    values["backends"] = [backend]
    if "model" not in values:
        raise BenchError(f"{source}: an infer cell names its model (model = \"resnet20\"): the run it times has it")
    inf = dict(exp.infer)
    sizes = inf.get("batch_sizes", list(DEFAULT_BATCH_SIZES))
    if not isinstance(sizes, list) or not sizes or not all(isinstance(b, int) and not isinstance(b, bool) and b > 0
                                                             for b in sizes):
        raise BenchError(f"{source}: batch-sizes must be a list of positive integers, e.g. [1, 8, 32]; got {sizes!r}")
    for k in ("iters", "warmup"):
        v = inf.get(k, 20 if k == "iters" else 3)
        if isinstance(v, bool) or not isinstance(v, int) or v < (1 if k == "iters" else 0):
            raise BenchError(f"{source}: {k} must be a {'positive' if k == 'iters' else 'non-negative'} integer, got {v!r}")
        inf[k] = v
    inf["batch_sizes"] = sizes
    inf.setdefault("source_backend", "torch" if values["backends"][0] not in ("torch", "chainer")
                   else values["backends"][0])
    if values["backends"][0] not in REGISTRY or inf["source_backend"] not in ("torch", "chainer"):
        raise BenchError(f"{source}: backend must be one of {', '.join(REGISTRY)} and source-backend torch or chainer")
    from harness.config import check_device

    device = str(values.get("device", "cpu"))
    check_device(device)
    values["device"] = device
    cell = Cell(exp, axes, values, None, 1, inf)
    extra = {"kind": INFER, "from": inf["from"], "source_backend": inf["source_backend"],
             "batch_sizes": list(sizes), "iters": inf["iters"], "warmup": inf["warmup"]}
    ident = {"model": values["model"], "device": device, "threads": values.get("threads")}
    cell.key = keys.comparison_key(exp.name, exp.version, {**ident, **extra, "backend": values["backends"][0],
                                                           "processes": 1})
    return cell
