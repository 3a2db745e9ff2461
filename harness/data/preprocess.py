"""How a dataset's stored images become a model's inputs, decided once for every backend.

Two halves, both framework-free:

- **Geometry and augmentation** happen here, on uint8 NHWC batches (:class:`Preprocess`
  builds the :class:`BatchStream` of each split), so PyTorch and Chainer receive the same
  bytes: an optional ``RandomRotation`` (seed 001), the training augmentation, and the
  evaluation transform ``Resize(eval_resize)`` + ``CenterCrop(image_size)`` (seed 001's
  ``Resize(256)`` + ``CenterCrop(224)``); with ``eval_resize=None`` images are resized
  straight to the input size, as before.
- **Normalisation** stays where it always was, in one place: each backend computes
  ``(u8 / 255 - mean) / std`` on its device from the :class:`harness.backend.InputSpec`
  that :func:`normalization` resolves here. ``none`` is mean 0, std 1: raw [0, 1] input,
  what Chainer's ``get_cifar10()`` gives (seed 004).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from harness.catalogue import CIFAR_MEAN, CIFAR_STD, IMAGENET_MEAN, IMAGENET_STD, model_info
from harness.data.dataset import Dataset
from harness.data.stream import BatchStream
from harness.errors import BenchError

Triple = tuple[float, float, float]

# "model": the model family's convention (ImageNet statistics for torchvision ResNets,
# CIFAR-10's for the CIFAR ResNets and small_cnn), bench's behaviour before the choice existed.
NAMED_NORMALIZATIONS: dict[str, tuple[Triple, Triple]] = {
    "cifar10": (CIFAR_MEAN, CIFAR_STD),
    "imagenet": (IMAGENET_MEAN, IMAGENET_STD),
    "none": ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0)),
}
NORMALIZE_CHOICES = ("model", *NAMED_NORMALIZATIONS, "R,G,B/R,G,B")


def normalization(choice: str, model: str) -> tuple[Triple, Triple]:
    """(mean, std) for ``--normalize``: ``model``, ``cifar10``, ``imagenet``, ``none``, or
    explicit ``"m1,m2,m3/s1,s2,s3"`` (seed 000's CIFAR statistics were
    ``0.4914,0.4822,0.4465/0.2023,0.1994,0.2010``). Raises :class:`BenchError` on a bad value."""
    if choice == "model":
        info = model_info(model)
        return info.mean, info.std
    if choice in NAMED_NORMALIZATIONS:
        return NAMED_NORMALIZATIONS[choice]
    mean, sep, std = choice.partition("/")
    try:
        m, s = _triple(mean), _triple(std)
    except ValueError:
        m = s = None  # type: ignore[assignment]
    if not sep or m is None or s is None or not all(v > 0 for v in s):
        raise BenchError(f"--normalize {choice!r} is not one of {', '.join(NORMALIZE_CHOICES[:-1])} or "
                         f"MEAN/STD as three numbers each, e.g. 0.4914,0.4822,0.4465/0.2023,0.1994,0.2010 "
                         f"(std > 0)")
    return m, s


def _triple(text: str) -> Triple:
    values = tuple(float(v) for v in text.split(","))
    if len(values) != 3 or not all(math.isfinite(v) for v in values):
        raise ValueError(text)
    return values  # type: ignore[return-value]


@dataclass(frozen=True)
class Preprocess:
    """The image pipeline of one run; builds each split's batches the same for every backend.

    ``image_size``: the model's input side. ``augment``: training augmentation
    (harness/data/augment.py). ``rotate``: ``RandomRotation(rotate)`` before it, in degrees
    (0: none). ``eval_resize``: shorter side before the centre crop of evaluation images
    (and of training images the augmentation does not crop itself); None: resize straight
    to ``image_size``.
    """

    image_size: int
    augment: str = "none"
    rotate: float = 0.0
    eval_resize: int | None = None

    def __post_init__(self) -> None:
        if not (math.isfinite(self.rotate) and 0 <= self.rotate <= 180):
            raise BenchError(f"--rotate takes degrees from 0 to 180 (RandomRotation(30) is 30), got {self.rotate}")
        if self.eval_resize is not None and self.eval_resize < self.image_size:
            raise BenchError(f"--eval-resize {self.eval_resize} is smaller than the input size {self.image_size}: "
                             f"it is the shorter side before a centre crop of {self.image_size} px (e.g. 256 for 224)")

    @property
    def whole_frames(self) -> bool:
        """Keep an image folder's training pictures whole: the random-resized crop is drawn
        from the full picture (torchvision's behaviour), not a centre-cropped square."""
        return self.augment == "random_resized_crop"

    def train_stream(self, dataset: Dataset, *, batch_size: int, seed: int, epoch: int,
                     shard: tuple[int, int] = (0, 1)) -> BatchStream:
        """The epoch's training batches: shuffled and augmented by (seed, epoch), last partial batch dropped."""
        return BatchStream(dataset.train_images, dataset.train_labels, batch_size=batch_size, seed=seed, epoch=epoch,
                           shuffle=True, augment=self.augment, out_size=self.image_size, drop_last=True,
                           shard=shard, rotate=self.rotate, frames=dataset.train_frames,
                           resize_to=self._resize_to(dataset))

    def eval_stream(self, dataset: Dataset, split: str, *, batch_size: int,
                    shard: tuple[int, int] = (0, 1)) -> BatchStream:
        """Every image of ``split`` ("valid" or "test") once, in order, with the evaluation transform."""
        images, labels = dataset.split(split)
        return BatchStream(images, labels, batch_size=batch_size, seed=0, epoch=0, shuffle=False, augment="none",
                           out_size=self.image_size, drop_last=False, shard=shard, resize_to=self._resize_to(dataset))

    def _resize_to(self, dataset: Dataset) -> int | None:
        # Image folders were decoded with the evaluation transform already (imagefolder.py).
        return None if dataset.preprocessed else self.eval_resize

    def describe(self) -> dict[str, Any]:
        """What run.json records about the pipeline (torchvision terms, to compare with a seed)."""
        train = [f"RandomRotation({self.rotate:g})"] if self.rotate else []
        train.append({"crop_flip": "RandomCrop(32, padding=4) + RandomHorizontalFlip()",
                      "flip": "RandomHorizontalFlip()",
                      "random_resized_crop": f"RandomResizedCrop({self.image_size}) + RandomHorizontalFlip()",
                      "none": "no augmentation"}[self.augment])
        geometry = (f"Resize({self.eval_resize}) + CenterCrop({self.image_size})" if self.eval_resize
                    else f"Resize(({self.image_size}, {self.image_size}))")
        return {"train": " + ".join(train), "eval": geometry}
