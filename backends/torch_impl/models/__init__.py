"""Build any model of :data:`harness.catalogue.MODELS` from a :class:`ModelSpec`.

One factory per family (``resnet_cifar``, ``resnet_imagenet``, ``small_cnn``), then the two
experiments that act on a built model whatever its family: removing residual additions
(``no_skip``) and freezing everything but the classifier (``freeze="backbone"``).
"""
from __future__ import annotations

from typing import Iterable, Sequence

from torch import nn

from backends.torch_impl.models.resnet_cifar import resnet_cifar
from backends.torch_impl.models.resnet_imagenet import resnet_imagenet
from backends.torch_impl.models.small_cnn import small_cnn
from harness.backend import ModelSpec
from harness.catalogue import block_names, model_info
from harness.errors import BenchError

FREEZE_MODES = ("none", "backbone")

__all__ = ["build_model", "set_no_skip", "freeze_backbone",
           "resnet_cifar", "resnet_imagenet", "small_cnn"]


def build_model(spec: ModelSpec) -> nn.Module:
    """The network ``spec`` describes, with torch's default init (the harness then loads
    its canonical weights). The result has ``head_name`` and ``forward_features``."""
    info = model_info(spec.name)
    if spec.freeze not in FREEZE_MODES:
        raise BenchError(f"unknown freeze mode {spec.freeze!r}: choose one of {', '.join(FREEZE_MODES)}")
    if info.family == "resnet_cifar":
        model: nn.Module = resnet_cifar(
            depth=info.depth, num_classes=spec.num_classes, shortcut=spec.shortcut, head=spec.head)
    elif info.family == "resnet_imagenet":
        model = resnet_imagenet(depth=info.depth, num_classes=spec.num_classes, head=spec.head)
    elif info.family == "small_cnn":
        if spec.head != "linear":
            raise BenchError(
                f"small_cnn has a fixed classifier: drop --head {spec.head} or pick a ResNet")
        model = small_cnn(num_classes=spec.num_classes, image_size=spec.image_size)
    else:  # a catalogue entry without a builder is a bug, not a user error
        raise NotImplementedError(f"no torch builder for family {info.family!r}")
    set_no_skip(model, spec.no_skip, valid=block_names(info), model_name=spec.name)
    if spec.freeze == "backbone":
        freeze_backbone(model, trainable=(model.head_name, *spec.no_skip), train_bn=spec.train_bn)
    return model


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
