"""Image folders in the dog-breed layout: ``root/{train,valid,test}/<class>/<image>``.

Classes are the sorted folder names under ``train/`` (torchvision ``ImageFolder``'s rule);
``valid/`` and ``test/`` must hold the same class folders. Each split is put in one fixed
pseudo-random order (the same on every machine, whatever ``--seed``), so that its first n
images, which is what a size limit keeps, mix all classes as CIFAR-10's do; only those
are decoded. Each image is decoded with
Pillow, converted to RGB, its shorter side resized to ``image_size`` and centre-cropped
to a square: torchvision ``Resize(image_size)`` + ``CenterCrop(image_size)`` on a PIL
image, which both call Pillow's antialiased bilinear resize. The results stay in memory
as uint8, so later epochs decode nothing.

Decoding runs on a thread pool: Pillow releases the GIL while it decodes and resizes.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from harness.data.dataset import Dataset, arrays_sha256
from harness.errors import BenchError

# torchvision.datasets.folder.IMG_EXTENSIONS; other files (README, .DS_Store) are skipped.
IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
SPLITS = ("train", "valid", "test")
_SHOW_BAD = 5
_ORDER_SEED = 20240601  # fixes each split's order; not a run setting


def _class_dirs(split_dir: Path) -> list[str]:
    return sorted(p.name for p in split_dir.iterdir() if p.is_dir() and not p.name.startswith("."))


def _list_split(split_dir: Path, classes: list[str]) -> tuple[list[Path], np.ndarray]:
    """Image paths and labels, in the split's fixed shuffled order."""
    found = _class_dirs(split_dir)
    if found != classes:
        extra, missing = sorted(set(found) - set(classes)), sorted(set(classes) - set(found))
        detail = "; ".join(filter(None, [
            f"extra: {', '.join(extra[:_SHOW_BAD])}" if extra else "",
            f"missing: {', '.join(missing[:_SHOW_BAD])}" if missing else ""]))
        raise BenchError(
            f"{split_dir} does not have the same class folders as train/ ({detail}): "
            f"give every split one folder per class, named as in train/"
        )
    paths: list[Path] = []
    labels: list[int] = []
    for label, name in enumerate(classes):
        files = sorted(p for p in (split_dir / name).iterdir()
                       if p.is_file() and p.suffix.lower() in IMG_EXTENSIONS)
        if not files and split_dir.name == "train":
            raise BenchError(f"{split_dir / name} has no images ({', '.join(IMG_EXTENSIONS)}): "
                             f"add some or remove the folder")
        paths += files
        labels += [label] * len(files)
    if not paths:
        raise BenchError(f"{split_dir} has no images in its class folders: add some or remove {split_dir}")
    order = np.random.default_rng(_ORDER_SEED).permutation(len(paths))
    return [paths[i] for i in order], np.asarray(labels, dtype=np.int64)[order]


def load_image(path: Path, image_size: int) -> np.ndarray:
    """(image_size, image_size, 3) uint8: shorter side to ``image_size``, centre crop.

    Sizes and offsets follow torchvision: the longer side becomes
    ``int(image_size * long / short)`` and the crop starts at ``round((side - size) / 2)``.
    """
    with Image.open(path) as img:
        img = img.convert("RGB")
    w, h = img.size
    if w <= h:
        new_w, new_h = image_size, int(image_size * h / w)
    else:
        new_w, new_h = int(image_size * w / h), image_size
    if (new_w, new_h) != (w, h):
        img = img.resize((new_w, new_h), Image.BILINEAR)
    top, left = int(round((new_h - image_size) / 2.0)), int(round((new_w - image_size) / 2.0))
    img = img.crop((left, top, left + image_size, top + image_size))
    return np.asarray(img, dtype=np.uint8)


def _decode_all(paths: list[Path], image_size: int) -> np.ndarray:
    out = np.empty((len(paths), image_size, image_size, 3), dtype=np.uint8)
    bad: list[str] = []

    def work(i: int) -> None:
        try:
            out[i] = load_image(paths[i], image_size)
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
            bad.append(f"{paths[i]} ({exc})")

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        list(pool.map(work, range(len(paths))))
    if bad:
        bad.sort()
        more = f" and {len(bad) - _SHOW_BAD} more" if len(bad) > _SHOW_BAD else ""
        raise BenchError(
            f"{len(bad)} image(s) cannot be read: {'; '.join(bad[:_SHOW_BAD])}{more}. "
            f"Delete or replace them (truncated downloads are the usual cause)"
        )
    return out


def _limit(paths: list[Path], labels: np.ndarray, size: int | None, where: Path,
           flag: str) -> tuple[list[Path], np.ndarray]:
    if size is None:
        return paths, labels
    if not 1 <= size <= len(paths):
        raise BenchError(f"{flag} {size} is out of range: {where} has {len(paths)} images; "
                         f"pass a value from 1 to {len(paths)}")
    return paths[:size], labels[:size]


def load_imagefolder(root: Path, *, image_size: int, train_size: int | None = None,
                     test_size: int | None = None) -> Dataset:
    """The train split from ``root/train``; test from ``root/test``, or ``root/valid`` when
    there is no test folder. ``valid`` is also kept as ``valid_images``/``valid_labels``.

    ``train_size``/``test_size`` keep the first n images of train and of the evaluation
    split (None: all), decoding only those.
    """
    root = Path(root)
    train_dir = root / "train"
    if not train_dir.is_dir():
        raise BenchError(
            f"{root} has no train/ folder: an image-folder dataset needs "
            f"{root}/train/<class>/<image> and {root}/valid/ or {root}/test/ laid out the same way"
        )
    classes = _class_dirs(train_dir)
    if not classes:
        raise BenchError(f"{train_dir} has no class folders: put each class's images in {train_dir}/<class>/")
    present = [s for s in SPLITS if (root / s).is_dir()]
    if present == ["train"]:
        raise BenchError(f"{root} has train/ but neither valid/ nor test/: add one to evaluate on")
    eval_split = "test" if "test" in present else "valid"
    limits = {"train": (train_size, "--train-size"), eval_split: (test_size, "--test-size")}
    splits, available = {}, {}
    for split in present:
        paths, labels = _list_split(root / split, classes)
        available[split] = len(paths)
        size, flag = limits.get(split, (None, ""))
        paths, labels = _limit(paths, labels, size, root / split, flag)
        splits[split] = (_decode_all(paths, image_size), labels)
    train = splits["train"]
    test = splits[eval_split]
    valid = splits.get("valid", (None, None))
    identity = {
        "name": f"imagefolder:{root.name}",
        "train_size": int(train[0].shape[0]),
        "test_size": int(test[0].shape[0]),
        "sha256": arrays_sha256(train[0], train[1], test[0], test[1]),
        "source": str(root.resolve()),
        "test_split": eval_split,
        "available": available,
        "image_size": image_size,
    }
    return Dataset(f"imagefolder:{root.name}", train[0], train[1], test[0], test[1], classes, identity,
                   valid_images=valid[0], valid_labels=valid[1])
