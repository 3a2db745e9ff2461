"""Pieces shared by the model families: the residual blocks, the classifier head, and the
skip-ablation / freeze plumbing.

Mirrored symbol for symbol by ``backends/chainer_impl/models/common.py`` (``BasicBlock``,
``Bottleneck``, ``ZeroPadShortcut``, ``classifier_head``, ``set_no_skip``,
``freeze_backbone``). Every model names its classifier ``head_name`` (``"fc"`` for the
ResNets, ``"fc3"`` for small_cnn) and offers ``forward_features(x)``, the network up to that
classifier (timm's name), so that freezing, the feature cache and head-only training need no
per-model code.
"""
from __future__ import annotations

from typing import Any, Iterable, Sequence

from torch import Tensor, nn
from torch.nn import functional as F
from torchvision.models import resnet as tv

from harness.errors import BenchError

HEADS = ("linear", "mlp")
FREEZE_MODES = ("none", "backbone")
SHORTCUTS = ("A", "B", "seed004")


class ZeroPadShortcut(nn.Module):
    """Option A of He et al. 2016 (sec. 4.2): "the shortcut still performs identity mapping,
    with extra zero entries padded for increasing dimensions" and stride 2 by subsampling. No
    parameters, so the CIFAR ResNets keep the paper's parameter counts. Assumes planes =
    2 * in_planes, which holds at every stage transition (16->32->64)."""

    def __init__(self, planes: int) -> None:
        super().__init__()
        self.pad = planes // 4

    def forward(self, x: Tensor) -> Tensor:
        # F.pad pads the last dims first: (W left, W right, H top, H bottom, C front, C back).
        return F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, self.pad, self.pad))


class BasicBlock(tv.BasicBlock):
    """torchvision's BasicBlock (conv3x3-BN-ReLU-conv3x3-BN, plus the shortcut, then ReLU).

    ``shortcut`` (the CIFAR ResNets) builds the shortcut where the shape changes: ``"A"``
    :class:`ZeroPadShortcut`, ``"B"`` torchvision's 1x1 projection ``downsample``
    (``"seed004"``: B's projection there, and no residual where the shape stays); the
    ImageNet ResNets pass torchvision's ``downsample`` instead. ``use_skip = False`` removes
    the residual addition (the skip-ablation experiment) and leaves every parameter name in
    place, so the same weights files still load."""

    use_skip = True

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None,
                 *args: Any, shortcut: str | None = None, **kwargs: Any) -> None:
        super().__init__(inplanes, planes, stride, downsample, *args, **kwargs)
        if shortcut is not None and downsample is None and (stride != 1 or inplanes != planes):
            # Built after the convolutions, as round 1 did, so torch's default init draws
            # the same numbers in the same order.
            self.downsample = ZeroPadShortcut(planes) if shortcut == "A" else nn.Sequential(
                nn.Conv2d(inplanes, planes, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(planes),
            )
        if shortcut == "seed004" and self.downsample is None:
            # Seed 004's block added its 1x1 projection only where the stride changes and
            # nothing elsewhere: those blocks have no residual at all. A bug, reproduced by
            # name so its numbers can be re-run; "A" and "B" are the paper's.
            self.use_skip = False

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.use_skip:
            out = out + (x if self.downsample is None else self.downsample(x))
        return self.relu(out)


class Bottleneck(tv.Bottleneck):
    """torchvision's Bottleneck (v1.5: stride in the 3x3); ``use_skip = False`` drops
    ``out += identity``."""

    use_skip = True

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.use_skip:
            out = out + (x if self.downsample is None else self.downsample(x))
        return self.relu(out)


def classifier_head(in_features: int, num_classes: int, head: str = "linear") -> nn.Module:
    """``"linear"``: one Linear, torchvision's ``fc``. ``"mlp"``: Linear(in, 512)-ReLU-
    Dropout(0.2)-Linear(512, classes), a common transfer-learning head; its state names are
    ``fc.0.*`` and ``fc.3.*`` (Sequential indices), the same in every backend."""
    if head == "linear":
        return nn.Linear(in_features, num_classes)
    if head == "mlp":
        return nn.Sequential(
            nn.Linear(in_features, 512),
            nn.ReLU(inplace=True),
            nn.Dropout(0.2),
            nn.Linear(512, num_classes),
        )
    raise BenchError(f"unknown head {head!r}: choose one of {', '.join(HEADS)}")


def set_no_skip(model: nn.Module, names: Iterable[str], *, valid: Sequence[str],
                model_name: str) -> None:
    """Remove the residual addition of the blocks ``names`` (``"layer2.5"``). Parameter
    names do not change; re-initialising those blocks is the harness's business."""
    names = list(names)
    unknown = [n for n in names if n not in valid]
    if unknown and not valid:
        raise BenchError(f"{model_name} has no residual blocks: --no-skip applies to the ResNets only")
    if unknown:
        raise BenchError(f"{model_name} has no block {', '.join(unknown)}: valid blocks are {_ranges(valid)}")
    for name in names:
        model.get_submodule(name).use_skip = False


def _ranges(blocks: Sequence[str]) -> str:
    """``layer1.0 to layer1.2, layer2.0 to layer2.7, ...``: resnet152 has 50 blocks."""
    last: dict[str, str] = {}
    for name in blocks:
        stage, _, index = name.partition(".")
        last[stage] = index
    return ", ".join(f"{s}.0 to {s}.{i}" if i != "0" else f"{s}.0" for s, i in last.items())


def _under(name: str, prefixes: Sequence[str]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def _stay_in_eval(module: nn.Module, args: tuple) -> None:
    """Forward pre-hook for a frozen BatchNorm: whatever ``model.train()`` set, normalise
    with the stored running statistics and leave them untouched."""
    module.training = False


def freeze_backbone(model: nn.Module, *, trainable: Sequence[str], train_bn: bool = False) -> None:
    """Stop gradients for every parameter outside the modules ``trainable`` (the head and
    any ablated blocks). Frozen BatchNorms also stop updating running statistics unless
    ``train_bn``: a forward pre-hook keeps them in eval mode, which survives any later
    ``model.train()`` without subclassing torchvision's ResNet (mmdetection's ``norm_eval``
    gets the same effect by overriding ``train``)."""
    for name, param in model.named_parameters():
        param.requires_grad_(_under(name, trainable))
    if train_bn:
        return
    for name, module in model.named_modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and not _under(name, trainable):
            module.register_forward_pre_hook(_stay_in_eval)
            module.eval()
