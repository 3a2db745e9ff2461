"""CIFAR ResNets of depth 6n+2 (He et al. 2016, "Deep Residual Learning for Image
Recognition", Sec. 4.2): a 3x3 conv with 16 filters, three stages of n basic blocks with
16/32/64 filters on 32/16/8-pixel maps, global average pooling and a linear classifier.

Layer names follow torchvision's ImageNet ResNet (``conv1``, ``bn1``, ``layer1.0.conv1``,
``downsample.0``, ``fc``) so weights map by name between frameworks and tools.

Parameter counts (num_classes=10), which the tests pin:
resnet20 option A 269,722 (the paper's "0.27M"); option B 272,474 (+2,752 for the two
projection shortcuts).
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from backends.torch_impl.models.common import SHORTCUTS, BasicBlock, classifier_head
from harness.errors import BenchError

STAGE_PLANES = (16, 32, 64)


def conv3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)


class ResNetCifar(nn.Module):
    """The 6n+2 network; ``blocks`` is n, the number of blocks per stage."""

    head_name = "fc"

    def __init__(self, *, blocks: int, num_classes: int, shortcut: str = "A",
                 head: str = "linear") -> None:
        super().__init__()
        self.conv1 = conv3x3(3, STAGE_PLANES[0])
        self.bn1 = nn.BatchNorm2d(STAGE_PLANES[0])
        self.relu = nn.ReLU(inplace=True)
        inplanes = STAGE_PLANES[0]
        for index, planes in enumerate(STAGE_PLANES):
            stride = 1 if index == 0 else 2
            layer = []
            for b in range(blocks):
                layer.append(BasicBlock(inplanes, planes, stride if b == 0 else 1, shortcut=shortcut))
                inplanes = planes
            setattr(self, f"layer{index + 1}", nn.Sequential(*layer))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = classifier_head(STAGE_PLANES[-1], num_classes, head)
        # torchvision's init (He et al. 2015); the harness overwrites it with its canonical
        # numpy weights, but a model built on its own should still train.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward_features(self, x: Tensor) -> Tensor:
        """Everything before ``fc``: the pooled 64-d feature vector."""
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return torch.flatten(self.avgpool(x), 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.forward_features(x))


def resnet_cifar(*, depth: int, num_classes: int, shortcut: str = "A",
                 head: str = "linear") -> ResNetCifar:
    """CIFAR ResNet-``depth`` (depth = 6n + 2: 8, 20, 32, 44, 56, 110)."""
    if depth < 8 or (depth - 2) % 6:
        raise ValueError(f"CIFAR ResNet depth must be 6n+2 with n >= 1, got {depth}")
    if shortcut not in SHORTCUTS:
        raise BenchError(
            f"unknown shortcut {shortcut!r}: choose 'A' (identity + zero padding, no parameters) "
            "'B' (1x1 projection where the shape changes) or 'seed004' (seed 004's bug: B's projection "
            "where the stride changes, no residual elsewhere)"
        )
    return ResNetCifar(blocks=(depth - 2) // 6, num_classes=num_classes, shortcut=shortcut, head=head)
