"""Batched image transforms: pure tensor functions that run on the batch's own device.

Images travel as uint8 ``N x C x H x W`` batches and are turned into network inputs here, after
they reach the device: no per-image Python work and no worker processes on the hot path.
Random draws come from torch's generator on that device, which the run's seed sets.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def to_float(x: torch.Tensor) -> torch.Tensor:
    """uint8 in [0, 255] -> float32 in [0, 1], always a new tensor."""
    return x.to(torch.float32, copy=True).div_(255)


def random_crop(x: torch.Tensor, padding: int) -> torch.Tensor:
    """Pad every image by ``padding`` zeros on each side and crop it back to its size at an
    offset drawn per image, uniform over the ``(2 * padding + 1)^2`` positions (torchvision's
    ``RandomCrop(size, padding)``)."""
    if padding == 0:
        return x
    n, c, h, w = x.shape
    k = 2 * padding + 1
    padded = F.pad(x, (padding, padding, padding, padding)).contiguous()
    dy = torch.randint(0, k, (n,), device=x.device)
    dx = torch.randint(0, k, (n,), device=x.device)
    # Every window of the padded batch, as a view (no copy) indexed by the flat offset of its
    # first element; one index_select then copies out one window per image: a gather of whole
    # windows, not of single pixels (and a few times faster than advanced indexing).
    sn, sc, sh, sw = padded.stride()
    extent = (c - 1) * sc + (h - 1) * sh + (w - 1) * sw
    windows = padded.view(-1).as_strided((padded.numel() - extent, c, h, w), (1, sc, sh, sw))
    start = torch.arange(n, device=x.device) * sn + dy * sh + dx * sw
    return windows.index_select(0, start)


def random_flip(x: torch.Tensor) -> torch.Tensor:
    """Mirror each image left-right with probability 1/2."""
    flip = torch.rand(x.shape[0], 1, 1, 1, device=x.device) < 0.5
    if x.dtype == torch.uint8:  # a 0/1 blend: exact on integers, and faster than a select
        chosen = flip.to(torch.uint8)
        return x.flip(3) * chosen + x * (1 - chosen)
    return torch.where(flip, x.flip(3), x)


def normalize(x: torch.Tensor, mean, std, inplace: bool = False) -> torch.Tensor:
    """Per-channel ``(x - mean) / std``; with ``inplace``, written over ``x`` (the same numbers,
    without allocating two more batch-sized tensors)."""
    mean = torch.as_tensor(mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    std = torch.as_tensor(std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    if inplace:
        return x.sub_(mean).div_(std)
    return (x - mean) / std


def resize(x: torch.Tensor, size: int | None) -> torch.Tensor:
    """Bilinear resize of the whole batch to ``size x size`` (antialiased when shrinking)."""
    if size is None or tuple(x.shape[-2:]) == (size, size):
        return x
    return F.interpolate(
        x, size=(size, size), mode="bilinear", align_corners=False, antialias=size < x.shape[-1]
    )


def channel_stats(images: torch.Tensor, chunk: int = 4096) -> tuple[list[float], list[float]]:
    """Per-channel mean and standard deviation of uint8 images in [0, 1] units."""
    c = images.shape[1]
    total = torch.zeros(c, dtype=torch.float64)
    squares = torch.zeros(c, dtype=torch.float64)
    for start in range(0, len(images), chunk):
        part = images[start : start + chunk].to(torch.float64).div_(255)
        total += part.sum(dim=(0, 2, 3))
        squares += part.square().sum(dim=(0, 2, 3))
    count = images.shape[0] * images.shape[2] * images.shape[3]
    mean = total / count
    std = (squares / count - mean.square()).clamp_min(1e-12).sqrt()
    return mean.tolist(), std.tolist()


def prepare(
    x: torch.Tensor,
    mean,
    std,
    train: bool,
    crop_padding: int = 4,
    flip: bool = True,
    size: int | None = None,
) -> torch.Tensor:
    """A uint8 batch to network inputs: (when ``train``) random crop and flip, then per-channel
    normalisation, then a resize to ``size`` if set. (Cropping and flipping the uint8 images
    before they become floats moves a quarter of the bytes, for the same result.)"""
    if train:
        x = random_crop(x, crop_padding)
        if flip:
            x = random_flip(x)
    return resize(normalize(to_float(x), mean, std, inplace=True), size)
