"""Pieces shared by the model families: the classifier head.

Every model names its classifier ``head_name`` (``"fc"`` for the ResNets) and offers
``forward_features(x)``, the network up to that classifier (timm's ``forward_features``),
so that freezing, the feature cache and head-only training need no per-model code.
"""
from __future__ import annotations

from torch import nn

from harness.errors import BenchError

HEADS = ("linear", "mlp")


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
