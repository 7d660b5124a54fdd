"""Datasets, one module each, as Lightning data modules; the split logic is in ``splits``.

- ``digits``: scikit-learn's 8x8 digits, the embedded default (runs offline in seconds);
- ``cifar10``: CIFAR-10 in torchvision's layout;
- ``image_folder``: any images in the ImageFolder layout (``train/<class>/``, ``test/<class>/``).

Every data module tells the model what it needs: ``num_classes``, ``in_channels`` and
``image_size`` (after ``setup``).
"""

from bench.data.cifar10 import CIFAR10DataModule
from bench.data.digits import DigitsDataModule
from bench.data.image_folder import ImageFolderDataModule
from bench.data.images import DataError

__all__ = ["CIFAR10DataModule", "DataError", "DigitsDataModule", "ImageFolderDataModule"]
