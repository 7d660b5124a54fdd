"""Datasets, one module each, as Lightning data modules; the split logic is in ``splits``.

- ``digits``: scikit-learn's 8x8 digits, the embedded default (runs offline in seconds);
- ``cifar10``: CIFAR-10 in torchvision's layout;
- ``image_folder``: any images in the ImageFolder layout (``train/<class>/``, ``test/<class>/``).

What bench needs of a data module, bench's own or a user's, is written in ``contract``: a
LightningDataModule with ``num_classes``; everything else is optional.
"""

from bench.data.cifar10 import CIFAR10DataModule
from bench.data.contract import DataModule, Shape
from bench.data.digits import DigitsDataModule
from bench.data.image_folder import ImageFolderDataModule
from bench.data.images import DataError

__all__ = [
    "CIFAR10DataModule",
    "DataError",
    "DataModule",
    "DigitsDataModule",
    "ImageFolderDataModule",
    "Shape",
]
