"""torchvision's ImageNet ResNets (v1.5) in Chainer links, for transfer learning.

ResNet-18/34 use BasicBlock, ResNet-50/101/152 the Bottleneck with the stride in the 3x3
``conv2`` ("v1.5", as torchvision; the original v1 strides in ``conv1``). The structure and
every layer name follow ``torchvision/models/resnet.py``, so a torchvision ``state_dict``
(minus ``num_batches_tracked``) loads by name. Stem: 7x7/2 conv, BN, ReLU, 3x3/2 max pool;
stages of 64, 128, 256, 512 planes; global average pooling; ``fc``.
"""
from __future__ import annotations

from .._compat import chainer
import chainer.functions as F

from harness.catalogue import BOTTLENECK_DEPTHS, IMAGENET_LAYERS
from harness.errors import BenchError

from .common import BasicBlock, BatchNorm, Bottleneck, ResNetBase, classifier_head, conv


class ResNetImageNet(ResNetBase):
    def __init__(self, *, depth: int, num_classes: int, head: str = "linear"):
        if depth not in IMAGENET_LAYERS:
            depths = ", ".join(map(str, IMAGENET_LAYERS))
            raise BenchError(f"ImageNet ResNet depth must be one of {depths}, not {depth}")
        super().__init__()
        block = Bottleneck if depth in BOTTLENECK_DEPTHS else BasicBlock
        with self.init_scope():
            self.conv1 = conv(3, 64, 7, stride=2, pad=3)
            self.bn1 = BatchNorm(64)
            in_planes = 64
            for index, (planes, n) in enumerate(zip((64, 128, 256, 512), IMAGENET_LAYERS[depth]), start=1):
                stride = 1 if index == 1 else 2
                blocks = []
                for b in range(n):
                    blocks.append(block(in_planes, planes, stride if b == 0 else 1))
                    in_planes = planes * block.expansion
                setattr(self, f"layer{index}", chainer.ChainList(*blocks))
            self.fc = classifier_head(512 * block.expansion, num_classes, head)

    def stem(self, x):
        h = F.relu(self.bn1(self.conv1(x)))
        # cover_all=False: Chainer's default (True) adds an extra output row/column where the
        # window would hang over the edge; torch's MaxPool2d (ceil_mode=False) does not.
        return F.max_pooling_2d(h, 3, stride=2, pad=1, cover_all=False)


def resnet_imagenet(*, depth: int, num_classes: int, head: str = "linear") -> ResNetImageNet:
    """torchvision ResNet-``depth`` (18, 34, 50, 101, 152) with a ``num_classes`` head."""
    return ResNetImageNet(depth=depth, num_classes=num_classes, head=head)
