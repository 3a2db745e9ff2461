"""bench's data layer: datasets in memory as numpy, and the batches every backend sees.

- :func:`load_dataset` -- ``"cifar10"``, ``"synthetic"`` or ``"imagefolder:PATH"`` to a
  :class:`Dataset` (uint8 NHWC images, int64 labels, class names, identity for run.json).
- :class:`Preprocess` -- the run's image pipeline (rotation, augmentation, evaluation
  transform) and :func:`normalization` (the mean/std every backend normalises with).
- :class:`BatchStream` -- one epoch of :class:`harness.backend.Batch` es, seeded by
  (seed, epoch), shuffled, augmented, resized and sharded the same for every backend;
  :func:`prefetch` builds them ahead on a background thread.

No framework is imported here: the same bytes reach PyTorch and Chainer.
"""
from __future__ import annotations

from pathlib import Path

from harness.data.cifar import load_cifar10
from harness.data.dataset import Dataset
from harness.data.imagefolder import load_imagefolder
from harness.data.preprocess import NORMALIZE_CHOICES, Preprocess, normalization
from harness.data.stream import BatchStream, eval_stream, prefetch
from harness.data.synthetic import make_synthetic
from harness.errors import BenchError

__all__ = ["Dataset", "BatchStream", "eval_stream", "prefetch", "load_dataset", "load_cifar10",
           "load_imagefolder", "make_synthetic", "Preprocess", "normalization", "NORMALIZE_CHOICES", "DATASET_CHOICES",
           "SYNTHETIC_DEFAULT_SIZES"]

DATASET_CHOICES = ("cifar10", "synthetic", "imagefolder:PATH")
SYNTHETIC_DEFAULT_SIZES = (5000, 1000)  # (train, test) when no size is given


def load_dataset(name: str, *, data_dir: Path, train_size: int | None, test_size: int | None,
                 seed: int, image_size: int = 32, download: bool = True, valid_size: int | None = None,
                 valid_seed: int | None = None,
                 eval_resize: int | None = None, whole_frames: bool = False,
                 allow_truncated: bool = False) -> Dataset:
    """Load ``name`` and cut it to the first ``train_size``/``test_size`` images (None: all).

    ``image_size`` is the stored side for ``synthetic`` and image folders. CIFAR-10 is
    always stored at 32 px: a model that wants another size gets it per batch from
    ``BatchStream(out_size=...)``, which keeps 50 000 images at 224 px out of memory.
    ``seed`` draws ``synthetic``; ``valid_seed`` (default ``seed``) the validation carve-out.

    ``valid_size``: for an image folder with valid/ and test/, the first n of valid/; for
    CIFAR-10 and synthetic, n training images moved into a validation split (seeded,
    disjoint; ``--train-size`` then counts the training images left). ``eval_resize``,
    ``whole_frames`` and ``allow_truncated`` shape how an image folder is decoded
    (harness/data/imagefolder.py); the in-memory datasets get the same geometry per batch.
    """
    valid_seed = seed if valid_seed is None else valid_seed
    if name == "cifar10":
        dataset = load_cifar10(Path(data_dir), download=download)
        if valid_size is not None:
            dataset = dataset.carve_valid(valid_size, valid_seed)
        return dataset.subset(train_size, test_size)
    if name == "synthetic":
        default_train, default_test = SYNTHETIC_DEFAULT_SIZES
        n_train = default_train if train_size is None else train_size
        dataset = make_synthetic(train_size=n_train + (valid_size or 0),
                                 test_size=default_test if test_size is None else test_size,
                                 seed=seed, image_size=image_size)
        return dataset if valid_size is None else dataset.carve_valid(valid_size, valid_seed)
    if name.startswith("imagefolder:") and len(name) > len("imagefolder:"):
        root = Path(name[len("imagefolder:"):]).expanduser()
        return load_imagefolder(root, image_size=image_size, train_size=train_size, test_size=test_size,
                                valid_size=valid_size, resize_to=eval_resize, whole_frames=whole_frames,
                                allow_truncated=allow_truncated)
    raise BenchError(
        f"unknown dataset {name!r}: choose one of {', '.join(DATASET_CHOICES)} "
        f"(PATH is a folder with train/<class>/ and valid/ or test/)"
    )
