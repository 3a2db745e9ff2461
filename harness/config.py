"""Every setting of a run, declared once, with defaults applied and validated before anything is written.

Each :class:`RunConfig` field carries its :class:`Setting` metadata (flag, help, choices,
unit, and its role: part of the comparison identity, fixed on resume, or a run-only control).
From that one declaration come the `bench run` flags (harness/commands/run.py), the keys a
mapping may hold (:meth:`RunConfig.from_mapping`, for experiment files), run.json's settings
(:meth:`RunConfig.settings`), the identity that groups repeats (:func:`identity_settings`,
also used by `bench compare`) and what `--resume` may not change (:data:`RESUME_FIXED`).

A run that is going to fail on a bad flag must fail before it creates a folder, imports a
framework or spends a minute loading data, so ``RunConfig.validate()`` checks everything
that can be checked from the settings alone and raises :class:`BenchError` with the fix.
"""
from __future__ import annotations

import dataclasses
import difflib
import math
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from harness.backend import BACKENDS
from harness.cache import json_sha256
from harness.catalogue import MODELS, SHORTCUTS, block_names, model_info
from harness.data.augment import AUGMENTS
from harness.data.preprocess import Preprocess, normalization
from harness.device import parse_device
from harness.errors import BenchError, Unsupported
from harness.precision import COMPILE_MODES, PRECISION_NAMES, PRECISIONS, unsupported
from harness.train.keep import BEST_METRICS

OPTIMIZERS = ("sgd", "adam")
AUTO_DEVICE = "auto"  # cuda when the backend can use it, else cpu: resolved in the run's own process
SCHEDULES = ("cosine", "step", "constant")
DEFAULT_LR = {"sgd": 0.1, "adam": 1e-3}  # He et al. 2016 (SGD 0.1); Kingma & Ba 2015 (Adam 1e-3)


@dataclass(frozen=True)
class Setting:
    """What the harness knows about one setting besides its type and default.

    ``identity``: changes what is measured, so runs that differ in it are different
    configurations (compare/report group on these; repeats share them). ``resume_fixed``:
    `--resume` refuses a different value (every identity setting is, or a run's epochs
    would mix configurations). ``control``: how a run is carried out or shown, never what it
    measures (quiet, where files go); `--resume` takes the value given now.
    """
    help: str
    flag: str = ""  # filled in from the field name: --batch-size
    choices: tuple[str, ...] | None = None  # for a list setting: of each item
    unit: str = ""  # in messages, and as the flag's metavar (SECONDS) unless metavar says otherwise
    metavar: str | None = None
    identity: bool = False
    resume_fixed: bool = False
    control: bool = False
    positive: bool = False  # numbers must be > 0 (None, where allowed, means "not set")
    resolved: str | None = None  # property giving the value in effect when the field is None (run.json records it)
    name: str = ""  # the field's name, filled in by SETTINGS

    @property
    def negated(self) -> bool:
        """--no-download sets download False: the flag says the opposite of the field."""
        return self.flag.startswith("--no-") and self.flag[5:].replace("-", "_") == self.name


def setting(default: Any = dataclasses.MISSING, *, default_factory: Any = dataclasses.MISSING, **meta: Any) -> Any:
    """A RunConfig field with its :class:`Setting` metadata (``dataclasses.field`` underneath)."""
    if meta.get("identity"):
        meta.setdefault("resume_fixed", True)
    return field(default=default, default_factory=default_factory, metadata={"setting": Setting(**meta)})


def comma_list(text: str) -> tuple[str, ...]:
    """Split "a,b" into ("a", "b"): how --no-skip and a list in KEY=VALUE form are written."""
    return tuple(b for b in text.split(",") if b)


def show_value(value: Any) -> str:
    """A value as the user would type it: lists comma-joined, paths as text."""
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value)) or "none"
    return str(value)


