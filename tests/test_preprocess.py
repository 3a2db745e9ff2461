"""harness.data preprocessing choices (issue 15) against references computed independently:
Pillow and torchvision.transforms.functional on generated images, and the normalisation
each real backend applies to the same uint8 batch."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from harness.catalogue import CIFAR_MEAN, CIFAR_STD, IMAGENET_MEAN, IMAGENET_STD
from harness.data import Preprocess, load_dataset, normalization
from harness.data.augment import apply_resized_crop, draw_resized_crop
from harness.data.dataset import Dataset
from harness.data.resize import center_crop_resize
from harness.data.rotate import apply_rotation
from harness.errors import BenchError


def random_images(n: int, h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, h, w, 3), dtype=np.uint8)


def smooth_images(n: int, h: int, w: int, seed: int = 0) -> np.ndarray:
    """Low-frequency pictures (a few sinusoids): resampling them twice or once differs by
    rounding only, so a whole-frame crop can be compared with a crop of the original."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w] / max(h, w)
    out = np.empty((n, h, w, 3))
    for i in range(n):
        for c in range(3):
            fy, fx, ph = rng.uniform(0.5, 2.0, 3)
            out[i, :, :, c] = 127.5 + 120 * np.sin(2 * np.pi * (fy * y + fx * x) + ph * 6)
    return out.round().astype(np.uint8)


# --- normalisation: one (mean, std) per choice, applied identically by every backend -----

def test_normalization_choices():
    assert normalization("model", "resnet20") == (CIFAR_MEAN, CIFAR_STD)
    assert normalization("model", "resnet50") == (IMAGENET_MEAN, IMAGENET_STD)
    assert normalization("cifar10", "resnet50") == (CIFAR_MEAN, CIFAR_STD)  # seed 000: CIFAR stats, ImageNet net
    assert normalization("imagenet", "resnet20") == (IMAGENET_MEAN, IMAGENET_STD)
    assert normalization("none", "resnet20") == ((0, 0, 0), (1, 1, 1))  # seed 004: raw [0, 1]
    assert normalization("0.4914,0.4822,0.4465/0.2023,0.1994,0.2010", "resnet50") == (
        (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010))
    for bad in ("imagenette", "1,2/3,4,5", "0.5,0.5,0.5/0,1,1", "a,b,c/1,1,1", "0.5,0.5,0.5"):
        with pytest.raises(BenchError, match="--normalize .* MEAN/STD"):
            normalization(bad, "resnet20")


@pytest.mark.parametrize("choice", ["model", "cifar10", "imagenet", "none", "0.5,0.4,0.3/0.2,0.25,0.3"])
def test_both_frameworks_normalise_the_same_batch_to_the_same_arrays(choice):
    """The harness hands both backends one uint8 batch and one InputSpec; each must turn it
    into (u8 / 255 - mean) / std, computed here in float64 as the reference."""
    torch_backend = pytest.importorskip("backends.torch_impl.backend")
    chainer_backend = pytest.importorskip("backends.chainer_impl.backend")
    from harness.backend import InputSpec, ModelSpec, OptimSpec

    mean, std = normalization(choice, "resnet20")
    images = random_images(4, 8, 8, seed=3)
    images[0, 0, 0] = (0, 255, 128)
    expected = (images.transpose(0, 3, 1, 2) / 255.0 - np.array(mean)[:, None, None]) / np.array(std)[:, None, None]
    for cls in (torch_backend.TorchBackend, chainer_backend.ChainerBackend):
        backend = cls()
        backend.configure(device="cpu", threads=1, seed=0)
        backend.build(ModelSpec("resnet8", 10, 8), OptimSpec("sgd", lr=0.1), InputSpec(mean, std))
        x = backend._images(images)
        got = x.cpu().numpy() if hasattr(x, "cpu") else np.asarray(x)
        np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6, err_msg=cls.__name__)


# --- evaluation transform: Resize(256) + CenterCrop(224) ---------------------------------

@pytest.mark.parametrize("shape,resize_to,size", [((32, 32), 256, 224), ((40, 60), 36, 32), ((300, 200), 256, 224)])
def test_center_crop_resize_matches_torchvision(shape, resize_to, size):
    tf = pytest.importorskip("torchvision.transforms.functional")
    images = random_images(3, *shape, seed=1)
    ours = center_crop_resize(images, size, resize_to)
    assert ours.shape == (3, size, size, 3)
    for image, got in zip(images, ours):
        ref = tf.center_crop(tf.resize(Image.fromarray(image), resize_to), size)
        assert np.abs(got.astype(int) - np.asarray(ref)).max() <= 1


