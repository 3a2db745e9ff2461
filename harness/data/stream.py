"""One epoch of batches, identical for every backend, process and resume.

Order and augmentation come from ``np.random.default_rng([seed, epoch, tag])``: a pure
function of (seed, epoch), which is what ``DistributedSampler.set_epoch(epoch)`` gives
PyTorch, without a framework generator whose stream differs between frameworks. Resuming
at epoch 7 therefore replays epoch 7 byte for byte.

Sharding follows the global batch: with ``shard=(rank, world)`` and per-rank
``batch_size`` B, global batch k is ``order[k*B*world : (k+1)*B*world]`` and rank r takes
its elements ``r::world``. Ranks are disjoint and together cover the epoch, and the images
in a global step do not depend on ``world``.

:func:`prefetch` builds batches on a background thread so the training loop rarely waits;
numpy releases the GIL in most of its copies and in matrix products, so this overlaps
with a framework's own work.
"""
from __future__ import annotations

import queue
import threading
from typing import Any, Generic, Iterable, Iterator, TypeVar

import numpy as np

from harness.backend import Batch
from harness.data.augment import (
    AUGMENTS, apply_crop_flip, apply_flip, apply_resized_crop, draw_crop_flip, draw_flip, draw_resized_crop)
from harness.data.resize import center_crop_resize
from harness.data.rotate import apply_rotation, draw_rotation
from harness.errors import BenchError

# Third element of the rng key, so order and augmentation draw from unrelated streams.
ORDER_TAG = 0
AUGMENT_TAG = 1
ROTATE_TAG = 2  # its own stream: adding a rotation leaves the crops and flips of a run unchanged


class BatchStream:
    """The batches of one epoch; iterate it (as often as you like: same bytes each time).

    ``batch_size`` is per rank. ``rotate`` (degrees, ``RandomRotation``) then ``augment`` are
    applied at the stored size, then ``out_size`` resizes (``random_resized_crop`` crops
    and resizes to ``out_size`` in one step). ``resize_to``: resize the shorter side to it
    and centre-crop ``out_size`` (torchvision ``Resize(resize_to)`` + ``CenterCrop``) instead
    of resizing straight to ``out_size``. ``frames`` (N, 2): the original (height, width)
    of each stored image when it is a squashed whole frame (image folders with
    ``random_resized_crop``); rotation and crop boxes then follow the original. With
    ``world > 1`` and ``drop_last=False`` the last global batch is split ``r::world`` too,
    so trailing ranks may get one batch fewer: distributed training should drop the last.
    """

    def __init__(self, images: np.ndarray, labels: np.ndarray, *, batch_size: int, seed: int,
                 epoch: int, shuffle: bool, augment: str = "none", out_size: int | None = None,
                 drop_last: bool = False, shard: tuple[int, int] = (0, 1), rotate: float = 0.0,
                 resize_to: int | None = None, frames: np.ndarray | None = None) -> None:
        if augment not in AUGMENTS:
            raise BenchError(f"unknown augmentation {augment!r}: choose one of {', '.join(AUGMENTS)}")
        if batch_size < 1:
            raise BenchError(f"batch size must be at least 1, got {batch_size}")
        rank, world = shard
        if world < 1 or not 0 <= rank < world:
            raise ValueError(f"shard must be (rank, world) with 0 <= rank < world, got {shard}")
        if images.dtype != np.uint8 or images.ndim != 4:
            raise ValueError(f"images must be uint8 (N, H, W, C), got {images.dtype} {images.shape}")
        if images.shape[0] != labels.shape[0]:
            raise ValueError(f"{images.shape[0]} images but {labels.shape[0]} labels")
        self.images, self.labels = images, labels.astype(np.int64, copy=False)
        self.batch_size, self.augment, self.drop_last = batch_size, augment, drop_last
        self.rank, self.world = rank, world
        self.out_size, self.resize_to, self.frames = out_size, resize_to, frames
        if resize_to is not None and out_size is not None and resize_to < out_size:
            raise BenchError(f"the evaluation resize ({resize_to} px) must be at least the input size ({out_size} px): "
                             f"it resizes the shorter side before a centre crop of the input size")
        if frames is not None and augment not in ("none", "random_resized_crop"):
            raise ValueError("whole-frame images are only stored for random_resized_crop")
        n, height, width = images.shape[:3]
        if shuffle:
            self.order = np.random.default_rng([seed, epoch, ORDER_TAG]).permutation(n)
        else:
            self.order = np.arange(n)
        # Draws are indexed by image, made for the whole dataset at once.
        aug_rng = np.random.default_rng([seed, epoch, AUGMENT_TAG])
        self._params: Any = None  # CropFlip, a flip mask or ResizedCrop: the draw_* matching apply_* below
        if augment == "crop_flip":
            self._params = draw_crop_flip(aug_rng, n)
        elif augment == "flip":
            self._params = draw_flip(aug_rng, n)
        elif augment == "random_resized_crop":
            fh, fw = (height, width) if frames is None else (frames[:, 0], frames[:, 1])
            self._params = draw_resized_crop(aug_rng, n, fh, fw)
        self._angles = draw_rotation(np.random.default_rng([seed, epoch, ROTATE_TAG]), n, rotate) if rotate else None
        full, rest = divmod(n, batch_size * world)
        # Without drop_last, the final partial global batch may leave trailing ranks empty.
        self._length = full + (0 if drop_last or rest <= rank else 1)

    def __len__(self) -> int:
        """Number of batches this rank yields."""
        return self._length

    @property
    def num_images(self) -> int:
        """Number of images this rank yields in the epoch."""
        return sum(len(idx) for idx in self.indices())

    def indices(self) -> Iterator[np.ndarray]:
        """The image indices of each of this rank's batches, in order."""
        g = self.batch_size * self.world
        for k in range(self._length):
            yield self.order[k * g:(k + 1) * g][self.rank::self.world]

    def __iter__(self) -> Iterator[Batch]:
        for idx in self.indices():
            yield self.make_batch(idx)

    def make_batch(self, idx: np.ndarray) -> Batch:
        images = self.images[idx]
        frames = None if self.frames is None else self.frames[idx]
        if self._angles is not None:
            images = apply_rotation(images, self._angles[idx], frames)
        if self.augment == "crop_flip":
            images = apply_crop_flip(images, _take(self._params, idx))
        elif self.augment == "flip":
            images = apply_flip(images, self._params[idx])
        elif self.augment == "random_resized_crop":
            size = self.out_size or images.shape[1]
            return Batch(apply_resized_crop(images, _take(self._params, idx), size, frames), self.labels[idx])
        if self.out_size is not None:
            images = center_crop_resize(images, self.out_size, self.resize_to)
        return Batch(np.ascontiguousarray(images), self.labels[idx])


