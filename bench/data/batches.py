"""Batches cut from tensors that already live on the run's device: the hot path of every run.

The whole split (uint8 images or float features, and labels) is moved to the device once; each
epoch draws its order and yields ``tensors[index]`` slices, so there are no worker processes,
no per-image Python and no host-to-device copy of images on the way to the network.

The epoch's order is drawn exactly as torch's ``DataLoader(shuffle=True)`` draws it (one seed
from torch's global generator for the loader, one for the sampler, then ``randperm`` on the
CPU), and evaluation passes draw the loader's seed too. So a run reads the same batches, and
consumes the global generator the same way, whether its data sits on the device or goes through
a DataLoader: the two paths give the same numbers.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch


class DeviceBatches:
    """Batches of ``batch_size`` rows of ``tensors`` (equal length, all on one device), in a
    fresh random order every pass when ``shuffle``, else in order; the last batch may be short.
    ``len()`` is the number of batches, as Lightning's loops and progress bars expect."""

    def __init__(self, *tensors: torch.Tensor, batch_size: int, shuffle: bool):
        if not tensors or any(len(t) != len(tensors[0]) for t in tensors):
            raise ValueError("DeviceBatches needs one or more tensors of equal length")
        self.tensors = tensors
        self.batch_size = batch_size
        self.shuffle = shuffle

    def __len__(self) -> int:
        return math.ceil(len(self.tensors[0]) / self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, ...]]:
        # (A generator: nothing is drawn until the first batch is asked for, so a loop that
        # makes an iterator only to check that it can is free, as it is for a DataLoader.)
        torch.empty((), dtype=torch.int64).random_()  # the seed a DataLoader draws for itself
        n = len(self.tensors[0])
        device = self.tensors[0].device
        if self.shuffle:  # RandomSampler's draw: a seed, then randperm on a CPU generator
            seed = int(torch.empty((), dtype=torch.int64).random_().item())
            order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
            order = order.to(device, non_blocking=True)
        for start in range(0, n, self.batch_size):
            if self.shuffle:
                index = order[start : start + self.batch_size]
                # the rows t[index], by index_select: many times faster than advanced indexing
                yield tuple(t.index_select(0, index) for t in self.tensors)
            else:
                yield tuple(t[start : start + self.batch_size] for t in self.tensors)