@dataclass
class RunConfig:
    """One `bench run`'s settings. Field order is the order of `bench run --help`."""

    backends: list[str] = setting(
        default_factory=lambda: ["torch"], flag="--backend",
        choices=tuple(n for n, e in BACKENDS.items() if e.supports_training), resume_fixed=True,
        help="framework to train; repeat the flag to run several, each in its own process (inference-only "
             "backends such as onnxruntime: `bench export RUN_DIR`, then `bench infer RUN_DIR --backend NAME`)")
    device: str = setting("cpu", identity=True,
                          help="cpu, cuda, cuda:N (Chainer: cuda means CuPy) or auto: cuda when the backend can use "
                               "it here, else cpu (the comparison key keeps auto; run.json the device used)")
    model: str = setting("resnet20", identity=True, choices=tuple(MODELS), metavar="MODEL",
                         help=f"one of {', '.join(MODELS)}")
    dataset: str = setting("synthetic", identity=True, help="cifar10, synthetic (no download) or imagefolder:PATH")
    data_dir: Path = setting(Path("data"), control=True, help="where CIFAR-10 is found or downloaded to")
    epochs: int = setting(5, identity=True, positive=True, help="number of epochs")
    batch_size: int = setting(128, identity=True, positive=True, help="training batch size")
    eval_batch_size: int | None = setting(None, identity=True, positive=True, resolved="evaluation_batch_size",
                                          unit="images", help="evaluation batch size (default: --batch-size)")
    lr: float | None = setting(None, identity=True, positive=True, resolved="learning_rate",
                               help=f"peak learning rate (default: {DEFAULT_LR['sgd']} for sgd, "
                                    f"{DEFAULT_LR['adam']} for adam)")
    optimizer: str = setting("sgd", identity=True, choices=OPTIMIZERS, help="sgd (momentum 0.9) or adam")
    momentum: float = setting(0.9, identity=True, help="SGD momentum")
    weight_decay: float = setting(1e-4, identity=True, help="coupled L2 weight decay on all parameters")
    schedule: str = setting("cosine", identity=True, choices=SCHEDULES, help="per-epoch learning-rate schedule")
    seed: int = setting(0, resume_fixed=True, help="seed for weights, data order and augmentation")
    train_size: int | None = setting(None, identity=True, positive=True,
                                     help="use the first N training images (default: all; synthetic: 5000)")
    test_size: int | None = setting(None, identity=True, positive=True,
                                    help="use the first N test images (default: all; synthetic: 1000)")
    threads: int | None = setting(None, identity=True, positive=True,
                                  help="CPU threads for the framework and its BLAS (default: the framework's own)")
    precision: str = setting("fp32", identity=True, choices=PRECISION_NAMES,
                             help="numeric precision: " + "; ".join(f"{p.name} {p.help}" for p in PRECISIONS.values()))
    compile: str = setting("none", identity=True, choices=COMPILE_MODES,
                           help="torch.compile mode (inductor); none runs eagerly. Compile time is its own column "
                                "(compile_s), kept out of steady-state images/s and included in elapsed time")
    results_dir: Path = setting(Path("results"), control=True, help="where run folders are created")
    # Not identity, but fixed on resume: a resumed run is one run, and its time-to-target is
    # for the target it started with.
    repeat: int = setting(1, positive=True, resume_fixed=True, help="independent runs with seeds seed, seed+1, ...")
    target_acc: float | None = setting(None, unit="fraction", resume_fixed=True,
                                       help="stop when the per-epoch accuracy (validation split, else test) "
                                            "reaches this fraction and record the time "
                                            "(default: off)")
    quiet: bool = setting(False, control=True, help="no progress bars or per-epoch lines")
    best_metric: str = setting("auto", resume_fixed=True, choices=BEST_METRICS, metavar="METRIC",
                               help="keep checkpoint-best beside the latest checkpoint: the epoch with the lowest "
                                    "loss or highest accuracy of this epochs.csv column (auto: valid_loss with a "
                                    "validation split, else test_loss)")
    snapshot_every: int | None = setting(None, control=True, positive=True, unit="epochs", metavar="K",
                                         help="also keep checkpoint-eK, -e2K, ... (hard links; default: none)")
    shortcut: str = setting("A", identity=True, choices=SHORTCUTS,
                            help="CIFAR ResNet shortcut: A identity+zero-pad, B 1x1 projection; seed004 seed 004's "
                                 "bug (B's projection where the stride changes, no residual elsewhere)")
    no_skip: tuple[str, ...] = setting((), identity=True, metavar="BLOCKS",
                                       help="comma-separated residual blocks to ablate, e.g. layer1.2,layer3.0 "
                                            "(default: none)")
    freeze: str = setting("none", identity=True, choices=("none", "backbone"),
                          help="freeze everything but the head")
    train_bn: bool = setting(False, identity=True, help="with --freeze backbone, still update BatchNorm statistics")
    head: str = setting("linear", identity=True, choices=("linear", "mlp"),
                        help="classifier head for ImageNet ResNets")
    augment: str | None = setting(None, identity=True, choices=AUGMENTS, resolved="augmentation",
                                  help="training augmentation (default: crop_flip at 32 px, flip when resized)")
    weights: str = setting("none", identity=True,
                           help="none: canonical random init; imagenet: torchvision's IMAGENET1K_V1 (resnet18..152, "
                                "from its cache or downloaded); PATH: a torchvision state_dict .pth or a "
                                "`bench weights convert` .npz")
    cache_features: bool = setting(False, identity=True,
                                   help="with --freeze backbone --augment none: compute the backbone's features once "
                                        "(cached under DATA_DIR/feature-cache/) and train the head on them")
    image_size: int | None = setting(None, identity=True, positive=True, unit="pixels", resolved="input_size",
                                     help="input side in pixels (default: the model's: 32 CIFAR ResNets, 224 others)")
    # Preprocessing and splits (issue 15, harness/data/preprocess.py): the seeds' choices.
    normalize: str = setting("model", identity=True, metavar="CHOICE",
                             help="input normalisation: model (the model family's statistics), cifar10, imagenet, "
                                  "none (raw [0, 1]) or MEAN/STD as R,G,B/R,G,B")
    eval_resize: int | None = setting(None, identity=True, positive=True, unit="pixels",
                                      help="evaluate on Resize(PIXELS) + CenterCrop(image size), e.g. 256 for 224 "
                                           "(default: resize straight to the image size)")
    rotate: float = setting(0.0, identity=True, unit="degrees",
                            help="RandomRotation(DEGREES) before the augmentation, e.g. 30 (seed 001)")
    valid_size: int | None = setting(None, identity=True, positive=True, unit="images",
                                     help="validation split, evaluated every epoch (test once at the end): the first "
                                          "IMAGES of an image folder's valid/, or that many carved from CIFAR-10's or "
                                          "synthetic's training set by --seed (default: valid/ when beside test/, "
                                          "else none: every epoch is evaluated on test)")
    allow_truncated: bool = setting(False, identity=True,
                                    help="decode image files that end early as far as they go (Pillow's "
                                         "LOAD_TRUNCATED_IMAGES); counted in run.json")
    deterministic: bool = setting(False, identity=True,
                                  help="deterministic kernels in both frameworks (torch use_deterministic_algorithms, "
                                       "cuDNN deterministic, no cuDNN benchmark; Chainer cudnn_deterministic); "
                                       "slower, recorded in run.json")
    download: bool = setting(True, flag="--no-download", control=True, help="never download datasets or weights")
    sample_interval_s: float = setting(0.5, flag="--sample-interval", control=True, positive=True, unit="seconds",
                                       help="seconds between utilisation samples")
    # Data-parallel over the processes a launcher started (harness/distributed/); batch_size
    # stays the GLOBAL batch. Not identity: the world size (run.json) is, and implies it.
    distributed: bool = setting(False, resume_fixed=True,
                                help="data-parallel over the processes torchrun (torch) or mpiexec (chainer) "
                                     "started; --batch-size stays the global batch. `bench launch` prints and "
                                     "runs the launcher line (default: off; on by itself under a launcher with "
                                     "more than one process)")

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
    def evaluation_batch_size(self) -> int:
        return self.eval_batch_size if self.eval_batch_size is not None else self.batch_size

    def preprocess(self) -> Preprocess:
        """The image pipeline (harness/data/preprocess.py); BenchError on a bad --rotate / --eval-resize."""
        return Preprocess(image_size=self.input_size, augment=self.augmentation, rotate=self.rotate,
                          eval_resize=self.eval_resize)

    @property
    def augmentation(self) -> str:
        if self.augment is not None:
            return self.augment
        return "crop_flip" if self.input_size == 32 else "flip"

    # --- building one ---------------------------------------------------------------------------

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any], source: str,
                     overrides: Mapping[str, Any] | None = None, *, capabilities: bool = True) -> "RunConfig":
        """A validated RunConfig from ``values`` keyed by setting names: the flag's name or the
        field's, with ``-`` or ``_`` (``batch-size``, ``batch_size``, ``backend``, ``no-download``).
        ``source`` names where they came from (a file) in every error. ``overrides`` (field
        names, typed values: :func:`harness.commands.run.given_settings`) win over ``values``:
        that is how command-line flags take precedence over an experiment file.
        ``capabilities``: see :meth:`validate`."""
        return cls(**(parse_mapping(values, source) | dict(overrides or {}))).validate(capabilities=capabilities)

    @classmethod
    def from_recorded(cls, settings: Mapping[str, Any], results_dir: Path) -> "RunConfig":
        """The RunConfig of a run.json's ``settings`` (one backend, one repeat), to resume or
        to rebuild its model. Keys this bench does not know are passed over, so a folder
        written by an older or newer bench still reads; a setting it lacks takes its default."""
        kwargs = {k: _coerce(k, v, f"run.json setting {k}") for k, v in settings.items() if k in SETTINGS}
        kwargs.update(backends=[settings["backend"]], repeat=1, results_dir=results_dir)
        return cls(**kwargs)

    # --- checking it ----------------------------------------------------------------------------

    def validate(self, *, capabilities: bool = True) -> "RunConfig":
        """Refuse, in one line naming the fix, what no run could do. ``capabilities=False``
        leaves out "can this backend run this precision/compile on this device": a cell of an
        experiment matrix that cannot is reported as unsupported on the machine that runs it
        (harness/experiments/support.py), where a flag given to `bench run` is refused here."""
        for s in SETTINGS.values():  # one setting at a time: choices, positive numbers
            problem = _problem(s, getattr(self, s.name))
            if problem:
                raise BenchError(f"{s.flag} {problem}")
        if len(set(self.backends)) != len(self.backends):
            raise BenchError("a backend is listed twice in --backend: list each once")
        info = model_info(self.model)
        check_device(self.device)
        for name in self.backends if capabilities else ():  # capability flags (harness/backend.py BACKENDS)
            reason = unsupported(name, self.device, self.precision, self.compile)
            if reason:
                raise Unsupported(reason)
        if not (self.dataset in ("cifar10", "synthetic") or self.dataset.startswith("imagefolder:")):
            raise BenchError(f"unknown dataset {self.dataset!r}: choose cifar10, synthetic or imagefolder:PATH")
        if self.weight_decay < 0 or not 0 <= self.momentum < 1:
            raise BenchError("--weight-decay must be >= 0 and --momentum in [0, 1)")
        if self.target_acc is not None and not 0 < self.target_acc <= 1:
            raise BenchError(f"--target-acc is a fraction in (0, 1], e.g. 0.9; got {self.target_acc}")
        valid_blocks = block_names(info)
        bad = [b for b in self.no_skip if b not in valid_blocks]
        if bad:
            hint = f"{valid_blocks[0]} .. {valid_blocks[-1]}" if valid_blocks else "none: this model has no residual blocks"
            raise BenchError(f"--no-skip names unknown blocks {', '.join(bad)} of {self.model}: valid are {hint}")
        if info.family == "small_cnn" and self.freeze != "none":
            raise BenchError("--freeze backbone needs a ResNet: small_cnn has no pretrained backbone")
        normalization(self.normalize, self.model)
        self.preprocess()
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
        if self.augmentation != "none" or self.rotate:
            what = f"augmentation is {self.augmentation}" if self.augmentation != "none" else f"--rotate {self.rotate:g}"
            raise BenchError(f"--cache-features needs --augment none and no --rotate ({what}, so "
                             f"every epoch's images differ): {why}")
        if self.train_bn:
            raise BenchError(f"--cache-features cannot be used with --train-bn, which updates the backbone's "
                             f"BatchNorm statistics every step: {why}")
        if self.no_skip:
            raise BenchError(f"--cache-features cannot be used with --no-skip: ablated blocks are re-initialised "
                             f"and trained, so the backbone changes; {why}")

    # --- what it is -----------------------------------------------------------------------------

    def settings(self) -> dict[str, Any]:
        """Every setting after defaults, JSON-ready, for run.json: a setting left to its
        default rule (lr, augment, image_size) is recorded as the value in effect."""
        return {s.name: _json_ready(getattr(self, s.resolved) if s.resolved else getattr(self, s.name))
                for s in SETTINGS.values()}

    def identity(self) -> dict[str, Any]:
        """The settings that make this configuration what it is (see :func:`identity_settings`)."""
        return identity_settings(self.settings())

    def identity_key(self) -> str:
        """A short hash of :meth:`identity`: repeats (other seeds) and backends of one
        configuration share it, on any machine."""
        return json_sha256(self.identity())[:12]


