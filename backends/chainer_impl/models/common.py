"""Pieces shared by the model families: the residual blocks, the classifier head, and the
skip-ablation / freeze plumbing.

Mirrors ``backends/torch_impl/models/common.py`` symbol for symbol (``BasicBlock``,
``Bottleneck``, ``ZeroPadShortcut``, ``classifier_head``, ``set_no_skip``,
``freeze_backbone``). Chainer alone needs ``BatchNorm`` (torch's constants), ``conv``
(torchvision's init), ``ResNetBase`` (torchvision's ResNet.forward, which Chainer lacks) and
``freeze_links`` / ``backbone_is_frozen`` (parameters freeze through the optimiser's update
rules, which exist only after ``optimizer.setup``). Every model names its classifier
``head_name`` (``"fc"`` for the ResNets, ``"fc3"`` for small_cnn) and offers
``forward_features(x)``, the network up to that classifier (timm's name), so that freezing,
the feature cache and head-only training need no per-model code.
"""
from __future__ import annotations

from .._compat import chainer
import chainer.functions as F
import chainer.initializers as I
import chainer.links as L

from typing import Iterable, Sequence

from harness.errors import BenchError

HEADS = ("linear", "mlp")
FREEZE_MODES = ("none", "backbone")
SHORTCUTS = ("A", "B", "seed004")

# torch.nn.BatchNorm2d defaults. Chainer's own are eps=2e-5 and decay=0.9; decay is
# 1 - momentum, so 0.9 is torch's momentum 0.1, but eps has to be set or every normalised
# activation differs from torch's by ~1e-5 relative (more where the variance is small).
BN_EPS = 1e-5
BN_DECAY = 0.9


class BatchNorm(L.BatchNormalization):
    """BatchNormalization with torch's eps/momentum and a switch for frozen backbones.

    ``use_running_stats = True`` makes the layer normalise with its running statistics even in
    train mode and leave them untouched, as a frozen torch BatchNorm in ``eval()`` does while
    the rest of the network trains (dropout in the head stays active)."""

    def __init__(self, size: int):
        super().__init__(size, decay=BN_DECAY, eps=BN_EPS)
        self.use_running_stats = False

    def forward(self, x, **kwargs):
        if self.use_running_stats and chainer.config.train:
            with chainer.using_config("train", False):
                return super().forward(x, **kwargs)
        return super().forward(x, **kwargs)


def conv(in_ch: int, out_ch: int, ksize: int, stride: int = 1, pad: int | None = None,
         bias: bool = False) -> L.Convolution2D:
    """Convolution with torchvision's init (Kaiming normal, fan_out); the harness overwrites it
    with its canonical weights anyway, this only makes a freshly built model sensible."""
    pad = ksize // 2 if pad is None else pad
    return L.Convolution2D(in_ch, out_ch, ksize, stride=stride, pad=pad, nobias=not bias,
                           initialW=I.HeNormal(fan_option="fan_out"))


class ZeroPadShortcut(chainer.Link):
    """Option A of He et al. 2016 (sec. 4.2): subsample by 2 and zero-pad the new channels,
    ``planes // 4`` on each side (16 -> 32 channels: 8 zeros + 16 + 8 zeros). No parameters,
    so it is kept outside ``init_scope`` and names no state."""

    def __init__(self, planes: int):
        super().__init__()
        self.pad = planes // 4

    def forward(self, x):
        x = x[:, :, ::2, ::2]
        return F.pad(x, ((0, 0), (self.pad, self.pad), (0, 0), (0, 0)), mode="constant")


class BasicBlock(chainer.Chain):
    """Two 3x3 convolutions and a residual connection (torchvision's ``BasicBlock``).

    ``shortcut`` chooses what the residual path does when the shape changes: ``"B"`` (and the
    ImageNet models) a 1x1 projection ``downsample`` = Sequential(conv1x1, BN); ``"A"`` the
    parameter-free :class:`ZeroPadShortcut`. The identity shortcut is used in *every* block
    whose shape does not change (except ``"seed004"``: B's projection, and no residual at all
    where the shape stays, as seed 004's code did). ``use_skip = False`` removes the residual addition (ablation)."""

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, *, shortcut: str = "B"):
        super().__init__()
        self.use_skip = True
        with self.init_scope():
            self.conv1 = conv(inplanes, planes, 3, stride)
            self.bn1 = BatchNorm(planes)
            self.conv2 = conv(planes, planes, 3, 1)
            self.bn2 = BatchNorm(planes)
            if (stride != 1 or inplanes != planes) and shortcut != "A":
                self.downsample = chainer.Sequential(conv(inplanes, planes, 1, stride), BatchNorm(planes))
        if not hasattr(self, "downsample"):
            self.downsample = ZeroPadShortcut(planes) if stride != 1 or inplanes != planes else None
        if shortcut == "seed004" and self.downsample is None:
            # Seed 004's block added its 1x1 projection only where the stride changes and
            # nothing elsewhere: those blocks have no residual at all. A bug, reproduced by
            # name so its numbers can be re-run; "A" and "B" are the paper's.
            self.use_skip = False

    def forward(self, x):
        h = F.relu(self.bn1(self.conv1(x)))
        h = self.bn2(self.conv2(h))
        if self.use_skip:
            h = h + (x if self.downsample is None else self.downsample(x))
        return F.relu(h)


