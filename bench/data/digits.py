"""scikit-learn's digits: 1,797 greyscale 8x8 images of 10 classes, shipped inside scikit-learn,
so the whole flow runs offline on a laptop CPU.

The dataset has no test split of its own: test and validation splits are carved from it,
stratified and fixed by ``split_seed`` (never by the run's seed); the test split is used only for
the final ``test_acc``.

With ``on_device`` (the default) the splits are moved to the run's device once and batches are
cut from them there (``bench.data.batches``); ``on_device=false`` feeds them through torch's
DataLoader instead, with the same batches.
"""

from __future__ import annotations

from functools import cache

import numpy as np
import pytorch_lightning as pl
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch.utils.data import DataLoader, TensorDataset

from bench.data.batches import DeviceBatches
from bench.data.contract import Shape
from bench.data.splits import (
    count_interval,
    fraction_interval,
    holds_throughout,
    missing_classes,
    size_of,
    split_indices,
)
from bench.rules import NON_NEGATIVE_INT, OPEN_FRACTION

CLASSES = [str(d) for d in range(10)]


@cache
def _labels() -> np.ndarray:
    return load_digits().target.astype(np.int64)


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
        on_device: bool = True,
    ):
        super().__init__()
        self.batch_size = batch_size
        self.on_device = on_device
        self.val_fraction = val_fraction
        self.test_fraction = test_fraction
        self.split_seed = split_seed
        self.splits: dict[str, TensorDataset] = {}
        self._placed: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    @classmethod
    def problems(cls, **kw) -> list[str]:
        """What makes these splits unusable, as ``'data.FIELD: ...'`` lines: a split without an
        image of every class. (The values themselves are checked with the rest of the config.)"""
        dm = cls(**kw)
        fractions = (dm.val_fraction, dm.test_fraction)
        if not all(OPEN_FRACTION[0](f) for f in fractions) or not NON_NEGATIVE_INT[0](
            dm.split_seed
        ):
            return []
        return split_problems(_labels(), CLASSES, *fractions, dm.split_seed)

    @classmethod
    def shape(cls, **kw) -> Shape:
        """What a model is built for (``bench.data.contract``)."""
        return Shape(cls.num_classes, cls.in_channels, cls.image_size)

    @classmethod
    def train_size(cls, **kw) -> int:
        """The number of training images, without building the data."""
        dm = cls(**kw)
        train, _, _ = split_indices(_labels(), dm.val_fraction, dm.test_fraction, dm.split_seed)
        return len(train)

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

    @property
    def device(self) -> torch.device:
        """The run's device (Lightning's, once a Trainer holds this module; else the CPU)."""
        trainer = self.trainer
        return trainer.strategy.root_device if trainer is not None else torch.device("cpu")

    def _batches(self, split: str, batch_size: int, shuffle: bool):
        if not self.on_device:
            # The shuffling order follows torch's global RNG, which the run's seed sets.
            return DataLoader(self.splits[split], batch_size=batch_size, shuffle=shuffle)
        held = self._placed.get(split)
        if held is None or held[0].device != self.device:
            held = tuple(t.to(self.device) for t in self.splits[split].tensors)
            self._placed[split] = held
        return DeviceBatches(*held, batch_size=batch_size, shuffle=shuffle)

    def train_dataloader(self, augmented: bool = True):
        """The training batches (never augmented), in a fresh order every epoch."""
        return self._batches("train", self.batch_size, shuffle=True)

    def val_dataloader(self):
        return self._batches("val", 512, shuffle=False)

    def test_dataloader(self):
        return self._batches("test", 512, shuffle=False)

    def prepare_batch(self, batch, train: bool):
        """A batch on the run's device as the network's input (already standardised)."""
        return batch


def split_problems(
    labels: np.ndarray,
    names: list[str],
    val_fraction: float,
    test_fraction: float,
    split_seed: int,
) -> list[str]:
    """Why ``split_indices`` cannot give training, validation and test splits that each hold
    every class, naming the fraction to change and the range that would work (the validation
    fraction when some value of it works with this test fraction, else the test fraction)."""
    n, k = len(labels), len(names)

    def parts(test_size, val_size):
        try:
            return split_indices(labels, val_size, test_size, split_seed)
        except ValueError:  # scikit-learn refuses: a part smaller than the classes, say
            return None

    def ok(test_size, val_size) -> bool:
        got = parts(test_size, val_size)
        return got is not None and not any(missing_classes(labels, p, k) for p in got)

    if ok(test_fraction, val_fraction):
        return []
    n_test = size_of(test_fraction, n)
    rest = n - n_test
    n_val = size_of(val_fraction, rest)
    sizes = {"training": rest - n_val, "validation": n_val, "test": n_test}
    small = [name for name, size in sizes.items() if size < k]
    got = parts(test_fraction, val_fraction)
    if small:
        what = "; ".join(
            f"the {name} split cannot hold one image of each of the {k} classes (at least "
            f"{k - sizes[name]} class{'es' * (k - sizes[name] != 1)} would have none)"
            for name in small
        )
    elif got is not None:
        empty = zip(sizes, (missing_classes(labels, p, k) for p in got), strict=True)
        what = "; ".join(
            f"the {name} split would have no image of class {', '.join(names[c] for c in cs)}"
            for name, cs in empty
            if cs
        )
    else:  # scikit-learn refuses to stratify: a class with a single image, say
        try:
            rest_index, _ = train_test_split(
                np.arange(n), test_size=test_fraction, stratify=labels, random_state=split_seed
            )
            few = np.flatnonzero(np.bincount(labels[rest_index], minlength=k) < 2)
        except ValueError:
            few = np.flatnonzero(np.bincount(labels, minlength=k) < 2)
        what = (
            f"class {', '.join(names[c] for c in few)} would have fewer than 2 images to split, "
            "too few to stratify"
            if len(few)
            else "scikit-learn cannot stratify these splits"
        )
    counts = count_interval(lambda m: ok(test_fraction, m), 1, rest - 1) if rest > 1 else None
    if counts is not None:
        field, value, other, total = "val_fraction", val_fraction, "test_fraction", rest
    else:
        counts = count_interval(lambda m: ok(m, val_fraction), 1, n - 1)
        field, value, other, total = "test_fraction", test_fraction, "val_fraction", n
    if counts is not None and not holds_throughout(
        (lambda m: ok(test_fraction, m))
        if field == "val_fraction"
        else (lambda m: ok(m, val_fraction)),
        *counts,
    ):
        counts = None  # not one range (never with digits' balanced classes)
    span = fraction_interval(*counts, total) if counts else None
    given = f"data.{other}={val_fraction if other == 'val_fraction' else test_fraction}"
    allowed = (
        f"a number in [{span[0]:g}, {span[1]:g}] here (with {given})"
        if span
        else f"none with {given}"
    )
    split = "{} training, {} validation and {} test images".format(*sizes.values())
    return [
        f"data.{field}: got {value}, which splits the {n} images into {split}: {what}; "
        f"allowed: {allowed}"
    ]
