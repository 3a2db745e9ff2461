"""The models bench knows, described without any framework.

The harness validates ``--model`` and picks input size and normalisation from here, so it
never has to import a backend to reject a typo. Each backend builds every name listed here
(``backends/<fw>_impl/models/``) with the same layer names, so weights map by name.
"""
from __future__ import annotations

from dataclasses import dataclass

CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


SHORTCUTS = ("A", "B", "seed004")
"""CIFAR ResNet shortcuts: He et al.'s options A (identity + zero padding) and B (1x1
projection where the shape changes); seed004 reproduces seed 004's bug (B's projection where
the stride changes, no residual in any other block) so its numbers can be re-run."""


@dataclass(frozen=True)
class ModelInfo:
    name: str
    family: str  # "resnet_cifar" | "resnet_imagenet" | "small_cnn"
    image_size: int  # the input side the model is designed for (pixels)
    description: str
    depth: int = 0

    @property
    def mean(self) -> tuple[float, float, float]:
        return IMAGENET_MEAN if self.family == "resnet_imagenet" else CIFAR_MEAN

    @property
    def std(self) -> tuple[float, float, float]:
        return IMAGENET_STD if self.family == "resnet_imagenet" else CIFAR_STD

    @property
    def blocks_per_stage(self) -> tuple[int, ...]:
        """Blocks in each stage (layer1..): (n, n, n) for CIFAR ResNets, torchvision's lists otherwise."""
        if self.family == "resnet_cifar":
            n = (self.depth - 2) // 6
            return (n, n, n)
        if self.family == "resnet_imagenet":
            return IMAGENET_LAYERS[self.depth]
        return ()


# torchvision's stage depths (He et al. 2016, Table 1).
IMAGENET_LAYERS = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3), 50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3)}
BOTTLENECK_DEPTHS = (50, 101, 152)

MODELS: dict[str, ModelInfo] = {}
# resnet8 is the n=1 member of the 6n+2 family: the same code path as resnet20 at a third of
# the cost, which is what the test suite trains.
for _depth in (8, 20, 32, 44, 56, 110):
    MODELS[f"resnet{_depth}"] = ModelInfo(
        f"resnet{_depth}", "resnet_cifar", 32,
        f"CIFAR ResNet-{_depth} (He et al. 2016, 3 stages of 16/32/64 channels)", _depth)
for _depth in IMAGENET_LAYERS:
    MODELS[f"resnet{_depth}"] = ModelInfo(
        f"resnet{_depth}", "resnet_imagenet", 224,
        f"torchvision ResNet-{_depth} (v1.5), for transfer learning", _depth)
MODELS["small_cnn"] = ModelInfo(
    "small_cnn", "small_cnn", 224,
    "the PyTorch tutorial's CNN: 3 x (conv3x3+ReLU+maxpool), 3 linear layers with dropout 0.25")


def model_info(name: str) -> ModelInfo:
    from harness.errors import BenchError

    try:
        return MODELS[name]
    except KeyError:
        raise BenchError(
            f"unknown model {name!r}: choose one of {', '.join(MODELS)} (`bench list` shows them)"
        ) from None


def block_names(info: ModelInfo) -> list[str]:
    """Every residual block's name (``layer2.5``), as ``--no-skip`` accepts them."""
    return [f"layer{s + 1}.{b}" for s, n in enumerate(info.blocks_per_stage) for b in range(n)]
