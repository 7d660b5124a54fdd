"""Colour-image datasets with a test split of their own: what they share.

The images are held as uint8 ``N x 3 x H x W`` tensors (CIFAR-10's 60,000 take 184 MB). With
``on_device`` (the default) every split is moved to the run's device (GPU memory, or CPU RAM)
once, batches are cut from it there (``bench.data.batches``), and augmentation and normalisation
run on the whole batch in tensor ops (``bench.data.augment``). With ``on_device=false``, for
data that does not fit on the device, training batches come from a torch DataLoader whose
``num_workers`` worker processes crop, flip and normalise each image with torchvision's
transforms: the same distribution of inputs, at a fraction of the speed.

Splits: the validation split (``val_size``) is carved, stratified, out of the training images and
fixed by ``split_seed``; ``train_per_class`` then keeps that many of the remaining training images
of every class, and ``test_per_class`` as many of every class of the test split, which is only
touched for the final test accuracy. ``classes`` keeps only some classes, relabelled ``0..k-1``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import (
    BatchSampler,
    DataLoader,
    RandomSampler,
    SequentialSampler,
    TensorDataset,
)

from bench.data import augment, splits
from bench.data.batches import DeviceBatches
from bench.data.contract import Shape
from bench.rules import COUNT, NON_NEGATIVE_INT

EVAL_BATCH = 1024


@dataclass
class Split:
    """One split's images (uint8 ``N x C x H x W``) and labels."""

    images: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return len(self.labels)


@dataclass
class Index:
    """What a dataset holds, read without decoding any image: every image's label per split,
    and the class names."""

    train_labels: np.ndarray
    test_labels: np.ndarray
    classes: list[str]


