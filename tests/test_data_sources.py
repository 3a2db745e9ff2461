"""harness.data: the synthetic dataset and image folders (dog-breed layout)."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from harness.data import load_dataset
from harness.data.imagefolder import load_image, load_imagefolder
from harness.data.synthetic import CLASS_NAMES, make_synthetic
from harness.errors import BenchError


# --- synthetic ------------------------------------------------------------------------------

def test_synthetic_is_deterministic_and_seeded():
    a = make_synthetic(train_size=300, test_size=100, seed=7)
    b = make_synthetic(train_size=300, test_size=100, seed=7)
    c = make_synthetic(train_size=300, test_size=100, seed=8)
    assert a.train_images.tobytes() == b.train_images.tobytes()
    assert a.test_labels.tobytes() == b.test_labels.tobytes()
    assert a.train_images.tobytes() != c.train_images.tobytes()
    assert a.train_images[:100].tobytes() != a.test_images.tobytes()  # disjoint streams
    bigger = make_synthetic(train_size=700, test_size=100, seed=7)  # sizes cut a prefix
    assert bigger.train_images[:300].tobytes() == a.train_images.tobytes()
    assert a.identity == {"name": "synthetic", "train_size": 300, "test_size": 100,
                          "sha256": "synthetic, seed 7", "source": a.identity["source"]}


def test_synthetic_shapes_and_classes():
    ds = make_synthetic(train_size=95, test_size=10, seed=0, image_size=40)
    assert ds.train_images.shape == (95, 40, 40, 3) and ds.train_images.dtype == np.uint8
    assert ds.train_labels.dtype == np.int64 and ds.test_images.shape == (10, 40, 40, 3)
    assert ds.class_names == CLASS_NAMES and len(set(CLASS_NAMES)) == 10
    assert set(ds.train_labels) == set(range(10)) and set(ds.test_labels) == set(range(10))
    assert np.bincount(ds.train_labels).min() >= 9  # balanced
    assert ds.train_images.std() > 30  # not blank
    small = make_synthetic(train_size=20, test_size=20, seed=0, num_classes=4)
    assert small.class_names == CLASS_NAMES[:4] and set(small.train_labels) == set(range(4))
    with pytest.raises(BenchError, match="2 to 10 classes"):
        make_synthetic(train_size=10, test_size=10, seed=0, num_classes=11)


def _features(images: np.ndarray) -> np.ndarray:
    """Gradient-orientation histogram + colour mean/std: about the simplest shape features."""
    x = images.astype(np.float32) / 255
    grey = x.mean(-1)
    gy, gx = np.diff(grey, axis=1)[:, :, :-1], np.diff(grey, axis=2)[:, :-1, :]
    magnitude = np.sqrt(gx * gx + gy * gy)
    bins = np.minimum((np.arctan2(gy, gx) % np.pi) / np.pi * 8, 7).astype(int)
    hist = np.stack([(magnitude * (bins == k)).sum(axis=(1, 2)) for k in range(8)], axis=1)
    hist /= hist.sum(axis=1, keepdims=True) + 1e-6
    flat = x.reshape(len(x), -1, 3)
    return np.concatenate([hist, flat.mean(1), flat.std(1)], axis=1)


def _softmax_regression(x: np.ndarray, y: np.ndarray, classes: int, steps: int = 300) -> np.ndarray:
    mu, sd = x.mean(0), x.std(0) + 1e-6
    x = (x - mu) / sd
    w, b = np.zeros((x.shape[1], classes), np.float32), np.zeros(classes, np.float32)
    onehot = np.eye(classes, dtype=np.float32)[y]
    for _ in range(steps):
        z = x @ w + b
        p = np.exp(z - z.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        g = (p - onehot) / len(x)
        w -= 0.5 * x.T @ g
        b -= 0.5 * g.sum(0)
    return lambda q: (((q - mu) / sd) @ w + b).argmax(1)


def test_synthetic_is_learnable_but_not_trivial():
    ds = make_synthetic(train_size=2000, test_size=1000, seed=0)
    predict = _softmax_regression(_features(ds.train_images), ds.train_labels, 10)
    accuracy = (predict(_features(ds.test_images)) == ds.test_labels).mean()
    assert 0.30 <= accuracy < 0.9, accuracy  # chance is 0.10; measured 0.47
    # Raw pixels are much weaker: position jitter blurs the class means.
    x = ds.train_images.reshape(2000, -1).astype(np.float32)
    centroids = np.stack([x[ds.train_labels == k].mean(0) for k in range(10)])
    test = ds.test_images.reshape(1000, -1).astype(np.float32)
    nearest = ((test[:, None, :] - centroids[None]) ** 2).sum(-1).argmin(1)
    assert (nearest == ds.test_labels).mean() < 0.5


def test_synthetic_is_fast():
    start = time.perf_counter()
    make_synthetic(train_size=4000, test_size=10, seed=0)
    assert time.perf_counter() - start < 5.0  # ~0.2 s on one core; generous for shared CI


# --- image folders --------------------------------------------------------------------------

CLASSES = ["beagle", "collie", "pug"]


def write_image(path: Path, size: tuple[int, int], seed: int, fmt: str = "JPEG") -> None:
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)).save(path, fmt)


def make_tree(root: Path, splits=("train", "valid", "test"), per_class: int = 3) -> Path:
    seed = 0
    for split in splits:
        for c in CLASSES:
            for i in range(per_class):
                seed += 1
                size = (40 + 7 * i, 30 + 5 * seed % 20)  # assorted shapes, landscape and portrait
                write_image(root / split / c / f"{c}_{i}.jpg", size, seed)
    (root / "train" / "pug" / "notes.txt").write_text("not an image, skipped")
    return root


def test_imagefolder_loads_all_splits(tmp_path):
    root = make_tree(tmp_path / "dogs")
    write_image(root / "train" / "pug" / "grey.png", (20, 50), 99, "PNG")
    ds = load_imagefolder(root, image_size=24)
    assert ds.class_names == CLASSES
    assert ds.train_images.shape == (10, 24, 24, 3) and ds.train_images.dtype == np.uint8
    assert ds.test_images.shape == (9, 24, 24, 3) and ds.valid_images.shape == (9, 24, 24, 3)
    assert sorted(np.bincount(ds.train_labels)) == [3, 3, 4]
    assert ds.identity["test_split"] == "test" and ds.identity["name"] == "imagefolder:dogs"
    assert len(set(ds.train_labels[:4])) > 1  # fixed shuffled order: prefixes mix classes
    again = load_imagefolder(root, image_size=24)
    assert again.identity["sha256"] == ds.identity["sha256"]
    np.testing.assert_array_equal(again.train_labels, ds.train_labels)


def test_load_image_resizes_the_shorter_side_then_centre_crops(tmp_path):
    path = tmp_path / "wide.png"
    write_image(path, (60, 30), 1, "PNG")
    src = Image.open(path).convert("RGB")
    expected = np.asarray(src.resize((32, 16), Image.BILINEAR))[:, 8:24]  # 16 wide from 32
    np.testing.assert_array_equal(load_image(path, 16), expected)


def test_imagefolder_without_test_evaluates_on_valid_and_limits_sizes(tmp_path):
    root = make_tree(tmp_path / "dogs", splits=("train", "valid"))
    ds = load_dataset(f"imagefolder:{root}", data_dir=tmp_path, train_size=5, test_size=4, seed=0, image_size=16)
    assert ds.identity["test_split"] == "valid"
    assert ds.train_images.shape[0] == 5 and ds.test_images.shape[0] == 4
    assert ds.identity["available"] == {"train": 9, "valid": 9}
    with pytest.raises(BenchError, match="--train-size 10 is out of range"):
        load_imagefolder(root, image_size=16, train_size=10)


def truncate(path: Path, keep: float = 0.5) -> None:
    """Cut a written image file short, as an interrupted download leaves it."""
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * keep)])


def test_truncated_image_needs_allow_truncated_and_is_counted(tmp_path):
    root = make_tree(tmp_path / "dogs", splits=("train", "test"), per_class=1)
    bad = root / "train" / "collie" / "broken.jpg"
    write_image(bad, (64, 64), 5)
    truncate(bad)
    with pytest.raises(BenchError) as err:
        load_imagefolder(root, image_size=16)
    message = str(err.value)
    assert "\n" not in message and "broken.jpg" in message and "--allow-truncated" in message
    assert message.startswith("1 image(s) are truncated")
    ds = load_imagefolder(root, image_size=16, allow_truncated=True)
    assert ds.train_images.shape[0] == 4
    assert ds.identity["truncated_images"] == 1 and ds.identity["truncated_files"] == [str(bad)]
    from PIL import ImageFile
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False  # the global is restored
    assert load_imagefolder(make_tree(tmp_path / "ok", per_class=1), image_size=16).identity["truncated_images"] == 0


def test_file_cut_in_its_header_is_unreadable_even_with_allow_truncated(tmp_path):
    root = make_tree(tmp_path / "dogs", splits=("train", "test"), per_class=1)
    bad = root / "train" / "collie" / "stub.jpg"
    write_image(bad, (64, 64), 5)
    bad.write_bytes(bad.read_bytes()[:300])
    for allow in (False, True):
        with pytest.raises(BenchError, match=r"1 image\(s\) cannot be read: .*stub\.jpg"):
            load_imagefolder(root, image_size=16, allow_truncated=allow)


def test_valid_and_test_are_separate_splits_with_their_own_limits(tmp_path):
    root = make_tree(tmp_path / "dogs", per_class=4)
    ds = load_imagefolder(root, image_size=16, train_size=6, test_size=5, valid_size=7)
    assert ds.has_valid and ds.identity["valid_split"] == "valid" and ds.identity["test_split"] == "test"
    assert (ds.train_images.shape[0], ds.valid_images.shape[0], ds.test_images.shape[0]) == (6, 7, 5)
    assert ds.identity["valid_size"] == 7 and ds.preprocessed
    only_valid = make_tree(tmp_path / "v", splits=("train", "valid"), per_class=1)
    single = load_imagefolder(only_valid, image_size=16)
    assert not single.has_valid and single.identity["test_split"] == "valid"  # evaluated every epoch, as before
    with pytest.raises(BenchError, match="--valid-size limits .*beside test/"):
        load_imagefolder(only_valid, image_size=16, valid_size=2)


def test_eval_transform_and_whole_frames_at_decode(tmp_path):
    root = make_tree(tmp_path / "dogs", splits=("train", "valid", "test"), per_class=2)
    ds = load_imagefolder(root, image_size=16, resize_to=20, whole_frames=True)
    test_path = sorted((root / "test").rglob("*.jpg"))
    tf = pytest.importorskip("torchvision.transforms.functional")
    refs = {np.asarray(tf.center_crop(tf.resize(Image.open(p).convert("RGB"), 20), 16)).tobytes() for p in test_path}
    assert {im.tobytes() for im in ds.test_images} == refs  # Resize(20) + CenterCrop(16), exactly Pillow's
    assert ds.train_images.shape == (6, 20, 20, 3)  # whole frames, stored at max(16, 20)
    originals = {Image.open(p).size[::-1] for p in (root / "train").rglob("*.jpg")}
    assert {tuple(f) for f in ds.train_frames} == originals
    assert "whole frames" in ds.identity["train_storage"]
    plain = load_imagefolder(root, image_size=16)
    assert plain.train_frames is None and plain.train_images.shape[1:] == (16, 16, 3)


def test_folder_structure_errors(tmp_path):
    root = make_tree(tmp_path / "dogs", splits=("train", "test"), per_class=1)
    (root / "test" / "husky").mkdir()
    with pytest.raises(BenchError, match="same class folders.*extra: husky"):
        load_imagefolder(root, image_size=16)
    (root / "test" / "husky").rmdir()
    write_image(root / "train" / "corgi" / "c.jpg", (20, 20), 3)
    with pytest.raises(BenchError, match="missing: corgi"):
        load_imagefolder(root, image_size=16)
    (root / "test" / "corgi").mkdir()  # an empty evaluation class is allowed...
    assert load_imagefolder(root, image_size=16).num_classes == 4
    (root / "train" / "corgi" / "c.jpg").unlink()  # ...an empty training class is not
    with pytest.raises(BenchError, match="corgi has no images"):
        load_imagefolder(root, image_size=16)
    with pytest.raises(BenchError, match="no train/ folder"):
        load_imagefolder(tmp_path / "nowhere", image_size=16)
    only_train = make_tree(tmp_path / "solo", splits=("train",), per_class=1)
    with pytest.raises(BenchError, match="neither valid/ nor test/"):
        load_imagefolder(only_train, image_size=16)
