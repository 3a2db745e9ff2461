"""A grid of sample images per dataset, as the model saw them, with their class names.

Seed 000 looked at "Sample Images" before training: the batch after the transforms,
de-normalised, titled with class names. This draws the same from a run folder: the dataset
is loaded again through the data layer (:func:`harness.train.prepare.load_data`, the run's
own settings, never downloading) and the first training batch of epoch 1 is rebuilt with
:class:`harness.data.stream.BatchStream` from the run's seed and augmentation, so the images
are byte for byte the first step's input. Batches are uint8 before the backend normalises
them ((x / 255 - mean) / std in the framework), so these pixels are the model's input
de-normalised exactly. A folder from another machine whose data is not here, or whose data
differs from what the run recorded (sha256), gets a sentence saying so instead of a picture.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from harness.errors import BenchError
from harness.report.figures import _figure, _png, _styled
from harness.schema import RunFolder

SAMPLES_PREFIX = "samples_"  # file names of the grids: samples_<dataset>.png
GRID = (3, 6)  # rows, columns: 18 images, enough to see each class of CIFAR-10 at least once on average
TITLE_CHARS = 18


@dataclass(frozen=True)
class SampleGrid:
    """One dataset's grid (``png``) or why there is none (``note``)."""
    dataset: str
    name: str  # file name, e.g. "samples_cifar10.png"
    png: bytes | None
    note: str


def _file_name(dataset: str) -> str:
    stem = "".join(c if c.isalnum() else "_" for c in dataset.split(":")[-1].strip("/").split("/")[-1] or dataset)
    return f"{SAMPLES_PREFIX}{dataset.split(':')[0]}" + (f"_{stem}" if ":" in dataset else "") + ".png"


def first_batch(run: RunFolder, count: int) -> tuple[np.ndarray, np.ndarray, list[str], str]:
    """(images uint8 NHWC, labels, class names, augmentation) of the run's first training
    batch; BenchError when its data is not on this machine or is not the data it trained on."""
    from harness.config import RunConfig
    from harness.data.stream import BatchStream
    from harness.train.prepare import load_data

    meta = run.meta
    settings = dict(meta.get("settings") or {})
    settings.setdefault("backend", (meta.get("backend") or {}).get("name") or "torch")
    config = dataclasses.replace(RunConfig.from_recorded(settings, Path(".")), download=False, quiet=True)
    dataset = load_data(config)
    recorded = (meta.get("dataset") or {}).get("sha256")
    found = dataset.identity.get("sha256")
    if recorded and found and recorded != found:
        raise BenchError(f"the {config.dataset} data here (sha256 {str(found)[:12]}) is not the data the run "
                         f"recorded ({str(recorded)[:12]})")
    seed = int(meta.get("seed", settings.get("seed", 0)) or 0)
    stream = BatchStream(dataset.train_images, dataset.train_labels, batch_size=min(count, len(dataset.train_labels)),
                         seed=seed, epoch=1, shuffle=True, augment=config.augmentation, out_size=config.input_size)
    batch = next(iter(stream))
    return batch.images, batch.labels, list(dataset.class_names), config.augmentation


@_styled
def draw_grid(images: np.ndarray, labels: np.ndarray, class_names: list[str], title: str) -> bytes:
    rows, cols = GRID
    n = min(len(images), rows * cols)
    rows = -(-n // cols)
    fig, axes = _figure(1.6 * cols, 0.5 + 1.75 * rows, nrows=rows, ncols=cols, squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i >= n:
            continue
        image = images[i]
        ax.imshow(image[..., 0] if image.shape[-1] == 1 else image, cmap="gray" if image.shape[-1] == 1 else None,
                  interpolation="nearest" if image.shape[0] <= 64 else "antialiased")
        name = class_names[int(labels[i])] if 0 <= int(labels[i]) < len(class_names) else str(int(labels[i]))
        ax.set_title(name if len(name) <= TITLE_CHARS else name[:TITLE_CHARS - 1] + "…", fontsize=9)
    fig.suptitle(title, fontweight="bold")
    return _png(fig)


def sample_grids(runs: list[RunFolder]) -> list[SampleGrid]:
    """One grid per dataset among ``runs`` (from its first run), in order of appearance."""
    out: list[SampleGrid] = []
    seen: set[str] = set()
    for run in runs:
        dataset = str((run.meta.get("settings") or {}).get("dataset") or "?")
        if dataset in seen:
            continue
        seen.add(dataset)
        name = _file_name(dataset)
        try:
            images, labels, classes, augmentation = first_batch(run, GRID[0] * GRID[1])
        except (BenchError, OSError) as exc:
            out.append(SampleGrid(dataset, name, None, f"No sample images of {dataset}: its data is not readable "
                                  f"on the machine that made this report ({_reason(exc)}). Build the report where "
                                  f"the data is to see them."))
            continue
        side = images.shape[1]
        png = draw_grid(images, labels, classes, f"Sample images: {dataset}")
        out.append(SampleGrid(dataset, name, png, (
            f"The first {len(images)} images of the first training batch of run {run.run_id} (seed "
            f"{run.meta.get('seed', 0)}, epoch 1) as the model received them: {side} × {side} px after the "
            f"{augmentation} augmentation, shown before the backend's normalisation, i.e. de-normalised. "
            f"Titles are the class names ({len(classes)} classes).")))
    return out


def _reason(exc: Any) -> str:
    return str(exc) if isinstance(exc, BenchError) else f"{type(exc).__name__}: {exc}"