class ImageDataModule(pl.LightningDataModule):
    """A dataset of colour images with train and test splits; subclasses say how to read it."""

    in_channels: ClassVar[int] = 3

    def __init__(
        self,
        root: str,
        batch_size: int = 128,
        val_size: int | float = 5000,
        split_seed: int = 0,
        train_per_class: int | None = None,
        test_per_class: int | None = None,
        classes: Sequence[str | int] | None = None,
        augment: bool = True,
        normalize: str = "train",
        resize: int | None = None,
        on_device: bool = True,
        num_workers: int = 2,
    ):
        super().__init__()
        self.root = Path(root)
        self.batch_size = batch_size
        self.val_size = val_size
        self.split_seed = split_seed
        self.train_per_class = train_per_class
        self.test_per_class = test_per_class
        self.keep = list(classes) if classes is not None else None
        self.augment = augment
        self.normalize = normalize
        self.resize = resize
        self.on_device = on_device
        self.num_workers = num_workers
        self.splits: dict[str, Split] = {}
        self._placed: dict[str, Split] = {}  # the splits on the run's device
        self._stats: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}
        self.classes: list[str] = []
        self.mean: list[float] = []
        self.std: list[float] = []

    # What a subclass provides -------------------------------------------------------------

    @classmethod
    def index(cls, root: Path, **kw: Any) -> Index:
        """Labels and class names, read cheaply; raises ``DataError`` when the data is absent."""
        raise NotImplementedError

    def read(self, split: str, keep: np.ndarray) -> np.ndarray:
        """The uint8 ``N x H x W x 3`` images ``keep`` (indices into the index's labels) of
        ``split`` ("train" or "test")."""
        raise NotImplementedError

    # Shared -------------------------------------------------------------------------------

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def image_size(self) -> int:
        return self.resize or int(self.splits["train"].images.shape[-1])

    @classmethod
    def problems(cls, root: str, **kw: Any) -> list[str]:
        """What makes this data unusable, as ``'data.FIELD: ...'`` lines; reads no image."""
        try:
            index = cls.index(Path(root), **kw)
        except DataError as e:
            return [str(e)]
        return _split_problems(index, kw)

    @classmethod
    def stored_size(cls, root: Path, **kw: Any) -> int:
        """The side of the images as loaded (before ``resize``), read cheaply."""
        raise NotImplementedError

    @classmethod
    def shape(cls, root: str, **kw: Any) -> Shape:
        """What a model is built for (``bench.data.contract``), from the labels and at most one
        image."""
        dm = cls(root, **kw)
        n = len(dm.keep) if dm.keep is not None else len(cls.index(dm.root).classes)
        return Shape(n, cls.in_channels, dm.resize or cls.stored_size(dm.root, **kw))

    @classmethod
    def train_size(cls, **kw: Any) -> int:
        """The number of training images, from the labels alone (reads no image)."""
        dm = cls(**kw)
        (train, _), *_ = plan(
            cls.index(dm.root),
            dm.keep,
            dm.val_size,
            dm.split_seed,
            dm.train_per_class,
            dm.test_per_class,
        )
        return len(train)

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        index = self.index(self.root)
        knobs = {
            "classes": self.keep,
            "val_size": self.val_size,
            "train_per_class": self.train_per_class,
            "test_per_class": self.test_per_class,
            "split_seed": self.split_seed,
        }
        found = _split_problems(index, knobs)
        if found:
            raise DataError("; ".join(found))
        train, val, test, self.classes = plan(
            index,
            self.keep,
            self.val_size,
            self.split_seed,
            self.train_per_class,
            self.test_per_class,
        )
        self.splits = {
            "train": self._load("train", *train),
            "val": self._load("train", *val),
            "test": self._load("test", *test),
        }
        if self.normalize == "imagenet":
            self.mean, self.std = list(augment.IMAGENET_MEAN), list(augment.IMAGENET_STD)
        else:
            self.mean, self.std = augment.channel_stats(self.splits["train"].images)

    def _load(self, split: str, keep: np.ndarray, labels: np.ndarray) -> Split:
        images = torch.from_numpy(np.ascontiguousarray(self.read(split, keep)))
        return Split(images.permute(0, 3, 1, 2).contiguous(), torch.from_numpy(labels))

    @property
    def device(self) -> torch.device:
        """The run's device (Lightning's, once a Trainer holds this module; else the CPU)."""
        trainer = self.trainer
        return trainer.strategy.root_device if trainer is not None else torch.device("cpu")

    def placed(self, split: str) -> Split:
        """``split`` on the run's device, moved there once."""
        device = self.device
        held = self._placed.get(split)
        if held is None or held.images.device != device:
            data = self.splits[split]
            held = Split(data.images.to(device), data.labels.to(device))
            self._placed[split] = held
        return held

    def _loader(self, split: str, sampler) -> DataLoader:
        data = self.splits[split]
        # Each batch is one indexing of the in-memory tensors: no per-image Python work.
        return DataLoader(TensorDataset(data.images, data.labels), batch_size=None, sampler=sampler)

    def train_dataloader(self, augmented: bool = True):
        """The training batches, in a fresh order every epoch; ``augmented=False`` (BatchNorm
        recalibration) gives them as uint8 images, normalised only by ``prepare_batch``."""
        if self.on_device:
            data = self.placed("train")
            return DeviceBatches(data.images, data.labels, batch_size=self.batch_size, shuffle=True)
        data = self.splits["train"]
        if not augmented:  # in this process, drawn as the workers' loader draws its order
            batches = BatchSampler(RandomSampler(range(len(data))), self.batch_size, False)
            return self._loader("train", batches)
        return DataLoader(
            TransformedImages(data, self.image_transform(train=True)),
            batch_size=self.batch_size,
            shuffle=True,  # the order follows torch's global RNG, which the run's seed sets
            num_workers=self.num_workers,
            # Workers started afresh every epoch take their seeds from the global generator,
            # which checkpoints restore: a resumed run draws what an unstopped one would.
            persistent_workers=False,
            pin_memory=self.device.type == "cuda",
        )

    def val_dataloader(self):
        return self._eval_loader("val")

    def test_dataloader(self):
        return self._eval_loader("test")

    def _eval_loader(self, split: str):
        if self.on_device:
            data = self.placed(split)
            return DeviceBatches(data.images, data.labels, batch_size=EVAL_BATCH, shuffle=False)
        images = self.splits[split].images
        return self._loader(split, BatchSampler(SequentialSampler(images), EVAL_BATCH, False))

    def image_transform(self, train: bool):
        """The DataLoader path's per-image pipeline (torchvision's transforms on one uint8
        ``C x H x W`` image): the same crop, flip and normalisation as ``augment.prepare``."""
        from torchvision.transforms import v2

        steps = []
        if train and self.augment:
            size = tuple(self.splits["train"].images.shape[-2:])  # (height, width)
            steps += [v2.RandomCrop(size, padding=4)]
            steps += [v2.RandomHorizontalFlip()]
        steps += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(self.mean, self.std)]
        return v2.Compose(steps)

    def prepare_batch(self, batch, train: bool):
        """A batch on the run's device as the network's input: for data on the device, crop and
        flip (when ``train`` and ``augment``) and normalise the whole batch; a DataLoader's
        training batch comes already augmented and normalised. Then resize, if asked."""
        x, y = batch
        if x.dtype == torch.uint8:
            mean, std = self.stats_on(x.device)
            x = augment.prepare(x, mean, std, train=train and self.augment)
        return augment.resize(x, self.resize), y

    def stats_on(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """The normalisation's mean and std as tensors on ``device``, made once: building them
        from lists at every batch would copy them to a GPU and wait for it each time."""
        held = self._stats.get(device)
        if held is None:
            held = tuple(
                torch.tensor(v, dtype=torch.float32, device=device) for v in (self.mean, self.std)
            )
            self._stats[device] = held
        return held

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        training = self.trainer is not None and self.trainer.training
        return self.prepare_batch(batch, train=training)


class TransformedImages(torch.utils.data.Dataset):
    """One split's images, each passed through ``transform`` when read (in a DataLoader's
    worker process)."""

    def __init__(self, data: Split, transform):
        self.images, self.labels = data.images, data.labels
        self.transform = transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        return self.transform(self.images[i]), self.labels[i]


class DataError(ValueError):
    """Data that no run can use: absent, empty, or asked for in a way it cannot give."""


def plan(
    index: Index,
    keep: Sequence[str | int] | None,
    val_size: int | float,
    split_seed: int,
    train_per_class: int | None,
    test_per_class: int | None,
) -> tuple[Any, Any, Any, list[str]]:
    """Which images go to which split: ``((train indices, labels), (val ...), (test ...),
    class names)``, indices into the index's train and test labels. Pure."""
    train_idx, train_labels, names = splits.select_classes(index.train_labels, index.classes, keep)
    test_idx, test_labels, _ = splits.select_classes(index.test_labels, index.classes, keep)
    fit, val = splits.carve_val(train_labels, val_size, split_seed)
    fit = fit[splits.per_class(train_labels[fit], train_per_class, split_seed)]
    test = splits.per_class(test_labels, test_per_class, split_seed)
    return (
        (train_idx[fit], train_labels[fit]),
        (train_idx[val], train_labels[val]),
        (test_idx[test], test_labels[test]),
        names,
    )


def _split_problems(index: Index, kw: dict[str, Any]) -> list[str]:
    """Problems with the split knobs given what the data holds (their types are checked with
    the other config values in ``bench.config``)."""
    found = []
    keep = kw.get("classes")
    names = index.classes
    if keep is not None:
        listed = f"the classes are: {', '.join(names)} (or their indices 0..{len(names) - 1})"
        if not isinstance(keep, list | tuple) or len(keep) < 2:
            return [
                f"data.classes: got {keep!r}; allowed: null (all) or a list of 2 or more; {listed}"
            ]
        bad = [c for c in keep if not (c in names or NON_NEGATIVE_INT[0](c) and c < len(names))]
        if bad:
            return [f"data.classes: {bad!r} not in the data; {listed}"]
        picked = [c if isinstance(c, str) else names[c] for c in keep]
        if len(set(picked)) < len(picked):
            return [f"data.classes: got {keep!r}, which names a class twice"]
    _, train_labels, kept = splits.select_classes(index.train_labels, names, keep)
    _, test_labels, _ = splits.select_classes(index.test_labels, names, keep)
    k = len(kept)
    for split, labels in (("train", train_labels), ("test", test_labels)):
        counts = np.bincount(labels, minlength=k)
        empty = [kept[c] for c in np.flatnonzero(counts == 0)]
        if empty:
            found.append(f"data.root: the {split} split has no images of class {', '.join(empty)}")
    if found:
        return found
    val_size = kw.get("val_size")
    n = len(train_labels)
    if not (COUNT[0](val_size) or isinstance(val_size, float) and 0 < val_size < 1):
        return found + [
            f"data.val_size: got {val_size!r}; allowed: a number of images (an integer >= 1) "
            "or a fraction of the training images in (0, 1)"
        ]
    seed = kw.get("split_seed", 0)

    def carved(size: int | float):
        try:
            return splits.carve_val(train_labels, size, seed)
        except ValueError:  # scikit-learn refuses: a part smaller than the classes, say
            return None

    def ok(size: int | float) -> bool:
        parts = carved(size)
        return parts is not None and not any(
            splits.missing_classes(train_labels, p, k) for p in parts
        )

    if ok(val_size):
        return found
    n_val = splits.size_of(val_size, n)
    sizes = {"training": n - n_val, "validation": n_val}
    parts = carved(val_size)
    small = [name for name, size in sizes.items() if size < k]
    if small or parts is None:
        what = (
            "; ".join(
                f"the {name} split cannot hold one image of each of the {k} classes (at least "
                f"{k - sizes[name]} class{'es' * (k - sizes[name] != 1)} would have none)"
                for name in small
            )
            or "a class has fewer than 2 training images to split"
        )
    else:
        what = "; ".join(
            f"the {name} split would have no image of class "
            + ", ".join(kept[c] for c in splits.missing_classes(train_labels, p, k))
            for name, p in zip(sizes, parts, strict=True)
            if splits.missing_classes(train_labels, p, k)
        )
    counts = splits.count_interval(ok, 1, n - 1) if n > 1 else None
    span = splits.fraction_interval(*counts, n) if counts else None
    if counts is None:
        allowed = f"none: the {n} training images are too few for the {k} classes"
    elif not splits.holds_throughout(ok, *counts):
        fewest = np.bincount(train_labels, minlength=k).min()
        allowed = (
            "a size that leaves every class at least one image in both splits (the rarest "
            f"class has {fewest} training images; sizes near {counts[0]}..{counts[1]} may do)"
        )
    else:
        allowed = (
            f"an integer in [{counts[0]}, {counts[1]}]"
            + (f" or a fraction in [{span[0]:g}, {span[1]:g}]" if span else "")
            + " here"
        )
    found.append(
        f"data.val_size: got {val_size!r}, which leaves {n - n_val} training and {n_val} "
        f"validation images of {n}: {what}; allowed: {allowed}"
    )
    return found
