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
    ``valid_images``/``valid_labels`` hold an extra split where the source has one
    (image folders with both ``valid/`` and ``test/``).
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

    def __post_init__(self) -> None:
        k = len(self.class_names)
        check_split(self.train_images, self.train_labels, k, "train")
        check_split(self.test_images, self.test_labels, k, "test")
        if self.valid_images is not None:
            assert self.valid_labels is not None
            check_split(self.valid_images, self.valid_labels, k, "valid")

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

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
        full_hash = str(self.identity.get("sha256", ""))
        if not full_hash.startswith("synthetic"):
            # Synthetic data is a pure function of (seed, size), so its label stays valid;
            # anything read from disk gets the hash of exactly the arrays used.
            identity["sha256"] = arrays_sha256(train_images, train_labels, test_images, test_labels)
            identity["subset_of"] = {
                "train_size": int(self.train_images.shape[0]),
                "test_size": int(self.test_images.shape[0]),
                "sha256": full_hash,
            }
        return replace(self, train_images=train_images, train_labels=train_labels,
                       test_images=test_images, test_labels=test_labels, identity=identity)

    def _check_size(self, size: int | None, available: int, split: str, flag: str) -> int:
        if size is None:
            return available
        if size < 1 or size > available:
            raise BenchError(
                f"{flag} {size} is out of range: {self.name} has {available} {split} images; "
                f"pass a value from 1 to {available}"
            )
        return int(size)