def _json_ready(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    return list(value) if isinstance(value, tuple) else value


# --- the declaration, read back -------------------------------------------------------------------

def _declared() -> dict[str, Setting]:
    out = {}
    for f in dataclasses.fields(RunConfig):
        s = f.metadata["setting"]
        out[f.name] = dataclasses.replace(s, name=f.name, flag=s.flag or "--" + f.name.replace("_", "-"))
    return out


SETTINGS: dict[str, Setting] = _declared()
"""Every setting by field name, in declaration order."""
_TYPES = typing.get_type_hints(RunConfig)
IDENTITY: tuple[str, ...] = tuple(n for n, s in SETTINGS.items() if s.identity)
RESUME_FIXED: tuple[str, ...] = tuple(n for n, s in SETTINGS.items() if s.resume_fixed)
CONTROLS: tuple[str, ...] = tuple(n for n, s in SETTINGS.items() if s.control)
_DEFAULTS = RunConfig().settings()


def value_type(name: str) -> type:
    """The type of one setting's value, None stripped: int, float, str, bool, Path, list or tuple."""
    hint = _TYPES[name]
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if typing.get_origin(hint) in (list, tuple):
        return typing.get_origin(hint)
    return args[0] if args else hint


def accepts_none(name: str) -> bool:
    return type(None) in typing.get_args(_TYPES[name])


def identity_settings(settings: Mapping[str, Any]) -> dict[str, Any]:
    """The identity settings of a run.json's ``settings`` (``RunConfig.settings()``, this
    bench's or an older one's): what `bench compare` groups repeats by. A setting the folder
    does not record (added after it was written) takes its default, so old folders still
    group with new runs of the same configuration."""
    return {name: _json_ready(settings.get(name, _DEFAULTS[name])) for name in IDENTITY}


def resume_conflicts(recorded: RunConfig, given: Mapping[str, Any]) -> list[str]:
    """The flags in ``given`` that `--resume` refuses: a fixed setting with another value.
    Every setting is either fixed or a control (tests/test_config.py), so none is ignored."""
    return [f"{SETTINGS[k].flag} {show_value(v)} (run has {show_value(getattr(recorded, k))})"
            for k, v in given.items() if k in RESUME_FIXED and _json_ready(v) != _json_ready(getattr(recorded, k))]


def resume_changes(recorded: RunConfig, given: Mapping[str, Any]) -> dict[str, Any]:
    """The controls in ``given`` whose value differs from the run's: `--resume` applies them
    to the rest of the run and records them in run.json's ``resumes`` entry."""
    return {k: v for k, v in given.items()
            if k in CONTROLS and _json_ready(v) != _json_ready(getattr(recorded, k))}


# --- a mapping of settings (an experiment file, KEY=VALUE pairs) ------------------------------

def _keys() -> dict[str, str]:
    """Accepted key (``_`` form) -> field name: the field's own name and its flag's."""
    out = {}
    for name, s in SETTINGS.items():
        out[name] = name
        out[s.flag[2:].replace("-", "_")] = name
    return out


_KEYS = _keys()


def setting_name(key: str) -> str | None:
    """The field a mapping key names (``batch-size``, ``--batch_size``, ``backend``), or None."""
    return _KEYS.get(str(key).strip().lstrip("-").replace("-", "_"))


def parse_mapping(values: Mapping[str, Any], source: str) -> dict[str, Any]:
    """``values`` (keys as in :meth:`RunConfig.from_mapping`) as typed field values. An
    unknown key, a key given twice, a value of the wrong type or not among the choices is a
    BenchError naming ``source`` and the key, with the fix."""
    out: dict[str, Any] = {}
    seen: dict[str, str] = {}
    for key, raw in values.items():
        norm = str(key).strip().lstrip("-").replace("-", "_")
        name = _KEYS.get(norm)
        if name is None:
            close = difflib.get_close_matches(norm, list(_KEYS), n=1)
            hint = f" (did you mean {close[0].replace('_', '-')!r}?)" if close else ""
            raise BenchError(f"{source}: unknown setting {key!r}{hint}: the settings are `bench run`'s flags "
                             f"without the dashes (see `bench run --help`)")
        if name in seen:
            raise BenchError(f"{source}: {seen[name]!r} and {key!r} are the same setting: give it once")
        seen[name] = str(key)
        s = SETTINGS[name]
        value = _coerce(name, raw, f"{source}: {key}")
        if s.negated and norm != name:
            value = not value
        problem = _problem(s, value)
        if problem:
            raise BenchError(f"{source}: {key} {problem}")
        out[name] = value
    return out


_TYPE_WORDS = {int: "an integer", float: "a number", bool: "true or false", str: "a string", Path: "a path"}


def _coerce(name: str, raw: Any, label: str) -> Any:
    """One value from a file or a KEY=VALUE string as the field's type, or a BenchError."""
    kind = value_type(name)
    if raw is None:
        if accepts_none(name):
            return None
        raise BenchError(f"{label} cannot be empty: give {_TYPE_WORDS.get(kind, 'a value')} or leave the key out")
    if kind in (list, tuple):
        items = comma_list(raw) if isinstance(raw, str) else raw
        if not isinstance(items, (list, tuple)) or not all(isinstance(i, str) for i in items):
            raise BenchError(f"{label} must be a list of names or one comma-separated string, got {raw!r}")
        return kind(items)
    if kind is bool:
        if isinstance(raw, bool):
            return raw
        if isinstance(raw, str) and raw.lower() in ("true", "false"):
            return raw.lower() == "true"
    elif kind is int:
        if isinstance(raw, int) and not isinstance(raw, bool):
            return raw
        if isinstance(raw, str):
            try:
                return int(raw)
            except ValueError:
                pass
    elif kind is float:
        if isinstance(raw, (int, float)) and not isinstance(raw, bool):
            return float(raw)
        if isinstance(raw, str):
            try:
                return float(raw)
            except ValueError:
                pass
    elif kind is Path:
        if isinstance(raw, (str, Path)):
            return Path(raw)
    elif isinstance(raw, str):
        return raw
    raise BenchError(f"{label} must be {_TYPE_WORDS.get(kind, kind.__name__)}, got {raw!r}")


def _problem(s: Setting, value: Any) -> str | None:
    """What is wrong with one setting's value on its own ("must be positive, got 0"), or None."""
    if value is None:
        return None
    if s.choices is not None:
        for item in (value if isinstance(value, (list, tuple)) else [value]):
            if item not in s.choices:
                close = difflib.get_close_matches(str(item), s.choices, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                return f"must be one of {', '.join(s.choices)}; got {item!r}{hint}"
    if s.positive and not (math.isfinite(value) and value > 0):
        return f"must be a positive number of {s.unit}, got {value}" if s.unit else f"must be positive, got {value}"
    return None


def check_device(device: str) -> None:
    """A device spelling harness/device.py accepts, or ``auto`` (resolved in the run's own
    process by harness/train/prepare.py resolve_device); BenchError otherwise."""
    if device == AUTO_DEVICE:
        return
    try:
        parse_device(device)
    except BenchError:
        raise BenchError(f"unknown device {device!r}: use cpu, cuda, cuda:N or auto") from None


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

