"""Every setting of a run, with defaults applied and validated before anything is written.

A run that is going to fail on a bad flag must fail before it creates a folder, imports a
framework or spends a minute loading data, so ``RunConfig.validate()`` checks everything
that can be checked from the flags alone and raises :class:`BenchError` with the fix.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.backend import INFERENCE_ONLY, REGISTRY
from harness.catalogue import MODELS, block_names, model_info
from harness.data.augment import AUGMENTS  # noqa: F401  (re-exported for the CLI's choices)
from harness.errors import BenchError

OPTIMIZERS = ("sgd", "adam")
SCHEDULES = ("cosine", "step", "constant")
DEFAULT_LR = {"sgd": 0.1, "adam": 1e-3}  # He et al. 2016 (SGD 0.1); Kingma & Ba 2015 (Adam 1e-3)


@dataclass
class RunConfig:
    backends: list[str] = field(default_factory=lambda: ["torch"])
    device: str = "cpu"
    model: str = "resnet20"
    dataset: str = "synthetic"
    data_dir: Path = Path("data")
    epochs: int = 5
    batch_size: int = 128
    lr: float | None = None  # None: DEFAULT_LR[optimizer]
    optimizer: str = "sgd"
    momentum: float = 0.9
    weight_decay: float = 1e-4
    schedule: str = "cosine"
    seed: int = 0
    train_size: int | None = None
    test_size: int | None = None
    threads: int | None = None
    results_dir: Path = Path("results")
    repeat: int = 1
    target_acc: float | None = None
    quiet: bool = False
    shortcut: str = "A"
    no_skip: tuple[str, ...] = ()
    weights: str = "none"  # "none" | "imagenet" | PATH to a torchvision state_dict
    freeze: str = "none"
    train_bn: bool = False
    head: str = "linear"
    augment: str | None = None  # None: crop_flip at 32 px, flip when resizing
    image_size: int | None = None  # None: the model's native size
    cache_features: bool = False  # frozen backbone: compute its features once, train the head on them
    # Data-parallel over the processes a launcher started (harness/distributed/);
    # batch_size stays the GLOBAL batch, each process takes batch_size / processes.
    distributed: bool = False
    download: bool = True
    sample_interval_s: float = 0.5

    @property
    def learning_rate(self) -> float:
        return self.lr if self.lr is not None else DEFAULT_LR[self.optimizer]

    @property
    def input_size(self) -> int:
        if self.image_size is not None:
            return self.image_size
        info = model_info(self.model)
        # CIFAR-sized data through an ImageNet network: resize to its native 224 (the seeds' recipe).
        return info.image_size

    @property
    def augmentation(self) -> str:
        if self.augment is not None:
            return self.augment
        return "crop_flip" if self.input_size == 32 else "flip"

    def validate(self) -> "RunConfig":
        for name in self.backends:
            if name not in REGISTRY:
                raise BenchError(f"unknown backend {name!r}: choose from {', '.join(REGISTRY)}")
            if name in INFERENCE_ONLY:
                raise BenchError(f"{name} is an inference-only backend: train with torch or chainer, then "
                                 f"`bench export RUN_DIR --format onnx` and `bench infer RUN_DIR --backend {name}`")
        if len(set(self.backends)) != len(self.backends):
            raise BenchError("a backend is listed twice in --backend: list each once")
        info = model_info(self.model)
        _check_device(self.device)
        if not (self.dataset in ("cifar10", "synthetic") or self.dataset.startswith("imagefolder:")):
            raise BenchError(f"unknown dataset {self.dataset!r}: choose cifar10, synthetic or imagefolder:PATH")
        _positive("--epochs", self.epochs)
        _positive("--batch-size", self.batch_size)
        _positive("--repeat", self.repeat)
        if self.optimizer not in OPTIMIZERS:
            raise BenchError(f"unknown optimizer {self.optimizer!r}: choose {' or '.join(OPTIMIZERS)}")
        if self.schedule not in SCHEDULES:
            raise BenchError(f"unknown schedule {self.schedule!r}: choose {', '.join(SCHEDULES)}")
        if not (math.isfinite(self.learning_rate) and self.learning_rate > 0):
            raise BenchError(f"--lr must be a positive number, got {self.lr}")
        if self.weight_decay < 0 or not 0 <= self.momentum < 1:
            raise BenchError("--weight-decay must be >= 0 and --momentum in [0, 1)")
        for flag, value in (("--train-size", self.train_size), ("--test-size", self.test_size),
                            ("--threads", self.threads), ("--image-size", self.image_size)):
            if value is not None:
                _positive(flag, value)
        if self.target_acc is not None and not 0 < self.target_acc <= 1:
            raise BenchError(f"--target-acc is a fraction in (0, 1], e.g. 0.9; got {self.target_acc}")
        if self.shortcut not in ("A", "B"):
            raise BenchError(f"--shortcut must be A or B, got {self.shortcut!r}")
        if self.freeze not in ("none", "backbone"):
            raise BenchError(f"--freeze must be none or backbone, got {self.freeze!r}")
        if self.head not in ("linear", "mlp"):
            raise BenchError(f"--head must be linear or mlp, got {self.head!r}")
        if self.augment is not None and self.augment not in AUGMENTS:
            raise BenchError(f"unknown --augment {self.augment!r}: choose {', '.join(AUGMENTS)}")
        valid_blocks = block_names(info)
        bad = [b for b in self.no_skip if b not in valid_blocks]
        if bad:
            hint = f"{valid_blocks[0]} .. {valid_blocks[-1]}" if valid_blocks else "none: this model has no residual blocks"
            raise BenchError(f"--no-skip names unknown blocks {', '.join(bad)} of {self.model}: valid are {hint}")
        if info.family == "small_cnn" and self.freeze != "none":
            raise BenchError("--freeze backbone needs a ResNet: small_cnn has no pretrained backbone")
        if self.sample_interval_s <= 0:
            raise BenchError("--sample-interval must be > 0 seconds")
        self._validate_transfer()
        self._validate_distributed()
        return self

    def _validate_distributed(self) -> None:
        """What --distributed cannot combine with; the launcher's checks (world size, batch
        divisibility) are harness.distributed.plan()'s, which knows the world size."""
        if not self.distributed:
            return
        if len(self.backends) != 1:
            raise BenchError("a distributed run trains one backend: pass --backend once "
                             "(`bench launch` one job per backend)")
        if self.cache_features:
            raise BenchError("--cache-features cannot be used with --distributed: the feature cache is "
                             "computed and trained in one process; drop one of them")

    def _validate_transfer(self) -> None:
        """--weights and --cache-features (harness/weights.py, harness/feature_cache.py)."""
        from harness.weights import check_spec

        check_spec(self.weights, self.model, download=self.download)
        if not self.cache_features:
            return
        why = "features can be computed once only if the backbone never changes and sees the same images every epoch"
        if self.freeze != "backbone":
            raise BenchError(f"--cache-features needs --freeze backbone: {why}")
        if self.augmentation != "none":
            raise BenchError(f"--cache-features needs --augment none (augmentation is {self.augmentation}, so "
                             f"every epoch's images differ): {why}")
        if self.train_bn:
            raise BenchError(f"--cache-features cannot be used with --train-bn, which updates the backbone's "
                             f"BatchNorm statistics every step: {why}")
        if self.no_skip:
            raise BenchError(f"--cache-features cannot be used with --no-skip: ablated blocks are re-initialised "
                             f"and trained, so the backbone changes; {why}")

    def settings(self) -> dict[str, Any]:
        """Every setting after defaults, JSON-ready, for run.json."""
        out = {k: (str(v) if isinstance(v, Path) else v) for k, v in dataclasses.asdict(self).items()}
        out["no_skip"] = list(self.no_skip)
        out.update(lr=self.learning_rate, image_size=self.input_size, augment=self.augmentation)
        return out

    def group_key(self) -> str:
        """Identifies a configuration: repeats (other seeds) of it share this key, so
        reports can take medians across them. Backend and seed are not part of it."""
        s = self.settings()
        for k in ("backends", "seed", "repeat", "results_dir", "quiet", "data_dir", "download", "sample_interval_s"):
            s.pop(k, None)
        return hashlib.sha256(json.dumps(s, sort_keys=True).encode()).hexdigest()[:12]


def _positive(flag: str, value: int | float) -> None:
    if not value > 0:
        raise BenchError(f"{flag} must be positive, got {value}")


def _check_device(device: str) -> None:
    if device == "cpu" or device == "cuda":
        return
    if device.startswith("cuda:") and device[5:].isdigit():
        return
    raise BenchError(f"unknown device {device!r}: use cpu, cuda or cuda:N")


def lr_at(config: RunConfig, epoch: int) -> float:
    """Learning rate for 1-based ``epoch``: per-epoch schedules, computed in the harness so
    both backends use exactly the same values. cosine: lr * (1 + cos(pi * (e-1) / E)) / 2
    (Loshchilov & Hutter 2017, no restarts); step: /10 at 50 % and 75 % of the epochs
    (He et al. 2016 divide at 32k and 48k of 64k iterations)."""
    base, total = config.learning_rate, config.epochs
    if config.schedule == "constant":
        return base
    if config.schedule == "cosine":
        return base * (1 + math.cos(math.pi * (epoch - 1) / total)) / 2
    drops = sum(epoch > m for m in (math.ceil(total * 0.5), math.ceil(total * 0.75)))
    return base * (0.1 ** drops)


def known_models() -> list[str]:
    return list(MODELS)
