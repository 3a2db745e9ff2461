"""Image folders in the dog-breed layout: ``root/{train,valid,test}/<class>/<image>``.

Classes are the sorted folder names under ``train/`` (torchvision ``ImageFolder``'s rule);
``valid/`` and ``test/`` must hold the same class folders. Each split is put in one fixed
pseudo-random order (the same on every machine, whatever ``--seed``), so that its first n
images, which is what a size limit keeps, mix all classes as CIFAR-10's do; only those
are decoded.

With both ``valid/`` and ``test/`` (seed 001's layout), ``valid/`` is the validation split,
evaluated every epoch, and ``test/`` is evaluated once at the end; with only one of them,
it is the test split, evaluated every epoch as before.

Each image is decoded with Pillow, converted to RGB, its shorter side resized to
``resize_to`` (default ``image_size``) and centre-cropped to ``image_size``: torchvision
``Resize(resize_to)`` + ``CenterCrop(image_size)`` on a PIL image, which both call
Pillow's antialiased bilinear resize (seed 001 evaluates with ``Resize(256)`` +
``CenterCrop(224)``). Training images that will get a random-resized crop are instead kept
whole (``whole_frames``): squashed to a ``frame_side`` square, their original size
recorded, so the crop is drawn from the full picture as torchvision draws it, not from a
square cut out of its middle. The results stay in memory as uint8, so later epochs decode
nothing.

``allow_truncated``: images whose file ends early are decoded as far as they go (the rest
grey), as Pillow's ``ImageFile.LOAD_TRUNCATED_IMAGES`` does and seed 001 set; they are
counted in the dataset's identity (run.json). Without it they are an error naming them.

Decoding runs on a thread pool: Pillow releases the GIL while it decodes and resizes.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile

from harness.data.dataset import Dataset
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


def load_image(path: Path, image_size: int, resize_to: int | None = None) -> np.ndarray:
    """(image_size, image_size, 3) uint8: shorter side to ``resize_to`` (default
    ``image_size``), centre crop of ``image_size``.

    Sizes and offsets follow torchvision: the longer side becomes
    ``int(resize_to * long / short)`` and the crop starts at ``round((side - size) / 2)``.
    """
    resize_to = image_size if resize_to is None else resize_to
    with Image.open(path) as f:
        img = f.convert("RGB")
    w, h = img.size
    if w <= h:
        new_w, new_h = resize_to, int(resize_to * h / w)
    else:
        new_w, new_h = int(resize_to * w / h), resize_to
    if (new_w, new_h) != (w, h):
        img = img.resize((new_w, new_h), Image.Resampling.BILINEAR)
    top, left = int(round((new_h - image_size) / 2.0)), int(round((new_w - image_size) / 2.0))
    img = img.crop((left, top, left + image_size, top + image_size))
    return np.asarray(img, dtype=np.uint8)


def load_frame(path: Path, side: int) -> tuple[np.ndarray, tuple[int, int]]:
    """The whole picture squashed to (side, side, 3) uint8, and its original (height, width)."""
    with Image.open(path) as f:
        img = f.convert("RGB")
    w, h = img.size
    if (w, h) != (side, side):
        img = img.resize((side, side), Image.Resampling.BILINEAR)
    return np.asarray(img, dtype=np.uint8), (h, w)


def _is_truncation(exc: BaseException) -> bool:
    """Pillow's words for pixel data that ends early, which LOAD_TRUNCATED_IMAGES accepts
    ("image file is truncated (N bytes not processed)"; "broken data stream" for PNG). A
    file cut inside its header ("Truncated File Read") cannot be decoded at all."""
    text = str(exc)
    return isinstance(exc, OSError) and ("image file is truncated" in text or "broken data stream" in text)


_READ_ERRORS = (OSError, ValueError, SyntaxError, Image.DecompressionBombError)


def _decode_all(paths: list[Path], image_size: int, *, resize_to: int | None = None, frame_side: int | None = None,
                allow_truncated: bool = False) -> tuple[np.ndarray, np.ndarray | None, list[str]]:
    """Decode ``paths``: images, original (height, width) per image when ``frame_side``
    (whole frames) is given, and the files that were truncated (decoded only because
    ``allow_truncated``)."""
    side = frame_side or image_size
    out = np.empty((len(paths), side, side, 3), dtype=np.uint8)
    frames = np.empty((len(paths), 2), dtype=np.int64) if frame_side else None
    bad: dict[int, BaseException] = {}

    def work(i: int) -> None:
        try:
            if frames is not None:
                out[i], frames[i] = load_frame(paths[i], side)
            else:
                out[i] = load_image(paths[i], image_size, resize_to)
        except _READ_ERRORS as exc:
            bad[i] = exc

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        list(pool.map(work, range(len(paths))))
    truncated = sorted(i for i, exc in bad.items() if _is_truncation(exc))
    if allow_truncated and truncated:
        # Pillow reads this flag as a module global: set it only here, after the pool has
        # finished, one image at a time, so no other decode is affected.
        before = ImageFile.LOAD_TRUNCATED_IMAGES
        ImageFile.LOAD_TRUNCATED_IMAGES = True
        try:
            for i in truncated:
                del bad[i]
                work(i)
        finally:
            ImageFile.LOAD_TRUNCATED_IMAGES = before
    if bad:
        _raise_unreadable(paths, bad)
    return out, frames, [str(paths[i]) for i in truncated] if allow_truncated else []


def _raise_unreadable(paths: list[Path], bad: dict[int, BaseException]) -> None:
    listed = sorted(f"{paths[i]} ({exc})" for i, exc in bad.items())
    more = f" and {len(listed) - _SHOW_BAD} more" if len(listed) > _SHOW_BAD else ""
    named = f"{'; '.join(listed[:_SHOW_BAD])}{more}"
    if all(_is_truncation(exc) for exc in bad.values()):
        raise BenchError(f"{len(listed)} image(s) are truncated: {named}. Pass --allow-truncated to decode what "
                         f"is there (Pillow's LOAD_TRUNCATED_IMAGES, as seed 001 did), or replace them")
    raise BenchError(f"{len(listed)} image(s) cannot be read: {named}. "
                     f"Delete or replace them (truncated downloads are the usual cause; --allow-truncated accepts those)")


def _limit(paths: list[Path], labels: np.ndarray, size: int | None, where: Path,
           flag: str) -> tuple[list[Path], np.ndarray]:
    if size is None:
        return paths, labels
    if not 1 <= size <= len(paths):
        raise BenchError(f"{flag} {size} is out of range: {where} has {len(paths)} images; "
                         f"pass a value from 1 to {len(paths)}")
    return paths[:size], labels[:size]


def load_imagefolder(root: Path, *, image_size: int, train_size: int | None = None,
                     test_size: int | None = None, valid_size: int | None = None,
                     resize_to: int | None = None, whole_frames: bool = False,
                     allow_truncated: bool = False) -> Dataset:
    """The train split from ``root/train``. With ``valid/`` and ``test/`` both present,
    valid is the validation split (every epoch) and test the test split (at the end);
    with one of them, it is the test split.

    ``train_size``/``test_size``/``valid_size`` keep the first n images of each split
    (None: all), decoding only those. ``resize_to``: the shorter side before the centre
    crop (the evaluation transform; also used for training images that are not kept whole).
    ``whole_frames``: keep training pictures whole for random-resized crops (module doc).
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
    has_valid = "valid" in present and "test" in present
    if valid_size is not None and not has_valid:
        raise BenchError(f"--valid-size limits {root}/valid/, which is used as the validation split only beside "
                         f"test/: add test/ (or drop --valid-size)")
    limits = {"train": (train_size, "--train-size"), eval_split: (test_size, "--test-size")}
    if has_valid:
        limits["valid"] = (valid_size, "--valid-size")
    frame_side = max(image_size, resize_to or 0) if whole_frames else None
    splits, available, truncated, train_frames = {}, {}, [], None
    for split in present:
        paths, labels = _list_split(root / split, classes)
        available[split] = len(paths)
        size, flag = limits[split]
        paths, labels = _limit(paths, labels, size, root / split, flag)
        images, frames, cut = _decode_all(paths, image_size, resize_to=resize_to, allow_truncated=allow_truncated,
                                          frame_side=frame_side if split == "train" else None)
        splits[split] = (images, labels)
        truncated += cut
        if split == "train":
            train_frames = frames
    train, test = splits["train"], splits[eval_split]
    valid = splits["valid"] if has_valid else (None, None)
    identity = {
        "name": f"imagefolder:{root.name}",
        "train_size": int(train[0].shape[0]),
        "test_size": int(test[0].shape[0]),
        "source": str(root.resolve()),
        "test_split": eval_split,
        "available": available,
        "image_size": image_size,
        "eval_transform": f"Resize({resize_to or image_size}) + CenterCrop({image_size})",
        "train_storage": (f"whole frames squashed to {frame_side} px (original sizes kept for the crops)"
                          if frame_side else f"Resize({resize_to or image_size}) + CenterCrop({image_size})"),
        "truncated_images": len(truncated),
    }
    if truncated:
        identity["truncated_files"] = sorted(truncated)[:20]
    if valid[0] is not None:  # has_valid
        identity.update(valid_split="valid", valid_size=int(valid[0].shape[0]))
    dataset = Dataset(f"imagefolder:{root.name}", train[0], train[1], test[0], test[1], classes, identity,
                      valid_images=valid[0], valid_labels=valid[1], train_frames=train_frames, preprocessed=True)
    dataset.identity["sha256"] = dataset.arrays_hash()
    return dataset
