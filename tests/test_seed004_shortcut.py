"""--shortcut seed004: seed 004's CIFAR ResNet block, a bug reproduced by name (issue 15 item 7).

The seed's ``BottleNeck`` (copied below from its appendix, Chainer 7) adds a 1x1 projection
only where the stride changes and no residual anywhere else. Our seed004 block must compute
exactly what it computed, and differ from option A exactly there: every stride-1 block loses
its identity, the stride-2 blocks project instead of zero-padding.
"""
from __future__ import annotations

import numpy as np
import pytest

from backends.chainer_impl._compat import chainer
import chainer.functions as F
import chainer.links as L

from backends.chainer_impl.models.common import BN_EPS, BasicBlock
from conftest import bench


class SeedBottleNeck(chainer.Chain):  # seed 004's resnet_cifar10.py, as written there
    def __init__(self, n_in, n_out, stride=1):
        self.shortcut = stride != 1
        super(SeedBottleNeck, self).__init__()
        with self.init_scope():
            self.conv1 = L.Convolution2D(n_in, n_out, ksize=3, stride=stride, pad=1, nobias=True)
            self.bn1 = L.BatchNormalization(n_out)
            self.conv2 = L.Convolution2D(n_out, n_out, ksize=3, stride=1, pad=1, nobias=True)
            self.bn2 = L.BatchNormalization(n_out)
            self.conv3 = L.Convolution2D(n_in, n_out, ksize=1, stride=stride, pad=0, nobias=True)
            self.bn3 = L.BatchNormalization(n_out)

    def __call__(self, x):
        h = F.relu(self.bn1(self.conv1(x)))
        h = self.bn2(self.conv2(h))
        if self.shortcut:
            h += self.bn3(self.conv3(x))
        h = F.relu(h)
        return h


def _randomise(link: chainer.Link, rng: np.random.Generator) -> None:
    for param in link.params():
        param.array[...] = rng.normal(0, 0.3, param.shape).astype(np.float32)
    for bn in (l for l in link.links() if isinstance(l, L.BatchNormalization)):
        bn.avg_mean[...] = rng.normal(0, 0.2, bn.avg_mean.shape).astype(np.float32)
        bn.avg_var[...] = rng.uniform(0.5, 1.5, bn.avg_var.shape).astype(np.float32)
        bn.eps = BN_EPS  # the seed ran Chainer's 2e-5; ours is torch's (models/common.py)


def _copy(seed: SeedBottleNeck, ours: BasicBlock) -> None:
    pairs = [(seed.conv1, ours.conv1), (seed.bn1, ours.bn1), (seed.conv2, ours.conv2), (seed.bn2, ours.bn2)]
    if seed.shortcut:
        pairs += [(seed.conv3, ours.downsample[0]), (seed.bn3, ours.downsample[1])]
    for src, dst in pairs:
        for (name, p), (_, q) in zip(sorted(src.namedparams()), sorted(dst.namedparams())):
            q.array[...] = p.array
        if isinstance(src, L.BatchNormalization):
            dst.avg_mean[...], dst.avg_var[...] = src.avg_mean, src.avg_var


@pytest.mark.parametrize("n_in, n_out, stride", [(16, 16, 1), (16, 32, 2), (32, 64, 2)])
def test_seed004_block_computes_what_the_seeds_code_did(n_in, n_out, stride):
    rng = np.random.default_rng(stride * n_out)
    seed = SeedBottleNeck(n_in, n_out, stride)
    _randomise(seed, rng)
    ours = BasicBlock(n_in, n_out, stride, shortcut="seed004")
    option_a = BasicBlock(n_in, n_out, stride, shortcut="A")
    _copy(seed, ours)
    x = rng.normal(0, 1, (2, n_in, 8, 8)).astype(np.float32)
    with chainer.using_config("train", False), chainer.no_backprop_mode():
        expected = seed(x).array
        got = ours(x).array
        assert np.allclose(got, expected, rtol=1e-5, atol=1e-5)
        if stride == 1:  # A adds the identity here; the seed added nothing
            _copy(seed, option_a)
            a_out = option_a(x).array
            assert not np.allclose(a_out, expected, atol=1e-3)
            assert np.allclose(a_out, F.relu(ours.bn2(ours.conv2(F.relu(ours.bn1(ours.conv1(x)))))
                                             + x).array, rtol=1e-5, atol=1e-5)
    # where it differs from A: no residual at stride 1, a projection (not zero padding) at stride 2
    assert ours.use_skip is (stride != 1) and option_a.use_skip
    assert (ours.downsample is None) == (stride == 1)
    if stride != 1:
        assert isinstance(ours.downsample, chainer.Sequential) and not isinstance(option_a.downsample, chainer.Sequential)


def test_torch_seed004_mirrors_chainer_and_matches_its_logits():
    from backends.torch_impl.models.resnet_cifar import resnet_cifar

    model = resnet_cifar(depth=20, num_classes=10, shortcut="seed004")
    blocks = {f"layer{i}.{b}": getattr(model, f"layer{i}")[b] for i in (1, 2, 3) for b in range(3)}
    projected = {name for name, block in blocks.items() if block.downsample is not None}
    assert projected == {"layer2.0", "layer3.0"}
    assert {name for name, block in blocks.items() if block.use_skip} == projected
    proc = bench("parity", "--model", "resnet8", "--shortcut", "seed004", "--threads", "1")
    assert proc.returncode == 0, proc.stdout + proc.stderr
