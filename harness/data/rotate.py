"""``RandomRotation(degrees)`` on uint8 NHWC batches, vectorised over the batch.

torchvision's ``RandomRotation(30)`` (seed 001's first training transform) draws one angle
uniformly from [-30, 30] per image and calls Pillow's ``Image.rotate(angle, NEAREST,
expand=False, fillcolor=0)``: counter-clockwise about the image centre, same size out,
corners that leave the image filled with black. Pillow maps each output pixel centre
(x + 0.5, y + 0.5) through the inverse rotation and takes the input pixel whose cell holds
it (``Geometry.c``, ``affine_transform``; ``Image.rotate`` builds the matrix). This module
does the same for a whole batch with one gather.

An image stored as a *squashed full frame* (``frames``: the original (height, width) of an
image folder's training picture, stored at (H, W) so a random-resized crop can see the
whole picture) is rotated in the original's geometry: rotating the stored square would turn
a 4:3 photo into a sheared one. The output pixel is mapped to original coordinates, rotated
there, and mapped back.
"""
from __future__ import annotations

import numpy as np


def draw_rotation(rng: np.random.Generator, n: int, degrees: float) -> np.ndarray:
    """Per-image angles (N,) in degrees, uniform in [-degrees, degrees] (torchvision's range)."""
    return rng.uniform(-degrees, degrees, size=n)


def _inverse_matrices(angles: np.ndarray, height: np.ndarray, width: np.ndarray) -> np.ndarray:
    """(N, 6) affine coefficients from output to input pixel coordinates, as ``Image.rotate``
    computes them: coefficients rounded to 15 digits, centre (w/2, h/2)."""
    rad = -np.radians(angles)
    cos, sin = np.round(np.cos(rad), 15), np.round(np.sin(rad), 15)
    cx, cy = width / 2.0, height / 2.0
    c = cos * -cx + sin * -cy + cx
    f = -sin * -cx + cos * -cy + cy
    return np.stack([cos, sin, c, -sin, cos, f], axis=1)


def apply_rotation(images: np.ndarray, angles: np.ndarray, frames: np.ndarray | None = None) -> np.ndarray:
    """Rotate each image by its angle (degrees, counter-clockwise), nearest neighbour, zero fill.

    ``frames`` (N, 2): the original (height, width) each stored image stands for; None when
    the stored image is the original (then the result is Pillow's, up to Pillow's 16.16
    fixed-point rounding on a pixel boundary).
    """
    n, h, w, c = images.shape
    if frames is None:
        fh = np.full(n, float(h))
        fw = np.full(n, float(w))
    else:
        fh, fw = frames[:, 0].astype(np.float64), frames[:, 1].astype(np.float64)
    m = _inverse_matrices(np.asarray(angles, dtype=np.float64), fh, fw)[:, :, None, None]
    # Output pixel centres in the original's coordinates.
    x = ((np.arange(w) + 0.5)[None, None, :] * (fw / w)[:, None, None])
    y = ((np.arange(h) + 0.5)[None, :, None] * (fh / h)[:, None, None])
    xin = m[:, 0] * x + m[:, 1] * y + m[:, 2]
    yin = m[:, 3] * x + m[:, 4] * y + m[:, 5]
    # Back to stored pixels; Pillow's COORD(): negative -> outside, else truncate.
    col = np.where(xin < 0, -1, np.floor(xin * (w / fw)[:, None, None])).astype(np.int64)
    row = np.where(yin < 0, -1, np.floor(yin * (h / fh)[:, None, None])).astype(np.int64)
    inside = (col >= 0) & (col < w) & (row >= 0) & (row < h)
    # One flat gather over the batch's pixels plus one black pixel at the end for the fill.
    flat = np.where(inside, (np.arange(n)[:, None, None] * h + row) * w + col, n * h * w)
    pixels = np.concatenate([images.reshape(-1, c), np.zeros((1, c), images.dtype)])
    pixels = np.ascontiguousarray(pixels).view(np.dtype((np.void, c * images.itemsize))).reshape(-1)
    return np.take(pixels, flat).view(images.dtype).reshape(n, h, w, c)

