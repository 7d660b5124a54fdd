"""Any images in the ImageFolder layout: ``<root>/train/<class>/*`` and ``<root>/test/<class>/*``.

Class names are the folder names (sorted), the same in both splits. Every image is decoded once,
as RGB, when a run starts; they must share one size, or ``image_size`` resizes each on loading.
Before any run, every file is opened and verified by Pillow (its header, and for PNG its
checksums: about 3 s for CIFAR-10's 60,000 files), so a file that is not an image is
named before any run; damage that only a full decode shows (a JPEG cut short) is named, file
and all, when the run decodes it.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from pathlib import Path

import numpy as np

from bench.data.images import DataError, ImageDataModule, Index

SPLITS = ("train", "test")


@cache
def _samples(folder: Path) -> tuple[list[str], list[tuple[str, int]], tuple[str, ...]]:
    """``(classes, [(path, class index)], classes without images)`` of one split's folder."""
    from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes, make_dataset

    classes, to_index = find_classes(str(folder))
    samples = make_dataset(str(folder), to_index, extensions=IMG_EXTENSIONS, allow_empty=True)
    counts = np.bincount([y for _, y in samples], minlength=len(classes))
    return classes, samples, tuple(classes[i] for i in np.flatnonzero(counts == 0))


def _unreadable_one(path: str) -> str | None:
    from PIL import Image

    try:
        with Image.open(path) as image:
            image.verify()
    except Exception as e:
        return f"{path} ({type(e).__name__}: {e})"
    return None


@cache
def _unreadable(folder: Path) -> tuple[str, ...]:
    """The files of a split's folder that Pillow cannot open and verify, with why."""
    _, samples, _ = _samples(folder)
    # One thread: the files are small and the work is mostly Python (threads only add).
    return tuple(f for f in map(_unreadable_one, (p for p, _ in samples)) if f)


def _decode(path: str, size: int | None) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(path) as image:
            image = image.convert("RGB")
            if size is not None and image.size != (size, size):
                image = image.resize((size, size), Image.Resampling.BILINEAR)
            return np.asarray(image)
    except Exception as e:
        raise DataError(
            f"data.root: {path} cannot be decoded as an image ({type(e).__name__}: {e}); "
            "remove or replace it"
        ) from None


class ImageFolderDataModule(ImageDataModule):
    """Images in ``root/train/<class>/`` and ``root/test/<class>/``."""

    def __init__(self, root: str, image_size: int | None = None, **kw):
        super().__init__(root, **kw)
        self.load_size = image_size

    @classmethod
    def index(cls, root: Path, **kw) -> Index:
        root = Path(root).resolve()
        layout = "DIR/train/<class>/*.jpg and DIR/test/<class>/*.jpg (the ImageFolder layout)"
        if not root.is_dir():
            raise DataError(f"data.root: no folder at {root}; expected {layout}")
        absent = [s for s in SPLITS if not (root / s).is_dir()]
        if absent:
            raise DataError(
                f"data.root: {root} has no {' or '.join(f'{s}/' for s in absent)} folder; "
                f"expected {layout}"
            )
        found = {}
        for split in SPLITS:
            try:
                found[split] = _samples(root / split)
            except FileNotFoundError as e:  # no class folders at all
                raise DataError(f"data.root: {e}; expected {layout}") from None
        (classes, train, empty_train), (test_classes, test, empty_test) = found.values()
        if classes != test_classes:
            raise DataError(
                f"data.root: train/ and test/ in {root} hold different class folders: "
                f"{', '.join(sorted(set(classes) ^ set(test_classes)))} in only one of them"
            )
        empty = [f"train/{c}" for c in empty_train] + [f"test/{c}" for c in empty_test]
        if empty:
            raise DataError(
                f"data.root: class folder(s) {', '.join(empty)} in {root} hold no images "
                "(.jpg, .jpeg, .png, .ppm, .bmp, .pgm, .tif, .tiff or .webp)"
            )
        bad = [f for split in SPLITS for f in _unreadable(root / split)]
        if bad:
            more = f" and {len(bad) - 5} more" if len(bad) > 5 else ""
            raise DataError(
                f"data.root: {len(bad)} file(s) in {root} are not readable images: "
                f"{'; '.join(bad[:5])}{more}; remove or replace them"
            )
        return Index(
            np.array([y for _, y in train], dtype=np.int64),
            np.array([y for _, y in test], dtype=np.int64),
            classes,
        )

    @classmethod
    def stored_size(cls, root: Path, image_size: int | None = None, **kw) -> int:
        """``image_size``, or the side of the first training image (the images must share
        it)."""
        if image_size is not None:
            return image_size
        _, samples, _ = _samples(Path(root).resolve() / "train")
        return int(_decode(samples[0][0], None).shape[0])

    def read(self, split: str, keep: np.ndarray) -> np.ndarray:
        _, samples, _ = _samples(self.root.resolve() / split)
        paths = [samples[i][0] for i in keep]
        # Decoding releases the GIL: threads use every core.
        with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
            images = list(pool.map(lambda p: _decode(p, self.load_size), paths, chunksize=256))
        sizes = {im.shape[:2] for im in images}
        if len(sizes) > 1:
            shown = ", ".join(f"{w}x{h}" for h, w in sorted(sizes)[:5])
            raise DataError(
                f"data.image_size: the images in {self.root / split} differ in size ({shown}"
                f"{', ...' if len(sizes) > 5 else ''}); set data.image_size=N to resize each to "
                "NxN when loading"
            )
        return np.stack(images)
