"""ResNets in torchvision's layout, with a stem for small images and a width knob.

``resnet18`` is torchvision's ResNet-18: the same blocks (``torchvision.models.resnet.BasicBlock``),
the same module names and the same initialisation, so torchvision's ImageNet weights load into it
as they are. ``width`` scales every stage (64 is ResNet-18; 16 makes a network 16x cheaper for
CPU studies) and ``blocks`` sets the blocks per stage. ``stem="cifar"`` replaces the 7x7 stride-2
convolution and the max-pool with one 3x3 stride-1 convolution, the usual stem for 32x32 images.
The head is always ``fc``, new for the dataset's classes.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torchvision.models.resnet import BasicBlock, conv1x1

# The first layers: imagenet's 7x7 stride-2 convolution and max-pool, or one 3x3 stride-1
# convolution for 32x32 images.
STEMS = ("imagenet", "cifar")


class ResNet(nn.Module):
    def __init__(
        self,
        num_classes: int,
        in_channels: int = 3,
        stem: str = "imagenet",
        width: int = 64,
        blocks: Sequence[int] = (2, 2, 2, 2),
    ):
        super().__init__()
        if stem not in STEMS:
            raise ValueError(f"model.stem: got {stem!r}; allowed: {', '.join(STEMS)}")
        imagenet = stem == "imagenet"
        # The same modules, in the same order, as torchvision's ResNet.
        self.conv1 = nn.Conv2d(
            in_channels,
            width,
            7 if imagenet else 3,
            2 if imagenet else 1,
            3 if imagenet else 1,
            bias=False,
        )
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1) if imagenet else nn.Identity()
        self.inplanes = width
        for i, n in enumerate(blocks):
            planes = width * 2**i
            self.add_module(f"layer{i + 1}", self._stage(planes, n, stride=1 if i == 0 else 2))
        self.n_stages = len(blocks)
        self.fc = nn.Linear(self.inplanes, num_classes)
        # torchvision's initialisation
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)

    def _stage(self, planes: int, n: int, stride: int) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes:
            downsample = nn.Sequential(
                conv1x1(self.inplanes, planes, stride), nn.BatchNorm2d(planes)
            )
        layers = [BasicBlock(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes
        layers += [BasicBlock(planes, planes) for _ in range(1, n)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for i in range(self.n_stages):
            x = getattr(self, f"layer{i + 1}")(x)
        # A plain mean over the pixels: the same as adaptive average pooling to 1x1, and
        # deterministic on CUDA.
        return self.fc(torch.flatten(x.mean(dim=(2, 3)), 1))
