"""Build any model of :data:`harness.catalogue.MODELS` from a :class:`ModelSpec`.

``BUILDERS`` maps each catalogue family to its factory (torchvision's model registry, by
family), then the two experiments that act on a built model whatever its family are
applied: removing residual additions (``no_skip``) and freezing everything but the
classifier (``freeze="backbone"``). Mirrors ``backends/torch_impl/models/__init__.py``: the
same families, builder and layer names, so the canonical weights load into either framework.
"""
from __future__ import annotations

from typing import Callable

from .._compat import chainer

from harness.backend import ModelSpec
from harness.catalogue import ModelInfo, block_names, model_info
from harness.errors import BenchError

from .common import (FREEZE_MODES, BasicBlock, Bottleneck, backbone_is_frozen, classifier_head, freeze_backbone,
                     freeze_links, set_no_skip)
from .resnet_cifar import resnet_cifar
from .resnet_imagenet import resnet_imagenet
from .small_cnn import small_cnn

__all__ = ["BUILDERS", "build_model", "set_no_skip", "freeze_backbone", "classifier_head",
           "BasicBlock", "Bottleneck", "resnet_cifar", "resnet_imagenet", "small_cnn",
           "freeze_links", "backbone_is_frozen"]


def _small_cnn(spec: ModelSpec, info: ModelInfo) -> chainer.Chain:
    if spec.head != "linear":
        raise BenchError(f"small_cnn has a fixed classifier: drop --head {spec.head} or pick a ResNet")
    return small_cnn(num_classes=spec.num_classes, image_size=spec.image_size)


# catalogue family -> factory(spec, info)
BUILDERS: dict[str, Callable[[ModelSpec, ModelInfo], chainer.Chain]] = {
    "resnet_cifar": lambda spec, info: resnet_cifar(
        depth=info.depth, num_classes=spec.num_classes, shortcut=spec.shortcut, head=spec.head),
    "resnet_imagenet": lambda spec, info: resnet_imagenet(
        depth=info.depth, num_classes=spec.num_classes, head=spec.head),
    "small_cnn": _small_cnn,
}


def build_model(spec: ModelSpec) -> chainer.Chain:
    """The network ``spec`` describes, on the CPU, with skip ablation and frozen-BatchNorm
    behaviour applied (parameter freezing needs the optimiser: see :func:`freeze_links`)."""
    info = model_info(spec.name)
    if spec.freeze not in FREEZE_MODES:
        raise BenchError(f"unknown freeze mode {spec.freeze!r}: choose one of {', '.join(FREEZE_MODES)}")
    if info.family not in BUILDERS:  # a catalogue entry without a builder is a bug, not a user error
        raise NotImplementedError(f"no Chainer builder for family {info.family!r}")
    model = BUILDERS[info.family](spec, info)
    model.name = spec.name
    set_no_skip(model, spec.no_skip, valid=block_names(info), model_name=spec.name)
    if spec.freeze == "backbone":
        freeze_backbone(model, trainable=(model.head_name, *spec.no_skip), train_bn=spec.train_bn)
    return model
