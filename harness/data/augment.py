"""Training augmentations on uint8 NHWC batches, vectorised over the batch.

Random draws are made up front for a whole epoch (``draw_*``) and applied per batch
(``apply_*``), so the bytes an image gets depend only on (seed, epoch, image index), not
on the batch size, the number of ranks or which process asks.

- ``crop_flip``: the standard CIFAR augmentation (He et al. 2016, sec. 4.2: "4 pixels are
  padded on each side, and a 32x32 crop is randomly sampled from the padded image or its
  horizontal flip"), i.e. torchvision ``RandomCrop(32, padding=4)`` (zero fill) +
  ``RandomHorizontalFlip(0.5)``.
- ``flip``: ``RandomHorizontalFlip(0.5)`` alone, the default when a 32 px dataset is resized
  for an ImageNet ResNet (crops of an upscaled 32 px image mostly cut away the object).
- ``random_resized_crop``: torchvision ``RandomResizedCrop(size, scale=(0.08, 1),
  ratio=(3/4, 4/3))`` + ``RandomHorizontalFlip(0.5)`` (Szegedy et al. 2015, "Inception"
  crops), for transfer learning at 224 px. An image folder's training pictures are then
  kept as whole frames (harness/data/imagefolder.py), so the crop is drawn from the full
  picture, as torchvision does, not from a centre-cropped square.

A rotation (harness/data/rotate.py, ``RandomRotation``) may come before any of them.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from harness.data.resize import apply_weights, to_uint8, triangle_weights

AUGMENTS = ("none", "crop_flip", "flip", "random_resized_crop")
PAD = 4


class CropFlip(NamedTuple):
    """Per-image crop offsets into the padded image (0..2*PAD) and flip flags."""

    top: np.ndarray  # (N,) int
    left: np.ndarray  # (N,) int
    flip: np.ndarray  # (N,) bool


class ResizedCrop(NamedTuple):
    """Per-image crop boxes (pixels) and flip flags."""

    top: np.ndarray
    left: np.ndarray
    height: np.ndarray
    width: np.ndarray
    flip: np.ndarray


def draw_crop_flip(rng: np.random.Generator, n: int, pad: int = PAD) -> CropFlip:
    offsets = rng.integers(0, 2 * pad + 1, size=(2, n))
    return CropFlip(offsets[0], offsets[1], rng.random(n) < 0.5)


def apply_crop_flip(images: np.ndarray, params: CropFlip, pad: int = PAD) -> np.ndarray:
    """Zero-pad by ``pad``, crop back to (H, W) at the given offsets, mirror where flagged.

    One gather for the whole batch: output pixel (b, i, j) comes from padded pixel
    (b, top_b + i, left_b + j), or column ``left_b + W - 1 - j`` when flipped. Pixels are
    viewed as 3-byte opaque items so ``np.take`` moves each with one flat index (about 3x
    faster than indexing (b, row, col) arrays).
    """
    n, h, w, c = images.shape
    ph, pw = h + 2 * pad, w + 2 * pad
    padded = np.zeros((n, ph, pw, c), dtype=images.dtype)
    padded[:, pad:pad + h, pad:pad + w] = images
    rows = params.top[:, None] + np.arange(h)  # (N, H)
    cols = np.where(params.flip[:, None], np.arange(w - 1, -1, -1), np.arange(w)) + params.left[:, None]
    flat = (np.arange(n)[:, None, None] * ph + rows[:, :, None]) * pw + cols[:, None, :]
    pixels = padded.reshape(-1, c).view(np.dtype((np.void, c * images.itemsize))).reshape(-1)
    return np.take(pixels, flat).view(images.dtype).reshape(n, h, w, c)


def draw_flip(rng: np.random.Generator, n: int) -> np.ndarray:
    """Per-image mirror flags (N,) bool."""
    return rng.random(n) < 0.5


def apply_flip(images: np.ndarray, flip: np.ndarray) -> np.ndarray:
    """Mirror the images whose flag is set (left-right), leave the others; a new array."""
    out = images.copy()
    out[flip] = images[flip, :, ::-1]
    return out


def draw_resized_crop(rng: np.random.Generator, n: int, height: int | np.ndarray, width: int | np.ndarray,
                      scale: tuple[float, float] = (0.08, 1.0),
                      ratio: tuple[float, float] = (3 / 4, 4 / 3), tries: int = 10) -> ResizedCrop:
    """torchvision ``RandomResizedCrop.get_params`` for ``n`` images at once: up to
    ``tries`` boxes per image, the first that fits wins, else the central crop clamped to
    the ratio range (torchvision/transforms/transforms.py).

    ``height``/``width`` are one image size for all, or (N,) arrays: each image's own
    original size, so an image folder's photos are cropped in their own geometry (boxes
    are in those pixels; :func:`apply_resized_crop` maps them onto the stored frame).
    """
    height = np.broadcast_to(np.asarray(height, dtype=np.int64), (n,))[:, None]
    width = np.broadcast_to(np.asarray(width, dtype=np.int64), (n,))[:, None]
    area = height * width
    target_area = area * rng.uniform(scale[0], scale[1], size=(n, tries))
    aspect = np.exp(rng.uniform(math.log(ratio[0]), math.log(ratio[1]), size=(n, tries)))
    w = np.rint(np.sqrt(target_area * aspect)).astype(np.int64)
    h = np.rint(np.sqrt(target_area / aspect)).astype(np.int64)
    fits = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    found = fits.any(axis=1)
    first = np.argmax(fits, axis=1)
    rows = np.arange(n)
    h, w = h[rows, first], w[rows, first]
    height, width = height[:, 0], width[:, 0]
    # Fallback: whole image, cropped centrally to the nearest allowed aspect ratio.
    in_ratio = width / height
    fb_w = np.where(in_ratio > ratio[1], np.round(height * ratio[1]), width).astype(np.int64)
    fb_h = np.where(in_ratio < ratio[0], np.round(width / ratio[0]), height).astype(np.int64)
    h = np.where(found, h, fb_h)
    w = np.where(found, w, fb_w)
    u = rng.random((2, n))
    top = np.where(found, np.floor(u[0] * (height - h + 1)), (height - fb_h) // 2).astype(np.int64)
    left = np.where(found, np.floor(u[1] * (width - w + 1)), (width - fb_w) // 2).astype(np.int64)
    return ResizedCrop(top, left, h, w, rng.random(n) < 0.5)


def apply_resized_crop(images: np.ndarray, params: ResizedCrop, out_size: int,
                       frames: np.ndarray | None = None) -> np.ndarray:
    """Crop each image to its box and resize it to ``out_size`` (antialiased bilinear).

    Each image gets its own pair of weight matrices (crop and resize in one), so the batch
    is two batched matrix products; a flip is a reversed column matrix. ``frames`` (N, 2):
    the original (height, width) each stored image stands for (boxes are in those pixels
    and are scaled onto the stored grid); None when the stored image is the original.
    """
    _, h, w, _ = images.shape
    sy = 1.0 if frames is None else h / frames[:, 0]
    sx = 1.0 if frames is None else w / frames[:, 1]
    wy = triangle_weights(h, out_size, params.top * sy, params.height * sy, total=h)
    wx = triangle_weights(w, out_size, params.left * sx, params.width * sx, total=w)
    wx = np.where(params.flip[:, None, None], wx[:, ::-1, :], wx)
    return to_uint8(apply_weights(images, wy, wx))
