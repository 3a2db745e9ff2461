"""Everything a run needs before its first epoch: the data (loaded once for all backends)
and a backend built, configured and holding the canonical initial weights.

`bench infer`, `bench parity`, the benchmarks and the tests build backends through
:func:`prepare_backend` too, so what they measure is what `bench run` trains.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from harness.backend import Backend, InputSpec, ModelSpec, OptimSpec, create_backend
from harness.catalogue import model_info
from harness.config import AUTO_DEVICE, RunConfig
from harness.data import load_dataset, normalization
from harness.data.dataset import Dataset
from harness.errors import BenchError, Unsupported
from harness.init_weights import initial_state
from harness.measure.allocator import tune_malloc
from harness.measure.flops import train_flops_per_image
from harness.precision import unsupported
from harness.weights import apply as apply_weights


def resolve_device(requested: str, backend: str) -> str:
    """``auto`` -> the backend's first usable CUDA device, else ``cpu``; anything else as given
    (an unusable explicit device still fails in configure: no silent fallback)."""
    if requested != AUTO_DEVICE:
        return requested
    usable = [d.name for d in create_backend(backend).devices() if d.usable and d.name.startswith("cuda")]
    return "cuda" if usable else "cpu"


def load_data(config: RunConfig) -> Dataset:
    """The dataset at the run's sizes; a batch larger than the training set is refused here."""
    size = config.input_size if config.dataset.startswith("imagefolder:") else 32
    dataset = load_dataset(config.dataset, data_dir=config.data_dir, train_size=config.train_size,
                           test_size=config.test_size, seed=0, image_size=size, download=config.download,
                           valid_size=config.valid_size, valid_seed=config.seed, eval_resize=config.eval_resize,
                           whole_frames=config.preprocess().whole_frames, allow_truncated=config.allow_truncated)
    n_train = len(dataset.train_labels)
    if config.batch_size > n_train:
        raise BenchError(f"--batch-size {config.batch_size} is larger than the {n_train} training images: "
                         f"lower it or raise --train-size")
    return dataset


@dataclass
class Prepared:
    backend: Backend
    spec: ModelSpec
    thread_settings: dict[str, Any]
    flops_per_image: int
    weights: dict[str, Any] = field(default_factory=dict)  # run.json model.weights (harness/weights.py)
    execution: dict[str, Any] = field(default_factory=dict)  # run.json execution: precision, compile


def model_specs(config: RunConfig, num_classes: int) -> tuple[ModelSpec, OptimSpec, InputSpec]:
    """What the backend builds from ``config``; `bench infer` rebuilds a run's model with it."""
    spec = ModelSpec(name=config.model, num_classes=num_classes, image_size=config.input_size,
                     shortcut=config.shortcut, no_skip=tuple(config.no_skip), head=config.head,
                     freeze=config.freeze, train_bn=config.train_bn)
    optim = OptimSpec(name=config.optimizer, lr=config.learning_rate, momentum=config.momentum,
                      weight_decay=config.weight_decay)
    mean, std = normalization(config.normalize, config.model)  # the one normalisation, applied by the backend
    return spec, optim, InputSpec(mean=mean, std=std)


def prepare_backend(config: RunConfig, name: str, seed: int, num_classes: int) -> Prepared:
    """Create, configure and build a backend, and load the canonical initial weights."""
    reason = unsupported(name, config.device, config.precision, config.compile)  # also after device resolution
    if reason:
        raise Unsupported(reason)
    backend = create_backend(name)
    threads = backend.configure(device=config.device, threads=config.threads, seed=seed,
                                deterministic=config.deterministic, precision=config.precision, compile=config.compile)
    threads["malloc"] = tune_malloc()  # reuse freed step buffers (harness/measure/allocator.py)
    spec, optim, inputs = model_specs(config, num_classes)
    backend.build(spec, optim, inputs)
    shapes = {k: tuple(v.shape) for k, v in backend.state_arrays().items()}
    backend.load_arrays(initial_state(shapes, seed))
    # --weights over the canonical init; a head that does not fit and --no-skip blocks keep
    # the canonical init ("re-initialised and trainable"). harness/weights.py.
    weights = apply_weights(backend, spec=config.weights, model=config.model, no_skip=tuple(config.no_skip),
                            download=config.download, quiet=config.quiet)
    flops = train_flops_per_image(model_info(config.model), image_size=spec.image_size, num_classes=num_classes,
                                  shortcut=spec.shortcut, head=spec.head,
                                  frozen_backbone=spec.freeze == "backbone")
    return Prepared(backend, spec, threads, flops, weights, backend.execution())
