"""harness.data: BatchStream order/augmentation/sharding, prefetch, resize vs Pillow."""
from __future__ import annotations

import gc
import threading
import time

import numpy as np
import pytest
from PIL import Image

from harness.backend import Batch
from harness.data import BatchStream, eval_stream, prefetch
from harness.data.augment import apply_crop_flip, draw_crop_flip, draw_resized_crop
from harness.data.resize import resize, resize_matrix
from harness.errors import BenchError


def tagged(n: int, size: int = 32, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Random images; label i marks image i, so a batch tells which images it holds."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(n, size, size, 3), dtype=np.uint8), np.arange(n, dtype=np.int64)


def collect(stream) -> tuple[np.ndarray, np.ndarray]:
    batches = list(stream)
    return np.concatenate([b.images for b in batches]), np.concatenate([b.labels for b in batches])


def train_stream(images, labels, **kw) -> BatchStream:
    args = dict(batch_size=8, seed=1, epoch=0, shuffle=True, augment="crop_flip", drop_last=False)
    args.update(kw)
    return BatchStream(images, labels, **args)


# --- order ----------------------------------------------------------------------------------

def test_same_seed_and_epoch_give_identical_bytes():
    x, y = tagged(50)
    a, b = list(train_stream(x, y)), list(train_stream(x.copy(), y.copy()))
    assert all(isinstance(batch, Batch) for batch in a)
    for p, q in zip(a, b, strict=True):
        assert p.images.tobytes() == q.images.tobytes() and p.labels.tobytes() == q.labels.tobytes()
        assert p.images.dtype == np.uint8 and p.images.flags.c_contiguous and p.labels.dtype == np.int64
    stream = train_stream(x, y)
    assert [b.images.tobytes() for b in stream] == [b.images.tobytes() for b in stream]  # re-iterable


def test_epochs_and_seeds_reshuffle_and_every_image_appears_once():
    x, y = tagged(50)
    orders = {}
    for seed, epoch in [(1, 0), (1, 1), (2, 0)]:
        _, labels = collect(train_stream(x, y, seed=seed, epoch=epoch))
        assert sorted(labels) == list(range(50))
        orders[seed, epoch] = labels
    assert not np.array_equal(orders[1, 0], orders[1, 1])
    assert not np.array_equal(orders[1, 0], orders[2, 0])


def test_lengths_and_drop_last():
    x, y = tagged(50)
    keep = train_stream(x, y, batch_size=8)
    assert len(keep) == 7 and keep.num_images == 50 and [len(b.labels) for b in keep][-1] == 2
    drop = train_stream(x, y, batch_size=8, drop_last=True)
    assert len(drop) == 6 and drop.num_images == 48 and {len(b.labels) for b in drop} == {8}


def test_eval_stream_is_unshuffled_unaugmented_and_complete():
    x, y = tagged(21)
    stream = eval_stream(x, y, batch_size=8)
    images, labels = collect(stream)
    assert [len(b.labels) for b in stream] == [8, 8, 5]
    np.testing.assert_array_equal(labels, y)
    np.testing.assert_array_equal(images, x)


def test_bad_arguments():
    x, y = tagged(4)
    with pytest.raises(BenchError, match="unknown augmentation 'cutout'.*crop_flip"):
        train_stream(x, y, augment="cutout")
    with pytest.raises(BenchError, match="batch size"):
        train_stream(x, y, batch_size=0)
    with pytest.raises(ValueError, match="shard"):
        train_stream(x, y, shard=(2, 2))


# --- sharding -------------------------------------------------------------------------------

@pytest.mark.parametrize("drop_last", [False, True])
def test_shards_split_each_global_batch_disjointly(drop_last):
    x, y = tagged(50)
    world, per_rank = 3, 4
    single = list(train_stream(x, y, batch_size=per_rank * world, drop_last=drop_last))
    ranks = [list(train_stream(x, y, batch_size=per_rank, drop_last=drop_last, shard=(r, world)))
             for r in range(world)]
    seen = []
    for step, global_batch in enumerate(single):
        parts = [ranks[r][step] for r in range(world) if step < len(ranks[r])]
        for r, part in enumerate(parts):  # interleaved: rank r holds elements r::world
            np.testing.assert_array_equal(part.labels, global_batch.labels[r::world])
            # same image, same augmentation bytes, whatever the world size
            np.testing.assert_array_equal(part.images, global_batch.images[r::world])
        seen += [label for part in parts for label in part.labels]
    assert len(seen) == len(set(seen))  # disjoint
    assert len(seen) == (48 if drop_last else 50)  # covering (full global batches with drop_last)
    for r in range(world):
        stream = train_stream(x, y, batch_size=per_rank, drop_last=drop_last, shard=(r, world))
        assert len(stream) == len(ranks[r]) and stream.num_images == sum(len(b.labels) for b in ranks[r])


# --- augmentation ---------------------------------------------------------------------------

def reference_crop_flip(image: np.ndarray, top: int, left: int, flip: bool) -> np.ndarray:
    padded = np.zeros((40, 40, 3), dtype=np.uint8)
    padded[4:36, 4:36] = image
    crop = padded[top:top + 32, left:left + 32]
    return crop[:, ::-1] if flip else crop


def test_crop_flip_matches_a_per_image_reference():
    x, _ = tagged(64)
    params = draw_crop_flip(np.random.default_rng(5), 64)
    out = apply_crop_flip(x, params)
    for i in range(64):
        np.testing.assert_array_equal(out[i], reference_crop_flip(x[i], params.top[i], params.left[i], params.flip[i]))
    assert params.flip.any() and not params.flip.all()
    assert set(params.top) <= set(range(9)) and len(set(params.top)) > 3


def test_stream_applies_the_draws_of_each_image():
    x, y = tagged(30)
    stream = train_stream(x, y, batch_size=7)
    params = stream._params
    for batch in stream:
        for image, i in zip(batch.images, batch.labels):
            expected = reference_crop_flip(x[i], params.top[i], params.left[i], params.flip[i])
            np.testing.assert_array_equal(image, expected)


def test_flip_mirrors_about_half_the_images_and_leaves_the_rest():
    """``flip`` (the default when resizing to 224 px) mirrors left-right, nothing else."""
    x, y = tagged(40, size=8)
    stream = train_stream(x, y, batch_size=16, augment="flip", out_size=None)
    flags = stream._params
    assert 0 < flags.sum() < 40
    for batch in stream:
        for image, i in zip(batch.images, batch.labels):
            np.testing.assert_array_equal(image, x[i, :, ::-1] if flags[i] else x[i])


def test_every_augmentation_the_cli_offers_streams():
    from harness.config import AUGMENTS as cli_choices

    x, y = tagged(6, size=16)
    for name in cli_choices:
        assert len(collect(train_stream(x, y, batch_size=3, augment=name, out_size=24))[0]) == 6


def test_out_size_resizes_after_augmentation():
    x, y = tagged(10)
    plain = list(train_stream(x, y, batch_size=4))
    big = list(train_stream(x, y, batch_size=4, out_size=48))
    for p, b in zip(plain, big, strict=True):
        assert b.images.shape == (len(p.labels), 48, 48, 3) and b.images.dtype == np.uint8
        np.testing.assert_array_equal(b.images, resize(p.images, 48))


def test_random_resized_crop_matches_pillow_crop_resize_flip():
    x, y = tagged(12, size=40)
    stream = train_stream(x, y, batch_size=5, augment="random_resized_crop", out_size=56)
    params = stream._params
    area = params.height * params.width / (40 * 40)
    ratio = params.width / params.height
    assert area.min() >= 0.08 * 0.8 and area.max() <= 1.0 and ratio.min() > 0.6 and ratio.max() < 1.5
    for batch in stream:
        assert batch.images.shape[1:] == (56, 56, 3)
        for image, i in zip(batch.images, batch.labels):
            box = (params.left[i], params.top[i], params.left[i] + params.width[i], params.top[i] + params.height[i])
            ref = Image.fromarray(x[i]).crop(box).resize((56, 56), Image.BILINEAR)
            if params.flip[i]:
                ref = ref.transpose(Image.FLIP_LEFT_RIGHT)
            assert np.abs(image.astype(int) - np.asarray(ref)).max() <= 1


def test_random_resized_crop_parameters_follow_torchvision():
    p = draw_resized_crop(np.random.default_rng(0), 20000, 32, 32)
    area, ratio = p.height * p.width / 1024, p.width / p.height
    assert 0.4 < area.mean() < 0.6  # E[U(0.08, 1)] = 0.54, less rejected big boxes
    assert ratio.min() >= 0.6 and ratio.max() <= 1.5  # 3/4..4/3 up to pixel rounding
    assert (p.top >= 0).all() and (p.top + p.height <= 32).all()
    assert (p.left >= 0).all() and (p.left + p.width <= 32).all()
    # No random box fits a 2-pixel-wide image: torchvision's fallback, the whole width,
    # height round(2 / (3/4)) = 3, centred.
    sliver = draw_resized_crop(np.random.default_rng(0), 50, 2000, 2)
    assert (sliver.width == 2).all() and (sliver.height == 3).all()
    assert (sliver.top == (2000 - 3) // 2).all() and (sliver.left == 0).all()


# --- resize against Pillow ------------------------------------------------------------------

@pytest.mark.parametrize("src,dst", [((32, 32), (224, 224)), ((300, 300), (224, 224)),
                                     ((37, 53), (11, 29)), ((64, 48), (100, 20))])
def test_resize_matches_pillow_bilinear(src, dst):
    x = np.random.default_rng(1).integers(0, 256, size=(3, *src, 3), dtype=np.uint8)
    ours = resize(x, dst)
    assert ours.shape == (3, *dst, 3) and ours.dtype == np.uint8
    ref = np.stack([np.asarray(Image.fromarray(im).resize(dst[::-1], Image.BILINEAR)) for im in x])
    assert np.abs(ours.astype(int) - ref).max() <= 1


def test_resize_matrix_is_cached_normalised_and_identity_for_same_size():
    m = resize_matrix(300, 224)
    assert m is resize_matrix(300, 224) and not m.flags.writeable
    np.testing.assert_allclose(m.sum(axis=1), 1.0, rtol=1e-5)
    x = np.zeros((1, 8, 8, 3), dtype=np.uint8)
    assert resize(x, 8) is x


# --- prefetch -------------------------------------------------------------------------------

def _bench_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "bench-prefetch"]


def test_prefetch_yields_everything_in_order_and_has_len():
    x, y = tagged(30)
    stream = train_stream(x, y)
    fetched = prefetch(stream, depth=2)
    assert len(fetched) == len(stream)
    for a, b in zip(fetched, stream, strict=True):
        assert a.images.tobytes() == b.images.tobytes()
    assert not _bench_threads()


def test_prefetch_reraises_producer_errors():
    def produce():
        yield 1
        yield 2
        raise RuntimeError("disk on fire")

    got = []
    with pytest.raises(RuntimeError, match="disk on fire"):
        for item in prefetch(produce()):
            got.append(item)
    assert got == [1, 2]
    assert not _bench_threads()


def test_prefetch_stops_its_thread_when_the_consumer_stops_early():
    def endless():
        i = 0
        while True:
            yield i
            i += 1

    with prefetch(endless(), depth=3) as items:
        assert [next(items) for _ in range(5)] == [0, 1, 2, 3, 4]
    assert not _bench_threads()
    for item in prefetch(endless()):  # abandoned without close(): collected, then stopped
        if item == 3:
            break
    gc.collect()
    deadline = time.monotonic() + 2
    while _bench_threads() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not _bench_threads()
