"""The PyTorch tutorial CNN that the seed experiment trained: three conv3x3(+bias)-ReLU-
maxpool2 stages (16/32/64 filters), then dropout 0.25 and three linear layers 512/256/classes.

At 224 pixels fc1 sees 64 x 28 x 28 = 50,176 inputs, so fc1 holds ~25.7M of the model's
~26M parameters: this network is dominated by one dense layer, unlike the ResNets.
"""
from __future__ import annotations

from .._compat import chainer
import chainer.functions as F
import chainer.links as L

from .common import conv

DROPOUT = 0.25


class SmallCNN(chainer.Chain):
    """Forward order is the tutorial's: pool(relu(conv)) x 3, flatten, dropout, relu(fc1),
    dropout, relu(fc2), fc3. Its classifier (what ``freeze=backbone`` leaves trainable and
    head-only training fits) is ``fc3``; the features are the 256 outputs of fc2, as in
    ``backends/torch_impl/models/small_cnn.py``."""

    head_name = "fc3"

    def __init__(self, *, num_classes: int, image_size: int):
        if image_size < 8:
            raise ValueError(f"small_cnn needs images of at least 8 pixels, got {image_size}")
        super().__init__()
        side = image_size // 8  # three floor-halvings by the max pools
        with self.init_scope():
            self.conv1 = conv(3, 16, 3, bias=True)
            self.conv2 = conv(16, 32, 3, bias=True)
            self.conv3 = conv(32, 64, 3, bias=True)
            self.fc1 = L.Linear(64 * side * side, 512)
            self.fc2 = L.Linear(512, 256)
            self.fc3 = L.Linear(256, num_classes)

    def forward_features(self, x):
        for layer in (self.conv1, self.conv2, self.conv3):
            # cover_all=False: floor the output size like torch's MaxPool2d (odd sides).
            x = F.max_pooling_2d(F.relu(layer(x)), 2, stride=2, cover_all=False)
        x = F.dropout(F.reshape(x, (x.shape[0], -1)), ratio=DROPOUT)  # NCHW flatten = torch's
        x = F.dropout(F.relu(self.fc1(x)), ratio=DROPOUT)
        return F.relu(self.fc2(x))

    def forward(self, x):
        return self.fc3(self.forward_features(x))


def small_cnn(*, num_classes: int, image_size: int) -> SmallCNN:
    """The tutorial CNN for ``image_size``-pixel square images."""
    return SmallCNN(num_classes=num_classes, image_size=image_size)
