"""torchvision's ImageNet ResNets (v1.5: stride 2 in the 3x3 conv of a bottleneck), with a
replaceable head and blocks whose residual addition can be switched off.

The architecture is torchvision's own: ``torchvision.models.resnet50(weights=None)`` is
``ResNet(Bottleneck, [3, 4, 6, 3])``, and that is what :func:`resnet_imagenet` builds, with
the block subclasses of ``common.py`` that only add the ``use_skip`` flag. State names and shapes are therefore
torchvision's (the tests compare them key by key), so torchvision's pretrained weights load.
"""
from __future__ import annotations

import torch
from torch import Tensor
from torchvision.models import resnet as tv

from backends.torch_impl.models.common import BasicBlock, Bottleneck, classifier_head
from harness.catalogue import BOTTLENECK_DEPTHS, IMAGENET_LAYERS


class ResNetImageNet(tv.ResNet):
    """torchvision's ResNet plus ``forward_features`` (everything before ``fc``)."""

    head_name = "fc"

    def forward_features(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return torch.flatten(self.avgpool(x), 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.forward_features(x))


def resnet_imagenet(*, depth: int, num_classes: int, head: str = "linear") -> ResNetImageNet:
    """ResNet-``depth`` (18, 34, 50, 101, 152) with a ``head`` for ``num_classes``."""
    if depth not in IMAGENET_LAYERS:
        raise ValueError(f"ImageNet ResNet depth must be one of {sorted(IMAGENET_LAYERS)}, got {depth}")
    block = Bottleneck if depth in BOTTLENECK_DEPTHS else BasicBlock
    model = ResNetImageNet(block, list(IMAGENET_LAYERS[depth]))
    model.fc = classifier_head(model.fc.in_features, num_classes, head)
    return model
