"""Datasets and their splits.

The embedded default is scikit-learn's digits (1,797 greyscale 8x8 images, 10 classes), which ships
inside scikit-learn, so the whole flow runs offline on a laptop CPU.

Splits are fixed by ``split_seed``, never by the run's seed: every run of a sweep validates on the
same images, and the test split is used only for the final ``test_acc``.
"""

from __future__ import annotations

import numpy as np
import pytorch_lightning as pl
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch.utils.data import DataLoader, TensorDataset


def split_indices(
    labels: np.ndarray, val_fraction: float, test_fraction: float, split_seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stratified train/val/test index arrays; the same for a given ``split_seed``."""
    index = np.arange(len(labels))
    rest, test = train_test_split(
        index, test_size=test_fraction, stratify=labels, random_state=split_seed
    )
    train, val = train_test_split(
        rest, test_size=val_fraction, stratify=labels[rest], random_state=split_seed
    )
    return np.sort(train), np.sort(val), np.sort(test)


class DigitsDataModule(pl.LightningDataModule):
    """scikit-learn's digits as 1x8x8 tensors, standardised with the training split's statistics."""

    num_classes = 10
    in_channels = 1

    def __init__(
        self,
        batch_size: int = 64,
        val_fraction: float = 0.2,
        test_fraction: float = 0.2,
        split_seed: int = 0,
    ):
        super().__init__()
        self.batch_size = batch_size
        self.val_fraction = val_fraction
        self.test_fraction = test_fraction
        self.split_seed = split_seed
        self.splits: dict[str, TensorDataset] = {}

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        digits = load_digits()
        images = digits.images.astype(np.float32)[:, None, :, :]  # N x 1 x 8 x 8, values 0..16
        labels = digits.target.astype(np.int64)
        train, val, test = split_indices(
            labels, self.val_fraction, self.test_fraction, self.split_seed
        )
        mean, std = images[train].mean(), images[train].std()
        x = torch.from_numpy((images - mean) / std)
        y = torch.from_numpy(labels)
        self.splits = {
            name: TensorDataset(x[idx], y[idx])
            for name, idx in (("train", train), ("val", val), ("test", test))
        }

    def train_dataloader(self) -> DataLoader:
        # The shuffling order follows torch's global RNG, which the run's seed sets.
        return DataLoader(self.splits["train"], batch_size=self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.splits["val"], batch_size=512)

    def test_dataloader(self) -> DataLoader:
        return DataLoader(self.splits["test"], batch_size=512)
