"""The digits splits: fixed by split_seed whatever the run's seed, disjoint, stratified."""

import numpy as np
import torch

from bench.data import DigitsDataModule


def setup(split_seed=0, torch_seed=0):
    torch.manual_seed(torch_seed)
    dm = DigitsDataModule(split_seed=split_seed)
    dm.setup()
    return dm


def labels(dm, split):
    return dm.splits[split].tensors[1].numpy()


def images(dm, split):
    return dm.splits[split].tensors[0].numpy()


def test_validation_split_does_not_depend_on_the_run_seed():
    a, b = setup(torch_seed=0), setup(torch_seed=123)
    for split in ("train", "val", "test"):
        assert np.array_equal(images(a, split), images(b, split))
    other = setup(split_seed=1)
    assert not np.array_equal(images(a, "val"), images(other, "val"))


def test_splits_are_disjoint_and_cover_digits():
    dm = setup()
    sizes = {s: len(dm.splits[s]) for s in ("train", "val", "test")}
    assert sum(sizes.values()) == 1797
    assert sizes == {"train": 1149, "val": 288, "test": 360}
    flat = {s: {row.tobytes() for row in images(dm, s)} for s in sizes}
    # digits has a few duplicate images; splits share at most those
    assert len(flat["train"] & flat["val"]) <= 2 and len(flat["train"] & flat["test"]) <= 2


def test_every_class_in_every_split_in_proportion():
    dm = setup()
    for split in ("train", "val", "test"):
        counts = np.bincount(labels(dm, split), minlength=10)
        assert counts.min() > 0
        assert counts.max() - counts.min() <= 0.05 * len(labels(dm, split)) + 2


def test_inputs_standardised_on_the_training_split():
    train = images(setup(), "train")
    assert abs(train.mean()) < 1e-5 and abs(train.std() - 1) < 1e-4
    assert train.shape[1:] == (1, 8, 8)


def test_split_indices_partition_the_data():
    from bench.data.splits import split_indices

    y = np.repeat(np.arange(10), 50)
    train, val, test = split_indices(y, val_fraction=0.2, test_fraction=0.2, split_seed=0)
    together = np.concatenate([train, val, test])
    assert sorted(together) == list(range(500))
    assert (len(train), len(val), len(test)) == (320, 80, 100)
