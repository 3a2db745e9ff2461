"""Forward FLOPs per image, counted from the architecture, once per model.

Counted analytically from the catalogue (not by a framework's profiler), so both backends
are credited with exactly the same work and "GFLOP/s achieved" compares frameworks, not
counters. Convention: one multiply-add = 2 FLOPs; convolutions and linear layers only
(BatchNorm, ReLU, pooling and additions are < 1 % of a ResNet's FLOPs). A training step is
taken as 3x the forward FLOPs (forward + backward w.r.t. activations and weights), the
usual estimate (Kaplan et al. 2020, sec. 2.1); with a frozen backbone the backbone's
backward is not needed, so only the head counts 3x.
"""
from __future__ import annotations

from harness.catalogue import BOTTLENECK_DEPTHS, ModelInfo


def _out(size: int, kernel: int, stride: int, pad: int) -> int:
    return (size + 2 * pad - kernel) // stride + 1


def _conv(size: int, cin: int, cout: int, k: int, stride: int = 1, pad: int | None = None) -> tuple[int, int]:
    """(MACs, output size) of a square convolution."""
    pad = k // 2 if pad is None else pad
    out = _out(size, k, stride, pad)
    return out * out * cout * cin * k * k, out


def _resnet_cifar(info: ModelInfo, size: int, shortcut: str) -> tuple[int, int]:
    macs, size = _conv(size, 3, 16, 3)
    cin = 16
    for stage, n in enumerate(info.blocks_per_stage):
        planes = 16 * 2**stage
        for b in range(n):
            stride = 2 if (stage > 0 and b == 0) else 1
            m1, out = _conv(size, cin, planes, 3, stride)
            m2, _ = _conv(out, planes, planes, 3)
            macs += m1 + m2
            if shortcut in ("B", "seed004") and (stride != 1 or cin != planes):
                macs += _conv(size, cin, planes, 1, stride, 0)[0]
            cin, size = planes, out
    return macs, cin


def _resnet_imagenet(info: ModelInfo, size: int) -> tuple[int, int]:
    macs, size = _conv(size, 3, 64, 7, 2, 3)
    size = _out(size, 3, 2, 1)  # max pool
    bottleneck = info.depth in BOTTLENECK_DEPTHS
    expansion = 4 if bottleneck else 1
    cin = 64
    for stage, n in enumerate(info.blocks_per_stage):
        planes = 64 * 2**stage
        for b in range(n):
            stride = 2 if (stage > 0 and b == 0) else 1
            cout = planes * expansion
            if bottleneck:  # v1.5: the stride sits in the 3x3 conv
                m1, _ = _conv(size, cin, planes, 1, 1, 0)
                m2, out = _conv(size, planes, planes, 3, stride)
                m3, _ = _conv(out, planes, cout, 1, 1, 0)
                macs += m1 + m2 + m3
            else:
                m1, out = _conv(size, cin, planes, 3, stride)
                m2, _ = _conv(out, planes, planes, 3)
                macs += m1 + m2
            if stride != 1 or cin != cout:
                macs += _conv(size, cin, cout, 1, stride, 0)[0]
            cin, size = cout, out
    return macs, cin


def _head(features: int, num_classes: int, head: str) -> int:
    return features * num_classes if head == "linear" else features * 512 + 512 * num_classes


def forward_flops(info: ModelInfo, *, image_size: int, num_classes: int, shortcut: str = "A",
                  head: str = "linear") -> tuple[int, int]:
    """(backbone FLOPs, head FLOPs) of one image's forward pass."""
    if info.family == "resnet_cifar":
        macs, features = _resnet_cifar(info, image_size, shortcut)
        return 2 * macs, 2 * features * num_classes
    if info.family == "resnet_imagenet":
        macs, features = _resnet_imagenet(info, image_size)
        return 2 * macs, 2 * _head(features, num_classes, head)
    macs, size, cin = 0, image_size, 3
    for cout in (16, 32, 64):
        m, size = _conv(size, cin, cout, 3)
        macs += m
        size //= 2
        cin = cout
    head_macs = 64 * size * size * 512 + 512 * 256 + 256 * num_classes
    return 2 * macs, 2 * head_macs


def train_flops_per_image(info: ModelInfo, *, image_size: int, num_classes: int, shortcut: str = "A",
                          head: str = "linear", frozen_backbone: bool = False) -> int:
    backbone, head_flops = forward_flops(info, image_size=image_size, num_classes=num_classes,
                                         shortcut=shortcut, head=head)
    return (backbone if frozen_backbone else 3 * backbone) + 3 * head_flops