def eval_stream(images: np.ndarray, labels: np.ndarray, *, batch_size: int,
                out_size: int | None = None, shard: tuple[int, int] = (0, 1),
                resize_to: int | None = None) -> BatchStream:
    """Evaluation order: every image once, unshuffled, unaugmented, last batch kept."""
    return BatchStream(images, labels, batch_size=batch_size, seed=0, epoch=0, shuffle=False,
                       augment="none", out_size=out_size, drop_last=False, shard=shard, resize_to=resize_to)


def _take(params: tuple, idx: np.ndarray):  # type: ignore[type-arg]
    return type(params)(*(p[idx] for p in params))


T = TypeVar("T")
_DONE = object()


def _produce(iterable: Iterable[T], out: queue.Queue, stop: threading.Event) -> None:  # type: ignore[type-arg]
    def put(entry: tuple) -> bool:  # type: ignore[type-arg]
        while not stop.is_set():
            try:
                out.put(entry, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    try:
        for item in iterable:
            if not put((True, item)):
                return
        put((True, _DONE))
    except BaseException as exc:  # handed to the consumer, which re-raises it
        put((False, exc))


class prefetch(Generic[T]):
    """Iterate ``iterable`` on a background thread, up to ``depth`` items ahead.

    Production starts at construction. An exception in the producer is re-raised in the
    consumer at the point it would have surfaced. Stopping early (``close()``, leaving a
    ``with`` block, ``break`` followed by garbage collection) stops and joins the thread.
    """

    def __init__(self, iterable: Iterable[T], depth: int = 2) -> None:
        if depth < 1:
            raise ValueError(f"depth must be at least 1, got {depth}")
        self._length = len(iterable) if hasattr(iterable, "__len__") else None  # type: ignore[arg-type]
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._finished = False
        # The thread must not reference ``self``, or an abandoned prefetcher could never be
        # collected (and so never stopped).
        self._thread = threading.Thread(target=_produce, args=(iterable, self._queue, self._stop),
                                        name="bench-prefetch", daemon=True)
        self._thread.start()

    def __iter__(self) -> "prefetch[T]":
        return self

    def __len__(self) -> int:
        if self._length is None:
            raise TypeError("the prefetched iterable has no length")
        return self._length

    def __next__(self) -> T:
        if self._finished:
            raise StopIteration
        ok, item = self._queue.get()
        if not ok:
            self.close()
            raise item
        if item is _DONE:
            self.close()
            raise StopIteration
        return item

    def close(self) -> None:
        """Stop the producer and wait for it; safe to call more than once."""
        self._finished = True
        self._stop.set()
        while self._thread.is_alive():
            try:  # unblock a producer waiting on a full queue
                self._queue.get_nowait()
            except queue.Empty:
                pass
            self._thread.join(timeout=0.05)

    def __enter__(self) -> "prefetch[T]":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        if hasattr(self, "_thread"):
            self.close()