def test_center_crop_resize_without_resize_to_is_a_plain_resize():
    images = random_images(2, 32, 32)
    ref = np.stack([np.asarray(Image.fromarray(im).resize((48, 48), Image.BILINEAR)) for im in images])
    assert np.abs(center_crop_resize(images, 48).astype(int) - ref).max() <= 1


# --- RandomRotation(30) ------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(32, 32), (40, 57), (57, 40)])
def test_rotation_matches_pillow_rotate_nearest(shape):
    images = random_images(6, *shape, seed=2)
    angles = np.random.default_rng(0).uniform(-30, 30, 6)
    ours = apply_rotation(images, angles)
    for image, angle, got in zip(images, angles, ours):
        ref = np.asarray(Image.fromarray(image).rotate(angle, Image.NEAREST, expand=False, fillcolor=0))
        # Pillow uses 16.16 fixed point: a pixel centre lying on a cell boundary may round
        # the other way. Everything else is equal, black corners included.
        assert (got == ref).all(axis=-1).mean() >= 0.995
    assert (ours[:, 0, 0] == 0).all() or np.abs(angles).min() < 1  # corners filled black


def test_rotation_of_a_whole_frame_follows_the_original_geometry():
    """A 60x40 picture stored squashed to 48x48 and rotated there must look like the
    original rotated by Pillow and then squashed."""
    original = smooth_images(3, 40, 60, seed=4)
    stored = np.stack([np.asarray(Image.fromarray(im).resize((48, 48), Image.BILINEAR)) for im in original])
    angles = np.array([25.0, -17.0, 8.0])
    ours = apply_rotation(stored, angles, frames=np.array([[40, 60]] * 3))
    for image, angle, got in zip(original, angles, ours):
        ref = Image.fromarray(image).rotate(angle, Image.NEAREST, fillcolor=0).resize((48, 48), Image.BILINEAR)
        diff = np.abs(got.astype(int) - np.asarray(ref))
        assert np.median(diff) <= 4 and (diff > 60).mean() < 0.06  # edges of the black corners move by a pixel


# --- RandomResizedCrop from the whole picture ---------------------------------------------

def test_resized_crop_of_a_whole_frame_matches_a_crop_of_the_original():
    original = smooth_images(4, 90, 150, seed=5)  # 5:3 landscape
    stored = np.stack([np.asarray(Image.fromarray(im).resize((96, 96), Image.BILINEAR)) for im in original])
    frames = np.array([[90, 150]] * 4)
    params = draw_resized_crop(np.random.default_rng(1), 4, frames[:, 0], frames[:, 1])
    assert (params.left + params.width <= 150).all() and (params.top + params.height <= 90).all()
    assert params.width.max() > 90  # boxes wider than the shorter side: only whole frames allow them
    ours = apply_resized_crop(stored, params, 32, frames)
    for i, got in enumerate(ours):
        box = (params.left[i], params.top[i], params.left[i] + params.width[i], params.top[i] + params.height[i])
        ref = Image.fromarray(original[i]).crop(box).resize((32, 32), Image.BILINEAR)
        if params.flip[i]:
            ref = ref.transpose(Image.FLIP_LEFT_RIGHT)
        diff = np.abs(got.astype(int) - np.asarray(ref))
        assert diff.mean() < 2.5 and diff.max() <= 16


def test_per_image_sizes_give_the_same_draws_as_one_size():
    one = draw_resized_crop(np.random.default_rng(7), 50, 32, 32)
    many = draw_resized_crop(np.random.default_rng(7), 50, np.full(50, 32), np.full(50, 32))
    for a, b in zip(one, many):
        np.testing.assert_array_equal(a, b)


# --- the seed-001 chain through the stream -----------------------------------------------

def tagged_dataset(images: np.ndarray, frames: np.ndarray | None = None) -> Dataset:
    n = len(images)
    return Dataset("t", images, np.arange(n, dtype=np.int64) % 10, images[:2], np.zeros(2, np.int64),
                   [str(i) for i in range(10)], train_frames=frames)


