"""scikit-learn's digits: 1,797 greyscale 8x8 images of 10 classes, shipped inside scikit-learn,
so the whole flow runs offline on a laptop CPU.

The dataset has no test split of its own: test and validation splits are carved from it,
stratified and fixed by ``split_seed`` (never by the run's seed); the test split is used only for
the final ``test_acc``.
"""

from __future__ import annotations

import numpy as np
import pytorch_lightning as pl
import torch
from sklearn.datasets import load_digits
from torch.utils.data import DataLoader, TensorDataset

from bench.data.splits import split_indices


class DigitsDataModule(pl.LightningDataModule):
    """scikit-learn's digits as 1x8x8 tensors, standardised with the training split's statistics."""

    num_classes = 10
    in_channels = 1
    image_size = 8

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
