"""Frozen-backbone feature cache (``--cache-features``): run the backbone once per split,
then train and evaluate the head on its outputs.

With ``--freeze backbone`` the backbone's BatchNorms are in eval mode and nothing before
the head changes, so without augmentation (``--augment none``) every epoch feeds the head
exactly the same features: computing them once gives the same training at a fraction of
the cost (the seed notebook spent ~9 min per ResNet-152 epoch re-running a frozen backbone).
``RunConfig.validate`` refuses the flag where this does not hold.

Equality with the uncached run: training batches are the same images in the same order
(``BatchStream``'s ``default_rng([seed, epoch, 0])`` permutation, last partial batch
dropped), the head sees the backbone's eval-mode outputs either way, and dropout in an MLP
head draws from the framework's RNG in the same sequence. Results agree to float rounding
(convolutions run with another batch size may round differently).

Timing stays honest: features are computed (or read from disk) inside the first epoch's
train and eval passes, so that epoch's times include them.

Files: ``<data-dir>/feature-cache/<model>-<backend>-<split>-<key>.npz``; ``key`` hashes
everything the features depend on: backend and its versions, device kind, model and
shortcut, the weights' sha256 (or the canonical init's seed), input size and
normalisation, augmentation and the dataset's identity (sha256 of its arrays).
"""
from __future__ import annotations

import json
import sys
import time
import zipfile
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from harness.cache import json_sha256
from harness.device import parse_device
from harness.backend import EvalStats, StepCallback, TrainStats, iter_with_wait
from harness.catalogue import model_info
from harness.data.dataset import Dataset
from harness.data.preprocess import normalization
from harness.data.stream import BatchStream, prefetch
from harness.metrics import top1_top5
from harness.weights import head_prefix, save_npz

FORMAT = 2  # bump when the file layout or the meaning of the key changes
FEATURE_BATCH = 256  # images per features() call while filling the cache
FeatureBatch = tuple[np.ndarray, np.ndarray]


def cache_identity(config: Any, prepared: Any, dataset: Dataset, seed: int, split: str) -> dict[str, Any]:
    """Everything the backbone's features of ``split`` depend on (JSON-ready)."""
    info = model_info(config.model)
    weights = prepared.weights.get("sha256") or f"canonical init, seed {seed}"
    mean, std = normalization(config.normalize, config.model)
    return {
        "format": FORMAT, "split": split, "backend": prepared.backend.name,
        "versions": prepared.backend.versions(), "device": parse_device(config.device).kind,
        "model": config.model, "shortcut": config.shortcut if info.family == "resnet_cifar" else None,
        "weights": weights, "image_size": prepared.spec.image_size, "mean": list(mean),
        "std": list(std), "augment": "none", "eval_resize": config.eval_resize,
        "dataset": {k: dataset.identity.get(k) for k in ("name", "sha256", "train_size", "test_size", "source",
                                                         "valid_size")},
    }


def cache_path(data_dir: Path, identity: dict[str, Any]) -> Path:
    key = json_sha256(identity)[:20]
    return Path(data_dir) / "feature-cache" / f"{identity['model']}-{identity['backend']}-{identity['split']}-{key}.npz"


