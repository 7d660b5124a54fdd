"""Networks, as plain ``torch.nn`` modules."""

from __future__ import annotations

from torch import nn


class SmallCNN(nn.Sequential):
    """Two 3x3 conv blocks and a linear head: about 20k weights, sized for 8x8 digits on a CPU."""

    def __init__(self, num_classes: int = 10, in_channels: int = 1, width: int = 16):
        super().__init__(
            nn.Conv2d(in_channels, width, 3, padding=1),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
            nn.Conv2d(width, 2 * width, 3, padding=1),
            nn.BatchNorm2d(2 * width),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(2 * width * 4 * 4, num_classes),
        )
