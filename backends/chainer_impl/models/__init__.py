"""Chainer model builders, one factory per catalogue family (see harness/catalogue.py).

Mirrors ``backends/torch_impl/models/``: the same families, builder names and layer names, so
the harness's canonical weights load into either framework by name.
"""
from __future__ import annotations

from .._compat import chainer

from harness.backend import ModelSpec
from harness.catalogue import model_info
from harness.errors import BenchError

from .common import apply_spec, backbone_is_frozen, freeze_links
from .resnet_cifar import resnet_cifar
from .resnet_imagenet import resnet_imagenet
from .small_cnn import small_cnn

__all__ = ["build_model", "freeze_links", "backbone_is_frozen", "resnet_cifar", "resnet_imagenet", "small_cnn"]


def build_model(spec: ModelSpec) -> chainer.Chain:
    """The network ``spec`` names, on the CPU, with skip ablation and BatchNorm freezing
    applied (parameter freezing needs the optimiser: see :func:`freeze_links`)."""
    info = model_info(spec.name)
    if info.family == "resnet_cifar":
        model = resnet_cifar(depth=info.depth, num_classes=spec.num_classes, shortcut=spec.shortcut, head=spec.head)
    elif info.family == "resnet_imagenet":
        model = resnet_imagenet(depth=info.depth, num_classes=spec.num_classes, head=spec.head)
    elif info.family == "small_cnn":
        if spec.head != "linear":
            raise BenchError(f"small_cnn has a fixed classifier: drop --head {spec.head} or pick a ResNet")
        model = small_cnn(num_classes=spec.num_classes, image_size=spec.image_size)
    else:  # a catalogue entry without a builder is a bug in bench, not a user error
        raise ValueError(f"no Chainer builder for family {info.family!r}")
    model.name = spec.name
    return apply_spec(model, spec, info)