class FeatureSource:
    """An :class:`harness.train.sources.EpochSource` that trains the head on cached features."""

    def __init__(self, config: Any, prepared: Any, dataset: Dataset, seed: int) -> None:
        self.config, self.prepared, self.dataset, self.seed = config, prepared, dataset, seed
        self.backend = prepared.backend
        self._features: dict[str, np.ndarray] = {}

    # ------------------------------------------------------------------ EpochSource
    def _order(self, epoch: int) -> BatchStream:
        d = self.dataset  # only the indices are used: no image is touched
        return BatchStream(d.train_images, d.train_labels, batch_size=self.config.batch_size, seed=self.seed,
                           epoch=epoch, shuffle=True, drop_last=True)

    def train_images(self, epoch: int) -> int:
        return self._order(epoch).num_images

    def train(self, epoch: int, on_step: StepCallback) -> TrainStats:
        features, labels = self.features("train"), self.dataset.train_labels
        batches = ((features[idx], labels[idx]) for idx in self._order(epoch).indices())
        return self.backend.train_head_epoch(batches, on_step)

    def evaluate(self, epoch: int) -> EvalStats:
        return self._evaluate("valid" if self.dataset.has_valid else "test")

    def test(self) -> EvalStats:
        return self._evaluate("test")

    def _evaluate(self, split: str) -> EvalStats:
        features, labels = self.features(split), self.dataset.split(split)[1]
        size = self.config.evaluation_batch_size
        batches = [(features[i:i + size], labels[i:i + size]) for i in range(0, len(labels), size)]
        # The backends offer train_head_epoch but no eval counterpart: apply the head's
        # eval-mode function (linear layers with ReLU between; dropout is off in eval) in
        # numpy to the backend's own current head weights.
        return numpy_head_eval(self.backend.state_arrays(), head_prefix(self.config.model), batches)

    # ------------------------------------------------------------------ The cache
    def features(self, split: str) -> np.ndarray:
        """The backbone's features of ``split`` (float32, N x F), from memory, disk or the backbone."""
        if split in self._features:
            return self._features[split]
        d = self.dataset
        labels = d.split(split)[1]
        identity = cache_identity(self.config, self.prepared, d, self.seed, split)
        path = cache_path(self.config.data_dir, identity)
        t0 = time.perf_counter()
        features = _read(path, labels)
        if features is None:
            features = self._compute(split)
            save_npz(path, {"features": features, "labels": labels,
                            "identity": np.asarray(json.dumps(identity, sort_keys=True))})
            done = "computed"
        else:
            done = "read"
        if not self.config.quiet:
            print(f"{self.backend.name}: {split} features {features.shape} {done} in "
                  f"{time.perf_counter() - t0:.1f} s ({path})", file=sys.stderr, flush=True)
        self._features[split] = features
        return features

    def _compute(self, split: str) -> np.ndarray:
        # The split's images in stored order with the run's geometry (no augmentation: validated).
        stream = self.config.preprocess().eval_stream(self.dataset, split, batch_size=FEATURE_BATCH)
        with prefetch(stream) as batches:
            return np.concatenate([self.backend.features(b.images) for b in batches]).astype(np.float32, copy=False)


def _read(path: Path, labels: np.ndarray) -> np.ndarray | None:
    """Cached features if ``path`` holds them for exactly these labels, else None
    (a damaged or stale file is recomputed and replaced)."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            if not np.array_equal(data["labels"], labels):
                return None
            return np.asarray(data["features"], dtype=np.float32)
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None


def numpy_head_eval(state: dict[str, np.ndarray], prefix: str, batches: Iterable[FeatureBatch]) -> EvalStats:
    """Eval-mode loss, top-1 and top-5 of the head ``prefix`` (Linear, or Linear-ReLU-...-Linear
    as ``fc.0``/``fc.3``) applied to feature batches."""
    layers = _head_layers(state, prefix)
    stats = EvalStats()
    start = time.perf_counter()
    for x, y in iter_with_wait(batches, stats, time.perf_counter):
        h = np.asarray(x, dtype=np.float32)
        for i, (w, b) in enumerate(layers):
            h = h @ w.T + b
            if i < len(layers) - 1:
                h = np.maximum(h, 0)
        logits = h.astype(np.float64)
        top = logits.max(axis=1, keepdims=True)
        log_z = top[:, 0] + np.log(np.exp(logits - top).sum(axis=1))
        n = len(y)
        true = logits[np.arange(n), y]
        stats.loss_sum += float((log_z - true).sum())
        top1, top5 = top1_top5(logits, y)
        stats.correct += top1
        stats.top5_correct += top5
        stats.count += n
        stats.steps += 1
    stats.compute_s = time.perf_counter() - start - stats.data_wait_s
    return stats


def _head_layers(state: dict[str, np.ndarray], prefix: str) -> list[tuple[np.ndarray, np.ndarray]]:
    names = sorted((k[:-len(".weight")] for k in state if k.endswith(".weight")
                    and (k == f"{prefix}.weight" or k.startswith(prefix + "."))),
                   key=lambda n: int(n.rsplit(".", 1)[1]) if n != prefix else -1)
    return [(state[f"{n}.weight"], state[f"{n}.bias"]) for n in names]
