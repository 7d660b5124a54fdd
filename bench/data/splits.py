"""Split logic: pure functions from label arrays to index arrays, no I/O.

Every split is fixed by ``split_seed``, never by a run's seed, so that every run of a sweep
trains, validates and tests on the same images.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.model_selection import train_test_split


def split_indices(
    labels: np.ndarray, val_fraction: float, test_fraction: float, split_seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stratified train/val/test index arrays for a dataset without a test split of its own."""
    index = np.arange(len(labels))
    rest, test = train_test_split(
        index, test_size=test_fraction, stratify=labels, random_state=split_seed
    )
    train, val = train_test_split(
        rest, test_size=val_fraction, stratify=labels[rest], random_state=split_seed
    )
    return np.sort(train), np.sort(val), np.sort(test)


def carve_val(
    labels: np.ndarray, val_size: int | float, split_seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """A stratified validation split out of a training set: ``(train, val)`` index arrays.

    ``val_size`` is a number of images (an int) or a fraction of the set (a float in (0, 1)).
    """
    index = np.arange(len(labels))
    train, val = train_test_split(
        index, test_size=val_size, stratify=labels, random_state=split_seed
    )
    return np.sort(train), np.sort(val)


def per_class(labels: np.ndarray, n: int | None, split_seed: int) -> np.ndarray:
    """Indices of ``n`` images of every class (all of them when ``n`` is None), chosen by
    ``split_seed``; a class with fewer than ``n`` images keeps all it has."""
    if n is None:
        return np.arange(len(labels))
    order = np.random.RandomState(split_seed).permutation(len(labels))
    keep = [order[labels[order] == c][:n] for c in np.unique(labels)]
    return np.sort(np.concatenate(keep))


def select_classes(
    labels: np.ndarray, names: Sequence[str], keep: Sequence[str | int] | None
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Keep only the classes in ``keep`` (names or indices), relabelled ``0..k-1`` in the order
    given: returns ``(indices, new labels, new class names)``."""
    if keep is None:
        return np.arange(len(labels)), labels, list(names)
    old = [names.index(c) if isinstance(c, str) else int(c) for c in keep]
    mapping = np.full(len(names), -1, dtype=np.int64)
    mapping[old] = np.arange(len(old))
    index = np.flatnonzero(mapping[labels] >= 0)
    return index, mapping[labels[index]], [names[i] for i in old]
