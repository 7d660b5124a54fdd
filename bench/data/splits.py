"""Split logic: pure functions from label arrays to index arrays, no I/O.

Every split is fixed by ``split_seed``, never by a run's seed, so that every run of a sweep
trains, validates and tests on the same images.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
from sklearn.model_selection import train_test_split

from bench.rules import interval


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


# What makes a split unusable, and which sizes would do: for the checks made before any run.


def missing_classes(labels: np.ndarray, index: np.ndarray, k: int) -> list[int]:
    """The classes ``0..k-1`` with no image among ``labels[index]``."""
    return np.flatnonzero(np.bincount(labels[index], minlength=k) == 0).tolist()


def size_of(size: int | float, n: int) -> int:
    """How many of ``n`` images a split of ``size`` takes, as scikit-learn counts it: an int is
    a number of images, a float a fraction, rounded up."""
    return size if isinstance(size, int) else math.ceil(size * n)


def count_interval(ok: Callable[[int], bool], lo: int, hi: int, probes: int = 32):
    """The integers ``[a, b]`` within ``[lo, hi]`` where ``ok`` holds, taken to be one interval
    (as the sizes that leave every class in both parts of a stratified split are): found by
    probing evenly spaced points and bisecting towards each end. None when no probe holds."""
    if lo > hi:
        return None
    points = sorted({lo + (hi - lo) * i // probes for i in range(probes + 1)})
    middle = (lo + hi) / 2
    good = [p for p in points if ok(p)]
    if not good:
        return None
    start = min(good, key=lambda p: abs(p - middle))

    def edge(good: int, bad: int) -> int:  # the last point that holds from good towards bad
        while abs(bad - good) > 1:
            mid = (good + bad) // 2
            good, bad = (mid, bad) if ok(mid) else (good, mid)
        return good

    a = lo if ok(lo) else edge(start, lo)
    b = hi if ok(hi) else edge(start, hi)
    return a, b


def holds_throughout(ok: Callable[[int], bool], a: int, b: int, probes: int = 32) -> bool:
    """Whether ``ok`` holds at evenly spaced points of ``[a, b]``: a check that a
    ``count_interval`` is one (with a rare class, the sizes that keep it in both parts of a
    stratified split can come in bands)."""
    return all(ok(a + (b - a) * i // probes) for i in range(probes + 1))


def fraction_interval(a: int, b: int, n: int) -> tuple[float, float] | None:
    """Short printable fractions ``[low, high]`` whose split of ``n`` images takes between ``a``
    and ``b`` of them (``size_of``); None when no such bounds are found."""
    return interval(a / n, b / n, ok=lambda f: a <= size_of(f, n) <= b)
