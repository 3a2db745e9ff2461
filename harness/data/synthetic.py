"""A CIFAR-shaped synthetic dataset: learnable, not trivial, made in a second, no download.

Each image is one foreground figure on a cluttered background. The class is the figure's
*structure* (disc, square, triangle, ...); position, size, rotation and colour are
jittered, the background has a colour gradient and distractor spots, and every pixel
gets noise. Colour carries only a weak class hint, so a model has to see shape: a small
CNN gets well above chance within a few epochs on a couple of thousand images, while a
linear model stays far from 100 % (tests/test_data_sources.py measures one: ~0.5).

Everything is vectorised over a chunk of images on coordinate grids. Chunk ``c`` of a
split draws from ``default_rng([seed, split, c])``, so train (split 0) and test (split 1)
come from disjoint streams, and the first n images are the same whatever size is asked
for: ``make_synthetic(train_size=1000)`` is a prefix of ``train_size=5000``.
"""
from __future__ import annotations

import math

import numpy as np

from harness.data.dataset import Dataset
from harness.errors import BenchError

CLASS_NAMES = ["disc", "square", "triangle", "cross", "ring", "hstripes", "vstripes",
               "dstripes", "checkerboard", "blob"]
# Class-typical colour (RGB): a hint a model may use, drowned by jitter and swaps below.
_BASE_COLOURS = np.array([
    [220, 60, 60], [60, 200, 60], [70, 90, 230], [230, 210, 60], [200, 70, 210],
    [60, 210, 210], [240, 140, 40], [150, 110, 60], [235, 235, 235], [120, 60, 160],
], dtype=np.float32)
_COLOUR_JITTER = 55.0  # std of per-channel colour jitter
_RANDOM_COLOUR_P = 0.35  # share of figures painted a uniformly random colour instead
_NOISE = 12.0  # std of per-pixel noise
_SPOTS = 3  # distractor spots per image
_MIN_CONTRAST = 90.0  # least RGB distance between figure and background colours


