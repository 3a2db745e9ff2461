"""How long a cell will take: for `--dry-run` and the suite's ETA.

time = startup + epochs x (train images x train FLOPs + test images x forward FLOPs) / rate.
The rate is achieved training GFLOP/s (epochs.csv ``train_gflops_per_s``, steady epochs),
taken from earlier runs, best match first: the same backend, device kind and model in the
results folder or in ``results/reference/`` (when present); the same backend and device kind;
else a conservative default per backend (:data:`DEFAULT_GFLOPS`: about half of what this
project's 2-core CI machine measures, so an estimate errs long). Each estimate says which it used.
Processes and threads are not modelled: a layout cell is estimated at the single-process rate.
"""
from __future__ import annotations

import csv
import json
import statistics
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from harness import schema as R
from harness.catalogue import model_info
from harness.data import SYNTHETIC_DEFAULT_SIZES
from harness.experiments.files import INFER, REPO_ROOT
from harness.experiments.matrix import Cell
from harness.measure.flops import forward_flops, train_flops_per_image

# (backend, device kind) -> training GFLOP/s. CPU: ~half of ResNet-20 on a 2-core CI machine
# (torch ~700 img/s = ~170 GFLOP/s, chainer ~60 img/s = ~15); CUDA: a modest GPU.
DEFAULT_GFLOPS = {("torch", "cpu"): 80.0, ("chainer", "cpu"): 7.0, ("onnxruntime", "cpu"): 80.0,
                  ("torch", "cuda"): 4000.0, ("chainer", "cuda"): 2000.0, ("onnxruntime", "cuda"): 4000.0}
STARTUP_S = {"torch": 5.0, "chainer": 6.0, "onnxruntime": 4.0}  # process start + imports + data
EXPORT_S = 15.0  # `bench export` of the source run, once, for an onnxruntime cell
REFERENCE_DIR = REPO_ROOT / "results" / "reference"


@dataclass(frozen=True)
class Estimate:
    seconds: float
    basis: str  # "measured (3 runs in DIR)", "default"


def _device_kind(device: str) -> str:
    return "cuda" if device.startswith("cuda") else "cpu"


class Rates:
    """Achieved GFLOP/s of earlier runs, by (backend, device kind, model)."""

    def __init__(self, folders: Iterable[Path]):
        self.by_model: dict[tuple[str, str, str], list[float]] = {}
        self.where: dict[tuple[str, str, str], str] = {}
        for folder in folders:
            if not Path(folder).is_dir():
                continue
            for run_json in Path(folder).glob(f"*/{R.RUN_JSON}"):
                self._add(run_json, str(folder))

    def _add(self, run_json: Path, where: str) -> None:
        try:
            meta = json.loads(run_json.read_text())
            settings = meta["settings"]
            k = (settings["backend"], _device_kind(str(settings["device"])), settings["model"])
            with (run_json.parent / R.EPOCHS_CSV).open(newline="") as f:
                rows = [float(r["train_gflops_per_s"]) for r in csv.DictReader(f) if r.get("train_gflops_per_s")]
        except (OSError, ValueError, KeyError, TypeError):
            return
        rows = rows[1:] or rows
        if int(meta.get("world_size") or 1) == 1 and rows:
            self.by_model.setdefault(k, []).append(statistics.median(rows))
            self.where.setdefault(k, where)

    def rate(self, backend: str, device: str, model: str) -> tuple[float, str]:
        kind = _device_kind(device)
        exact = self.by_model.get((backend, kind, model))
        if exact:
            return statistics.median(exact), f"measured ({len(exact)} runs in {self.where[(backend, kind, model)]})"
        same = [v for (b, d, _), vs in self.by_model.items() if b == backend and d == kind for v in vs]
        if same:
            return statistics.median(same), f"measured ({backend} on other models)"
        return DEFAULT_GFLOPS.get((backend, kind), DEFAULT_GFLOPS[("chainer", kind)]), "default"


def rates_for(results_dir: Path | None) -> Rates:
    return Rates([p for p in (results_dir, REFERENCE_DIR) if p is not None])


def estimate(cell: Cell, rates: Rates) -> Estimate:
    device = cell.device_requested
    device = "cpu" if device == "auto" else device  # conservative: auto may find no GPU
    if cell.kind == INFER:
        info = model_info(cell.values["model"])
        size = info.image_size
        backbone, head = forward_flops(info, image_size=size, num_classes=10)
        rate, basis = rates.rate(cell.infer["source_backend"], device, cell.values["model"])
        calls = sum((cell.infer["iters"] + cell.infer["warmup"]) * b for b in cell.infer["batch_sizes"])
        images = calls + SYNTHETIC_DEFAULT_SIZES[1]  # the accuracy pass over the run's test set
        seconds = STARTUP_S.get(cell.backend, 5.0) + images * (backbone + head) / (rate * 1e9)
        if cell.backend == "onnxruntime":
            seconds += EXPORT_S
        return Estimate(seconds, basis)
    config = cell.config
    assert config is not None
    info = model_info(config.model)
    train_n = config.train_size or (SYNTHETIC_DEFAULT_SIZES[0] if config.dataset == "synthetic" else 50000)
    test_n = config.test_size or (SYNTHETIC_DEFAULT_SIZES[1] if config.dataset == "synthetic" else 10000)
    flops = train_flops_per_image(info, image_size=config.input_size, num_classes=10, shortcut=config.shortcut,
                                  head=config.head, frozen_backbone=config.freeze == "backbone")
    backbone, head = forward_flops(info, image_size=config.input_size, num_classes=10, shortcut=config.shortcut,
                                   head=config.head)
    rate, basis = rates.rate(cell.backend, device, config.model)
    per_epoch = (train_n * flops + test_n * (backbone + head)) / (rate * 1e9)
    return Estimate(STARTUP_S.get(cell.backend, 5.0) * cell.processes + config.epochs * per_epoch, basis)


def show(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"