def test_seed_001_chain_rotates_then_crops_then_flips_each_image():
    images = random_images(9, 40, 40, seed=6)
    pre = Preprocess(image_size=24, augment="random_resized_crop", rotate=30)
    stream = pre.train_stream(tagged_dataset(images), batch_size=4, seed=3, epoch=2)
    order = list(stream.indices())
    got = np.concatenate([b.images for b in stream])
    params, angles = stream._params, stream._angles
    assert np.abs(angles).max() <= 30 and np.abs(angles).std() > 5
    for image, i in zip(got, np.concatenate(order)):
        rotated = Image.fromarray(images[i]).rotate(angles[i], Image.NEAREST, fillcolor=0)
        box = (params.left[i], params.top[i], params.left[i] + params.width[i], params.top[i] + params.height[i])
        ref = rotated.crop(box).resize((24, 24), Image.BILINEAR)
        if params.flip[i]:
            ref = ref.transpose(Image.FLIP_LEFT_RIGHT)
        assert (np.abs(image.astype(int) - np.asarray(ref)) <= 1).mean() > 0.97
    again = np.concatenate([b.images for b in pre.train_stream(tagged_dataset(images), batch_size=4, seed=3, epoch=2)])
    np.testing.assert_array_equal(got, again)  # a pure function of (seed, epoch)
    other = np.concatenate([b.images for b in pre.train_stream(tagged_dataset(images), batch_size=4, seed=3, epoch=3)])
    assert not np.array_equal(got, other)


def test_adding_a_rotation_keeps_the_crops_and_flips():
    images = random_images(12, 32, 32)
    plain = Preprocess(image_size=32, augment="random_resized_crop").train_stream(
        tagged_dataset(images), batch_size=4, seed=1, epoch=1)
    rotated = Preprocess(image_size=32, augment="random_resized_crop", rotate=10).train_stream(
        tagged_dataset(images), batch_size=4, seed=1, epoch=1)
    for a, b in zip(plain._params, rotated._params):
        np.testing.assert_array_equal(a, b)


def test_evaluation_streams_use_the_eval_transform_unless_the_dataset_was_decoded_with_it():
    images = random_images(5, 32, 32)
    pre = Preprocess(image_size=28, eval_resize=32)
    ds = tagged_dataset(images)
    ds.valid_images, ds.valid_labels = images, np.arange(5, dtype=np.int64)
    got = np.concatenate([b.images for b in pre.eval_stream(ds, "valid", batch_size=2)])
    np.testing.assert_array_equal(got, images[:, 2:30, 2:30])  # Resize(32) of 32 px is the identity
    decoded = Dataset("f", images[:, :28, :28], np.zeros(5, np.int64), images[:, :28, :28], np.zeros(5, np.int64),
                      ["a"], preprocessed=True)
    got = np.concatenate([b.images for b in pre.eval_stream(decoded, "test", batch_size=2)])
    np.testing.assert_array_equal(got, images[:, :28, :28])
    with pytest.raises(BenchError, match="--eval-resize 20 is smaller than the input size 28"):
        Preprocess(image_size=28, eval_resize=20)
    with pytest.raises(BenchError, match="--rotate"):
        Preprocess(image_size=28, rotate=-5)
    assert Preprocess(224, "random_resized_crop", 30, 256).describe() == {
        "train": "RandomRotation(30) + RandomResizedCrop(224) + RandomHorizontalFlip()",
        "eval": "Resize(256) + CenterCrop(224)"}


# --- the validation carve-out ------------------------------------------------------------

def test_carve_out_is_seeded_disjoint_and_complete(tmp_path):
    full = load_dataset("synthetic", data_dir=tmp_path, train_size=200, test_size=10, seed=5)
    a = full.carve_valid(50, seed=1)
    b = full.carve_valid(50, seed=1)
    c = full.carve_valid(50, seed=2)
    np.testing.assert_array_equal(a.valid_images, b.valid_images)
    assert not np.array_equal(a.valid_images, c.valid_images)
    assert a.train_images.shape[0] == 150 and a.valid_images.shape[0] == 50
    # Disjoint and complete: every original image is in exactly one of the two splits.
    as_rows = lambda x: {bytes(r) for r in x.reshape(len(x), -1)}  # noqa: E731
    train, valid = as_rows(a.train_images), as_rows(a.valid_images)
    assert not train & valid and train | valid == as_rows(full.train_images)
    np.testing.assert_array_equal(a.test_images, full.test_images)  # the test set is untouched
    assert a.identity["valid_split"] == "carved from the training split (seed 1)"
    with pytest.raises(BenchError, match="--valid-size 200 is out of range.*1 to 199"):
        full.carve_valid(200, seed=0)


def test_load_dataset_carves_before_the_train_size_prefix(tmp_path):
    ds = load_dataset("synthetic", data_dir=tmp_path, train_size=64, test_size=8, seed=3, valid_size=16)
    assert (ds.train_images.shape[0], ds.valid_images.shape[0], ds.test_images.shape[0]) == (64, 16, 8)
    assert ds.identity["valid_size"] == 16
