"""The in-memory dataset every loader returns and every backend trains on.

A :class:`Dataset` is plain numpy: uint8 NHWC images and int64 labels, the layout
:class:`harness.backend.Batch` carries, so nothing framework-typed is ever built here.
Its ``identity`` goes into run.json, so two runs can prove they saw the same bytes.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from harness.cache import arrays_sha256  # noqa: F401 (re-exported: harness.data's readers import it from here)
from harness.errors import BenchError

VALID_CARVE_TAG = 3  # second rng key element: the carve-out's stream is unrelated to any batch order


def check_split(images: np.ndarray, labels: np.ndarray, num_classes: int, what: str) -> None:
    """Programming-error checks on a split's layout (loaders have validated the files)."""
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"{what} images must be uint8 (N, H, W, 3), got {images.dtype} {images.shape}")
    if labels.dtype != np.int64 or labels.shape != (images.shape[0],):
        raise ValueError(f"{what} labels must be int64 ({images.shape[0]},), got {labels.dtype} {labels.shape}")
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"{what} labels must lie in 0..{num_classes - 1}")


@dataclass
class Dataset:
    """Train and test splits in memory (uint8 NHWC, int64 labels) plus provenance.

    ``identity`` is what run.json records: ``name``, ``train_size``, ``test_size``,
    ``sha256`` (of the arrays, or ``"synthetic, seed N"``) and ``source`` (a path).
    ``valid_images``/``valid_labels`` hold a validation split where there is one (an image
    folder's ``valid/`` beside ``test/``, or :meth:`carve_valid`): runs then evaluate on it
    every epoch and on test once at the end. ``train_frames`` (N, 2): the original
    (height, width) of each training image when it is stored as a squashed whole frame
    (image folders with ``random_resized_crop``). ``preprocessed``: the evaluation splits
    are already at the model's input size (decoded with the evaluation transform), so a
    stream must not resize them again.
    """

    name: str
    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    class_names: list[str]
    identity: dict[str, Any] = field(default_factory=dict)
    valid_images: np.ndarray | None = None
    valid_labels: np.ndarray | None = None
    train_frames: np.ndarray | None = None
    preprocessed: bool = False

    def __post_init__(self) -> None:
        k = len(self.class_names)
        check_split(self.train_images, self.train_labels, k, "train")
        check_split(self.test_images, self.test_labels, k, "test")
        if self.valid_images is not None:
            assert self.valid_labels is not None
            check_split(self.valid_images, self.valid_labels, k, "valid")
        if self.train_frames is not None and self.train_frames.shape != (self.train_images.shape[0], 2):
            raise ValueError(f"train_frames must be (N, 2), got {self.train_frames.shape}")

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def has_valid(self) -> bool:
        return self.valid_images is not None

    @property
    def per_epoch_split(self) -> str:
        """The split evaluated after every epoch: validation when there is one, else test."""
        return "valid" if self.valid_images is not None else "test"

    def evaluation_plan(self) -> dict[str, Any]:
        """run.json's ``evaluation``: the split evaluated after every epoch, and the one
        evaluated once after the last (the runner adds its figures)."""
        if self.valid_images is not None:
            return {"per_epoch": {"split": "valid", "images": int(len(self.valid_labels))},  # type: ignore[arg-type]
                    "final": {"split": "test", "images": int(len(self.test_labels))}}
        return {"per_epoch": {"split": "test", "images": int(len(self.test_labels))}, "final": None,
                "note": "no validation split: every epoch is evaluated on the test split, as bench did before "
                        "validation splits (--valid-size, or valid/ beside test/); choosing an epoch by these "
                        "figures selects on test data"}

    def split(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """The images and labels of ``"train"``, ``"valid"`` or ``"test"``."""
        if name == "valid" and self.valid_images is None:
            raise ValueError(f"{self.name} has no validation split")
        images, labels = {"train": (self.train_images, self.train_labels), "test": (self.test_images, self.test_labels),
                          "valid": (self.valid_images, self.valid_labels)}[name]
        return images, labels  # type: ignore[return-value]

    def arrays_hash(self) -> str:
        """SHA-256 of the splits a run uses (validation included when there is one)."""
        arrays = [self.train_images, self.train_labels, self.test_images, self.test_labels]
        if self.valid_images is not None and self.valid_labels is not None:
            arrays += [self.valid_images, self.valid_labels]
        return arrays_sha256(*arrays)

    def carve_valid(self, size: int, seed: int) -> "Dataset":
        """Move ``size`` training images, chosen by ``seed``, into a validation split.

        He et al. 2016 (sec. 4.2) tuned on a 45k/5k split of CIFAR-10's training set; the
        test set stays untouched until the end. The choice depends on ``seed`` alone (not on
        the run's repeat), so every repeat and backend validates on the same images; the
        rest of the training set keeps its order, so ``--train-size`` still takes a prefix.
        """
        n = self.train_images.shape[0]
        if self.valid_images is not None:
            raise BenchError(f"{self.name} already has a validation split: drop --valid-size's carve-out")
        if not 1 <= size < n:
            raise BenchError(f"--valid-size {size} is out of range: {self.name} has {n} training images to carve "
                             f"it from; pass a value from 1 to {n - 1}")
        chosen = np.sort(np.random.default_rng([seed, VALID_CARVE_TAG]).permutation(n)[:size])
        keep = np.ones(n, dtype=bool)
        keep[chosen] = False
        identity = dict(self.identity, train_size=int(n - size), valid_size=int(size),
                        valid_split=f"carved from the training split (seed {seed})")
        carved = replace(self, train_images=self.train_images[keep], train_labels=self.train_labels[keep],
                         valid_images=self.train_images[chosen], valid_labels=self.train_labels[chosen],
                         train_frames=None if self.train_frames is None else self.train_frames[keep],
                         identity=identity)
        if not str(self.identity.get("sha256", "")).startswith("synthetic"):
            carved.identity["sha256"] = carved.arrays_hash()
        return carved

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.train_images.shape[1:])  # type: ignore[return-value]

    def subset(self, train_size: int | None, test_size: int | None) -> "Dataset":
        """The first ``train_size`` training and first ``test_size`` test images (None: all).

        Taking a prefix, not a random sample, keeps a subset identical across machines and
        runs without recording a seed; CIFAR-10's batches are already in random order.
        Views, not copies: the arrays share memory with this dataset.
        """
        n_train = self._check_size(train_size, self.train_images.shape[0], "train", "--train-size")
        n_test = self._check_size(test_size, self.test_images.shape[0], "test", "--test-size")
        if n_train == self.train_images.shape[0] and n_test == self.test_images.shape[0]:
            return self
        train_images, train_labels = self.train_images[:n_train], self.train_labels[:n_train]
        test_images, test_labels = self.test_images[:n_test], self.test_labels[:n_test]
        identity = dict(self.identity, train_size=n_train, test_size=n_test)
        frames = None if self.train_frames is None else self.train_frames[:n_train]
        cut = replace(self, train_images=train_images, train_labels=train_labels, test_images=test_images,
                      test_labels=test_labels, identity=identity, train_frames=frames)
        full_hash = str(self.identity.get("sha256", ""))
        if not full_hash.startswith("synthetic"):
            # Synthetic data is a pure function of (seed, size), so its label stays valid;
            # anything read from disk gets the hash of exactly the arrays used.
            identity["sha256"] = cut.arrays_hash()
            identity["subset_of"] = {
                "train_size": int(self.train_images.shape[0]),
                "test_size": int(self.test_images.shape[0]),
                "sha256": full_hash,
            }
        return cut

    def _check_size(self, size: int | None, available: int, split: str, flag: str) -> int:
        if size is None:
            return available
        if size < 1 or size > available:
            raise BenchError(
                f"{flag} {size} is out of range: {self.name} has {available} {split} images; "
                f"pass a value from 1 to {available}"
            )
        return int(size)
