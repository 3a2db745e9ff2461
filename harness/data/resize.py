"""Antialiased bilinear resizing of uint8 NHWC batches, as two matrix products.

Semantics are Pillow's ``Image.resize(..., BILINEAR)``, which torchvision's
``functional.resize(..., antialias=True)`` reproduces: a triangle filter whose support
grows with the downscale factor, sampled at half-pixel centres (align_corners=False),
each output's weights normalised to sum to 1 (Pillow, src/libImaging/Resample.c,
``precompute_coeffs``). When upsampling the filter is plain bilinear interpolation with
edge clamping.

Because the filter is separable and fixed per (input, output) length, a resize is
``Wy @ image @ Wx.T``: the matrices are computed once and cached, and the products run
in BLAS on float32. Pillow rounds to uint8 between its two passes and uses fixed-point
weights; this does not, so results differ from Pillow's by at most 1.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np


def triangle_weights(in_size: int, out_size: int, start: np.ndarray | float = 0.0,
                     length: np.ndarray | float | None = None, total: int | None = None) -> np.ndarray:
    """Weights mapping the window ``[start, start + length)`` of an axis of ``total`` pixels
    onto ``out_size`` outputs (a crop followed by a resize).

    ``start``/``length`` may be arrays of shape (B,), giving (B, out_size, total): one
    matrix per image, which is how random crops of different sizes resize in one product.
    With the defaults this is the plain ``in_size -> out_size`` matrix (out_size, in_size).
    """
    total = in_size if total is None else total
    length = in_size if length is None else length
    start_a = np.asarray(start, dtype=np.float64)[..., None, None]
    length_a = np.asarray(length, dtype=np.float64)[..., None, None]
    scale = length_a / out_size
    filterscale = np.maximum(scale, 1.0)  # widen the kernel only when shrinking
    centre = start_a + (np.arange(out_size, dtype=np.float64)[:, None] + 0.5) * scale
    pixel = np.arange(total, dtype=np.float64)[None, :] + 0.5
    weights = np.clip(1.0 - np.abs(pixel - centre) / filterscale, 0.0, None)
    # Pixels outside the window do not exist for the resize (crop first, then resize).
    inside = (pixel >= start_a) & (pixel < start_a + length_a)
    weights *= inside
    weights /= weights.sum(axis=-1, keepdims=True)
    return weights.astype(np.float32)


@lru_cache(maxsize=64)
def resize_matrix(in_size: int, out_size: int) -> np.ndarray:
    """The cached (out_size, in_size) float32 matrix for one axis; read-only."""
    matrix = triangle_weights(in_size, out_size)
    matrix.setflags(write=False)
    return matrix


def to_uint8(x: np.ndarray) -> np.ndarray:
    """Round half up float32 ``x`` to contiguous image bytes, overwriting ``x``.

    No clipping: with non-negative weights that sum to 1 every output is a convex
    combination of inputs in [0, 255], so after adding 0.5 the truncating cast is exact
    (float error of ~1e-5 cannot cross an integer boundary that matters).
    """
    x += 0.5
    out = np.empty(x.shape, dtype=np.uint8)
    out[...] = x
    return out


# Below this input width the column pass runs on interleaved RGB rows (see apply_weights).
_INTERLEAVED_MAX_WIDTH = 64


def apply_weights(images: np.ndarray, wy: np.ndarray, wx: np.ndarray) -> np.ndarray:
    """float32 ``wy @ image @ wx.T`` per image and channel, as (N, OH, OW, C).

    images (N, H, W, C) uint8 or float; wy (OH, H) and wx (OW, W) shared by the batch, or
    (N, OH, H) and (N, OW, W) per image. numpy's matmul runs on BLAS only for operands
    whose last axis is contiguous (a strided one falls back to a loop ~50x slower), so
    every operand is made contiguous and the layout is chosen to avoid big transposes:

    - narrow inputs (CIFAR's 32 px): the column pass multiplies each interleaved RGB row
      (W*C values) by ``kron(wx.T, I_C)`` (W*C, OW*C), which leaves the result in NHWC
      order; C times the flops of a per-channel product, but no transposes at all.
    - wide inputs: channel-planar (N, C, H, W) batched products, transposed back once.
    """
    n, h, w, c = images.shape
    oh, ow = wy.shape[-2], wx.shape[-2]
    wy = np.ascontiguousarray(wy, dtype=np.float32)
    if w <= _INTERLEAVED_MAX_WIDTH:
        eye = np.eye(c, dtype=np.float32)
        if wx.ndim == 3:
            kron = np.einsum("now,cd->nwcod", wx, eye).reshape(n, w * c, ow * c)
        else:
            kron = np.kron(np.ascontiguousarray(wx.T), eye)
        rows = images.reshape(n, h, w * c).astype(np.float32)
        return np.matmul(wy, np.matmul(rows, kron)).reshape(n, oh, ow, c)
    planes = np.empty((n, c, h, w), dtype=np.float32)
    planes[...] = images.transpose(0, 3, 1, 2)
    if wy.ndim == 3:  # per image: broadcast over the channel axis
        wy, wx = wy[:, None], wx[:, None]
    wxt = np.ascontiguousarray(np.swapaxes(wx, -1, -2), dtype=np.float32)
    if oh * w <= h * ow:
        out = np.matmul(np.matmul(wy, planes), wxt)
    else:
        out = np.matmul(wy, np.matmul(planes, wxt))
    return out.transpose(0, 2, 3, 1)


def resize(images: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """Antialiased bilinear resize of uint8 (N, H, W, C) to (N, size_h, size_w, C) uint8."""
    out_h, out_w = (size, size) if isinstance(size, int) else size
    n, h, w, c = images.shape
    if (h, w) == (out_h, out_w):
        return images
    out = apply_weights(images, resize_matrix(h, out_h), resize_matrix(w, out_w))
    return to_uint8(out)


def center_crop_resize(images: np.ndarray, size: int, resize_to: int | None = None) -> np.ndarray:
    """torchvision ``Resize(resize_to)`` + ``CenterCrop(size)`` on uint8 NHWC (seed 001's
    evaluation transform, ``Resize(256)`` + ``CenterCrop(224)``); ``resize_to=None``: a
    plain resize to ``size`` x ``size``.

    The shorter side becomes ``resize_to`` and the longer ``int(resize_to * long / short)``;
    the crop starts at ``round((side - size) / 2)`` (torchvision's offsets). The crop is
    taken as rows of the resize matrices, so the pixels cut away are never computed.
    """
    if resize_to is None:
        return resize(images, size)
    _, h, w, _ = images.shape
    short, long_ = min(h, w), max(h, w)
    scaled_long = int(resize_to * long_ / short)
    new_h, new_w = (resize_to, scaled_long) if h <= w else (scaled_long, resize_to)
    top, left = int(round((new_h - size) / 2.0)), int(round((new_w - size) / 2.0))
    wy = resize_matrix(h, new_h)[top:top + size]
    wx = resize_matrix(w, new_w)[left:left + size]
    return to_uint8(apply_weights(images, wy, wx))
