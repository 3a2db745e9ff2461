"""The PyTorch tutorial CNN that the seed experiment trained: three conv3x3(+bias)-ReLU-
maxpool2 stages (16/32/64 filters), then dropout 0.25 and three linear layers 512/256/classes.

At 224 pixels fc1 sees 64 x 28 x 28 = 50,176 inputs, so fc1 holds ~25.7M of the model's
~26M parameters: this network is dominated by one dense layer, unlike the ResNets.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class SmallCNN(nn.Module):
    """Forward order is the tutorial's: pool(relu(conv)) x 3, flatten, dropout, relu(fc1),
    dropout, relu(fc2), fc3. Its classifier (what ``freeze=backbone`` leaves trainable and
    head-only training fits) is ``fc3``; the features are the 256 outputs of fc2."""

    head_name = "fc3"

    def __init__(self, *, num_classes: int, image_size: int) -> None:
        super().__init__()
        if image_size < 8:
            raise ValueError(f"small_cnn needs images of at least 8 pixels, got {image_size}")
        self.conv1 = nn.Conv2d(3, 16, kernel_size=3, padding=1)
        self.conv2 = nn.Conv2d(16, 32, kernel_size=3, padding=1)
        self.conv3 = nn.Conv2d(32, 64, kernel_size=3, padding=1)
        self.pool = nn.MaxPool2d(2, 2)
        self.dropout = nn.Dropout(0.25)
        side = image_size // 8  # three floor-halvings by the max pools
        self.fc1 = nn.Linear(64 * side * side, 512)
        self.fc2 = nn.Linear(512, 256)
        self.fc3 = nn.Linear(256, num_classes)

    def forward_features(self, x: Tensor) -> Tensor:
        x = self.pool(F.relu(self.conv1(x)))
        x = self.pool(F.relu(self.conv2(x)))
        x = self.pool(F.relu(self.conv3(x)))
        x = self.dropout(torch.flatten(x, 1))
        x = self.dropout(F.relu(self.fc1(x)))
        return F.relu(self.fc2(x))

    def forward(self, x: Tensor) -> Tensor:
        return self.fc3(self.forward_features(x))


def small_cnn(*, num_classes: int, image_size: int) -> SmallCNN:
    """The tutorial CNN for ``image_size``-pixel square images."""
    return SmallCNN(num_classes=num_classes, image_size=image_size)