def _chunk_size(image_size: int) -> int:
    """Images per chunk: bounded memory at any size, and fixed per size (prefix rule)."""
    return max(1, min(256, (1 << 18) // (image_size * image_size)))


def _soft(s: np.ndarray, edge: float) -> np.ndarray:
    """Coverage in [0, 1] from a signed inside-distance ``s``: a one-pixel antialiased edge."""
    return np.clip(s / edge + 0.5, 0.0, 1.0)


def _figure_mask(cls: int, u: np.ndarray, v: np.ndarray, r: np.ndarray, period: np.ndarray,
                 phase: np.ndarray, edge: float) -> np.ndarray:
    """Coverage of class ``cls``'s figure in its own rotated frame (u right, v down)."""
    d = np.sqrt(u * u + v * v)
    au, av = np.abs(u), np.abs(v)
    if cls == 0:  # disc
        return _soft(r - d, edge)
    if cls == 1:  # square
        return _soft(0.8 * r - np.maximum(au, av), edge)
    if cls == 2:  # triangle, apex up: inside three edges at the inradius r/2 (outward normals)
        h = math.sqrt(3) / 2
        s = np.minimum(0.5 * r - v, 0.5 * r - (h * u - 0.5 * v))
        return _soft(np.minimum(s, 0.5 * r - (-h * u - 0.5 * v)), edge)
    if cls == 3:  # cross: two bars of width 0.6 r
        w = 0.3 * r
        return _soft(np.maximum(np.minimum(w - au, r - av), np.minimum(w - av, r - au)), edge)
    if cls == 4:  # ring
        return _soft(np.minimum(r - d, d - 0.55 * r), edge)
    if cls == 9:  # blob: a soft Gaussian, no edge at all
        return np.exp(-(d * d) / (2 * (0.55 * r) ** 2))
    # Patterned patches: a square window filled with a periodic pattern.
    window = _soft(1.05 * r - np.maximum(au, av), edge)
    k = 2 * math.pi / period
    if cls in (5, 6, 7):  # stripes; the frame's rotation sets the direction
        wave = np.sin(k * v + phase)
    else:  # checkerboard; coarse, since sin(ku)sin(kv) is also the sum of two diagonal
        # gratings and fine squares read as diagonal stripes at 32 px
        k = k / 2
        wave = np.sin(k * u + phase) * np.sin(k * v + phase)
    return window * np.clip(wave * 3.0 + 0.5, 0.0, 1.0)


# Mean figure rotation (radians) per class; jitter is added. Stripes: 0 is horizontal.
_ROTATION = {5: 0.0, 6: math.pi / 2, 7: math.pi / 4}
_ROTATION_JITTER = math.radians(15)  # uniform +-, so stripe directions never meet


def _paint(image: np.ndarray, coverage: np.ndarray, colour: np.ndarray, scratch: np.ndarray) -> None:
    """``image = image + coverage * (colour - image)`` in place (alpha compositing).

    Images are channel-planar (n, 3, H, W) while painting: broadcasting over a leading
    axis keeps numpy's inner loops long and contiguous (about 3x faster than NHWC).
    """
    np.subtract(colour[:, :, None, None], image, out=scratch)
    scratch *= coverage[:, None]
    image += scratch


def _render_chunk(rng: np.random.Generator, n: int, size: int, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    # Each run of num_classes consecutive images holds every class once, in random order:
    # any prefix is balanced to within one image per class.
    blocks = -(-n // num_classes)
    labels = rng.permuted(np.tile(np.arange(num_classes), (blocks, 1)), axis=1).ravel()[:n]
    grid = (np.arange(size, dtype=np.float32) + 0.5) / size
    y, x = grid[None, :, None], grid[None, None, :]
    edge = 1.0 / size

    def col(a: np.ndarray) -> np.ndarray:  # (n,) -> (n, 1, 1) for broadcasting on the grid
        return a.astype(np.float32)[:, None, None]

    # Background: random colour, a linear gradient, distractor spots.
    bg_colour = rng.uniform(20, 235, size=(n, 3)).astype(np.float32)
    angle = rng.uniform(0, 2 * math.pi, size=n)
    slope = rng.uniform(-70, 70, size=n)
    ramp = col(slope) * (col(np.cos(angle)) * (x - 0.5) + col(np.sin(angle)) * (y - 0.5))
    image = bg_colour[:, :, None, None] + ramp[:, None]
    scratch = np.empty_like(image)
    for _ in range(_SPOTS):
        cy, cx = rng.uniform(0, 1, size=(2, n))
        radius = rng.uniform(0.03, 0.07, size=n)
        spot = _soft(col(radius) - np.sqrt((y - col(cy)) ** 2 + (x - col(cx)) ** 2), edge)
        _paint(image, spot, rng.uniform(0, 255, size=(n, 3)).astype(np.float32), scratch)

    # Foreground figure: one coverage map for the chunk, filled class by class.
    cy, cx = rng.uniform(0.3, 0.7, size=(2, n))
    r = rng.uniform(0.2, 0.32, size=n)
    rot = rng.uniform(-_ROTATION_JITTER, _ROTATION_JITTER, size=n)
    period = rng.uniform(0.09, 0.15, size=n)
    phase = rng.uniform(0, 2 * math.pi, size=n)
    colour = _BASE_COLOURS[labels % len(_BASE_COLOURS)] + rng.normal(0, _COLOUR_JITTER, size=(n, 3))
    swap = rng.random(n) < _RANDOM_COLOUR_P
    colour[swap] = rng.uniform(0, 255, size=(int(swap.sum()), 3))
    # A figure the same colour as its background cannot be seen by anyone: push the colour
    # at least _MIN_CONTRAST away from the background's (then clip to the valid range).
    diff = colour - bg_colour
    dist = np.linalg.norm(diff, axis=1, keepdims=True)
    direction = np.where(dist > 1e-3, diff / np.maximum(dist, 1e-3), np.sign(127.5 - bg_colour) + 0.0)
    colour = np.where(dist < _MIN_CONTRAST, bg_colour + direction * _MIN_CONTRAST, colour).clip(0, 255)
    coverage = np.empty((n, size, size), dtype=np.float32)
    for cls in range(num_classes):
        sel = np.flatnonzero(labels == cls)
        if sel.size == 0:
            continue
        theta = rot[sel] + _ROTATION.get(cls, 0.0)
        dy, dx = y - col(cy[sel]), x - col(cx[sel])
        c, s = col(np.cos(theta)), col(np.sin(theta))
        u, v = c * dx + s * dy, -s * dx + c * dy
        coverage[sel] = _figure_mask(cls, u, v, col(r[sel]), col(period[sel]), col(phase[sel]), edge)
    _paint(image, coverage, colour.astype(np.float32), scratch)

    # Pixel noise: uniform with std _NOISE (cheaper to draw than Gaussian, as good here).
    noise = rng.random(size=image.shape, dtype=np.float32)
    noise -= 0.5
    noise *= _NOISE * math.sqrt(12)
    image += noise
    np.clip(image, 0, 255, out=image)
    images = np.rint(image, out=image).astype(np.uint8).transpose(0, 2, 3, 1)
    return images, labels.astype(np.int64)


def _render_split(seed: int, split: int, count: int, size: int, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    chunk = _chunk_size(size)
    images = np.empty((count, size, size, 3), dtype=np.uint8)
    labels = np.empty(count, dtype=np.int64)
    for c, start in enumerate(range(0, count, chunk)):
        rng = np.random.default_rng([seed, split, c])
        imgs, labs = _render_chunk(rng, chunk, size, num_classes)
        stop = min(start + chunk, count)
        images[start:stop], labels[start:stop] = imgs[:stop - start], labs[:stop - start]
    return images, labels


def make_synthetic(*, train_size: int, test_size: int, seed: int, image_size: int = 32,
                   num_classes: int = 10) -> Dataset:
    """The synthetic dataset: uint8 (N, image_size, image_size, 3), balanced classes."""
    if not 2 <= num_classes <= len(CLASS_NAMES):
        raise BenchError(f"synthetic data has 2 to {len(CLASS_NAMES)} classes, not {num_classes}")
    if train_size < 1 or test_size < 1:
        raise BenchError(f"synthetic sizes must be at least 1 (got train {train_size}, test {test_size})")
    if image_size < 8:
        raise BenchError(f"synthetic images must be at least 8 pixels wide, not {image_size}")
    train_images, train_labels = _render_split(seed, 0, train_size, image_size, num_classes)
    test_images, test_labels = _render_split(seed, 1, test_size, image_size, num_classes)
    identity = {
        "name": "synthetic",
        "train_size": train_size,
        "test_size": test_size,
        "sha256": f"synthetic, seed {seed}",
        "source": f"harness.data.synthetic (image_size {image_size}, {num_classes} classes)",
    }
    return Dataset("synthetic", train_images, train_labels, test_images, test_labels,
                   CLASS_NAMES[:num_classes], identity)
