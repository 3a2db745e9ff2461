"""CIFAR ResNets (He et al. 2016, "Deep Residual Learning", sec. 4.2): 6n+2 layers.

A 3x3 stem of 16 channels, three stages of n BasicBlocks with 16, 32 and 64 channels (the
first block of stages 2 and 3 halves the map), global average pooling and ``fc``. ResNet-20
(n=3) with shortcut "A" has 272,474 parameters and reaches about 91.7 % on CIFAR-10 in the
paper's schedule. Layer names are torchvision's (conv1, bn1, layer1.0.conv1, ..., fc) so that
the same canonical weights load into this and ``backends/torch_impl/models/resnet_cifar.py``.
"""
from __future__ import annotations

from .._compat import chainer
import chainer.functions as F

from harness.errors import BenchError

from .common import SHORTCUTS, BasicBlock, BatchNorm, ResNetBase, classifier_head, conv


class ResNetCifar(ResNetBase):
    def __init__(self, *, depth: int, num_classes: int, shortcut: str = "A", head: str = "linear"):
        if (depth - 2) % 6 or depth < 8:
            raise BenchError(f"CIFAR ResNet depth must be 6n+2 (8, 20, 32, ...), not {depth}")
        if shortcut not in SHORTCUTS:
            raise BenchError(f"unknown shortcut {shortcut!r}: choose one of {', '.join(SHORTCUTS)}")
        super().__init__()
        n = (depth - 2) // 6
        with self.init_scope():
            self.conv1 = conv(3, 16, 3)
            self.bn1 = BatchNorm(16)
            in_planes = 16
            for index, (planes, stride) in enumerate(((16, 1), (32, 2), (64, 2)), start=1):
                blocks = []
                for b in range(n):
                    blocks.append(BasicBlock(in_planes, planes, stride if b == 0 else 1, shortcut=shortcut))
                    in_planes = planes
                setattr(self, f"layer{index}", chainer.ChainList(*blocks))
            self.fc = classifier_head(64, num_classes, head)

    def stem(self, x):
        return F.relu(self.bn1(self.conv1(x)))


def resnet_cifar(*, depth: int, num_classes: int, shortcut: str = "A", head: str = "linear") -> ResNetCifar:
    """CIFAR ResNet-``depth`` (depth = 6n+2) with shortcut option ``"A"`` or ``"B"``."""
    return ResNetCifar(depth=depth, num_classes=num_classes, shortcut=shortcut, head=head)