class Bottleneck(chainer.Chain):
    """torchvision's Bottleneck (v1.5): 1x1 reduce, 3x3 (strided), 1x1 expand x4, plus the
    shortcut. ``use_skip = False`` removes the residual addition (ablation)."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1):
        super().__init__()
        self.use_skip = True
        out_planes = planes * self.expansion
        with self.init_scope():
            self.conv1 = conv(inplanes, planes, 1)
            self.bn1 = BatchNorm(planes)
            self.conv2 = conv(planes, planes, 3, stride)
            self.bn2 = BatchNorm(planes)
            self.conv3 = conv(planes, out_planes, 1)
            self.bn3 = BatchNorm(out_planes)
            if stride != 1 or inplanes != out_planes:
                self.downsample = chainer.Sequential(conv(inplanes, out_planes, 1, stride), BatchNorm(out_planes))
        if not hasattr(self, "downsample"):
            self.downsample = None

    def forward(self, x):
        h = F.relu(self.bn1(self.conv1(x)))
        h = F.relu(self.bn2(self.conv2(h)))
        h = self.bn3(self.conv3(h))
        if self.use_skip:
            h = h + (x if self.downsample is None else self.downsample(x))
        return F.relu(h)


class MLPHead(chainer.ChainList):
    """Linear(in, 512)-ReLU-Dropout(0.2)-Linear(512, classes). Chainer's ChainList numbers only
    its links ("0", "1"); torch's Sequential numbers every module, so the two Linears are
    ``fc.0`` and ``fc.3`` there. ``canonical_child_names`` tells weights.py the mapping."""

    canonical_child_names = {"0": "0", "1": "3"}

    def __init__(self, in_features: int, num_classes: int):
        super().__init__(L.Linear(in_features, 512), L.Linear(512, num_classes))

    def forward(self, x):
        h = F.dropout(F.relu(self[0](x)), ratio=0.2)
        return self[1](h)


def classifier_head(in_features: int, num_classes: int, head: str = "linear") -> chainer.Link:
    """``"linear"``: one Linear, torchvision's ``fc``. ``"mlp"``: see :class:`MLPHead`."""
    if head == "linear":
        return L.Linear(in_features, num_classes)
    if head == "mlp":
        return MLPHead(in_features, num_classes)
    raise BenchError(f"unknown head {head!r}: choose one of {', '.join(HEADS)}")


class ResNetBase(chainer.Chain):
    """What the CIFAR and ImageNet ResNets share: stages ``layer1..`` of blocks, global
    average pooling, the head ``fc``. Subclasses define ``stem(x)`` and the stages."""

    head_name = "fc"

    def stem(self, x):
        raise NotImplementedError

    def stages(self) -> list[chainer.ChainList]:
        return [getattr(self, f"layer{i}") for i in range(1, 5) if hasattr(self, f"layer{i}")]

    def blocks(self) -> dict[str, chainer.Link]:
        """Every residual block by its canonical name (``layer2.5``)."""
        return {f"layer{s + 1}.{b}": block for s, stage in enumerate(self.stages())
                for b, block in enumerate(stage)}

    def forward_features(self, x):
        h = self.stem(x)
        for stage in self.stages():
            for block in stage:
                h = block(h)
        return F.mean(h, axis=(2, 3))

    def forward(self, x):
        return self.fc(self.forward_features(x))


def set_no_skip(model: chainer.Chain, names: Iterable[str], *, valid: Sequence[str], model_name: str) -> None:
    """Remove the residual addition of the blocks ``names`` (``"layer2.5"``). Parameter
    names do not change; re-initialising those blocks is the harness's business."""
    names = list(names)
    unknown = [n for n in names if n not in valid]
    if unknown and not valid:
        raise BenchError(f"{model_name} has no residual blocks: --no-skip applies to the ResNets only")
    if unknown:
        raise BenchError(f"{model_name} has no block {', '.join(unknown)}: valid blocks are "
                         f"{valid[0]} .. {valid[-1]} ({', '.join(valid)})")
    blocks = model.blocks() if hasattr(model, "blocks") else {}
    for name in names:
        blocks[name].use_skip = False


def freeze_backbone(model: chainer.Chain, *, trainable: Sequence[str], train_bn: bool = False) -> None:
    """Mark every parameter outside the head and the blocks ``trainable`` as frozen; frozen
    BatchNorms also stop updating running statistics unless ``train_bn``. The parameters
    themselves freeze through the optimiser's update rules, which exist only after
    ``optimizer.setup``: the backend then disables the links :func:`freeze_links` lists."""
    model.trainable_blocks = {name for name in trainable if name != model.head_name}
    model.frozen = True
    if not train_bn:
        for link in freeze_links(model):
            for sub in link.links():
                if isinstance(sub, BatchNorm):
                    sub.use_running_stats = True


def freeze_links(model: chainer.Chain) -> list[chainer.Link]:
    """The links whose parameters are frozen (empty unless ``freeze="backbone"``): every
    top-level child but the head and the stages, and every block not ablated."""
    if not getattr(model, "frozen", False):
        return []
    blocks = model.blocks() if hasattr(model, "blocks") else {}
    stages = {id(stage) for stage in getattr(model, "stages", list)()}
    top = [(name[1:], link) for name, link in model.namedlinks(skipself=True) if name.count("/") == 1]
    frozen = [link for name, link in top if name != model.head_name and id(link) not in stages]
    frozen += [block for name, block in blocks.items() if name not in model.trainable_blocks]
    return frozen


def backbone_is_frozen(model: chainer.Chain) -> bool:
    """True when no parameter before the head trains: the backbone can then run without
    building a backward graph at all."""
    return getattr(model, "frozen", False) and not model.trainable_blocks


