"""CIFAR-10 (Krizhevsky, 2009): 50,000 training and 10,000 test images, 32x32, 10 classes.

Read from torchvision's on-disk layout, ``<root>/cifar-10-batches-py/`` (the pickled batches of
the official Python release); ``download=true`` has torchvision fetch and verify it first.

A file in a folder is data, never code: the batches are unpickled with an allow-list
(``_Batch``) that builds dicts, lists, strings, numbers and NumPy arrays and refuses anything
else, so a crafted batch file is named as not CIFAR-10 instead of running what it asks for.
"""

from __future__ import annotations

import pickle
from functools import cache
from pathlib import Path

import numpy as np

from bench.data.images import DataError, ImageDataModule, Index

SIDE = 32  # every image is SIDE x SIDE

FOLDER = "cifar-10-batches-py"
TRAIN_FILES = [f"data_batch_{i}" for i in range(1, 6)]
TEST_FILES = ["test_batch"]
META_FILE = "batches.meta"


# What unpickling a CIFAR-10 batch may build besides plain Python values: NumPy arrays, as the
# official release (Python 2's pickle protocol) and NumPy 2's protocols 2-5 store them.
_ALLOWED = {
    (module, name)
    for package in ("numpy.core", "numpy._core")
    for module, name in (
        (f"{package}.multiarray", "_reconstruct"),
        (f"{package}.multiarray", "scalar"),
        (f"{package}.numeric", "_frombuffer"),
    )
} | {("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")}  # bytes, protocol 2


class _Batch(pickle.Unpickler):
    """An unpickler that builds plain values and NumPy arrays only."""

    def find_class(self, module: str, name: str):
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"it asks to load {module}.{name}")


def _unpickle(path: Path) -> dict:
    """One pickled file of the release, read as data only (``_Batch``)."""
    try:
        with open(path, "rb") as f:
            entry = _Batch(f, encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as e:
        raise DataError(
            f"data.root: {path} is not a CIFAR-10 batch of torchvision's layout ({e}); nothing "
            "in it was run. Fetch the data again (data.download=true into an empty folder) or "
            "use data=image_folder"
        ) from e
    if not isinstance(entry, dict):
        raise DataError(f"data.root: {path} is not a CIFAR-10 batch (not a dict)")
    return entry


@cache
def _read_batches(folder: Path, names: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Images (uint8 ``N x 32 x 32 x 3``) and labels of the pickled batches ``names``."""
    images, labels = [], []
    for name in names:
        entry = _unpickle(folder / name)
        images.append(np.asarray(entry["data"], dtype=np.uint8).reshape(-1, 3, SIDE, SIDE))
        labels.append(np.asarray(entry["labels"], dtype=np.int64))
    return np.concatenate(images).transpose(0, 2, 3, 1), np.concatenate(labels)


class CIFAR10DataModule(ImageDataModule):
    """CIFAR-10 from torchvision's layout in ``root``; ``download`` fetches it if it is absent."""

    def __init__(self, root: str = "data", download: bool = False, **kw):
        super().__init__(root, **kw)
        self.download = download

    @staticmethod
    def folder(root: Path) -> Path:
        return Path(root) / FOLDER

    @classmethod
    def missing(cls, root: Path) -> list[Path]:
        folder = cls.folder(root)
        return [
            folder / n for n in (*TRAIN_FILES, *TEST_FILES, META_FILE) if not (folder / n).is_file()
        ]

    @classmethod
    def index(cls, root: Path, **kw) -> Index:
        missing = cls.missing(root)
        if missing:
            raise DataError(
                f"data.root: CIFAR-10 is not in {Path(root).resolve()}: looked for "
                f"{FOLDER}/ with {', '.join(p.name for p in missing)} (torchvision's layout). "
                "Fetch it with data.download=true (needs the internet), or point at images in "
                "the ImageFolder layout with data=image_folder data.root=DIR "
                "(DIR/train/<class>/*.png and DIR/test/<class>/*.png)"
            )
        folder = cls.folder(root)
        classes = list(_unpickle(folder / META_FILE)["label_names"])
        return Index(
            _read_batches(folder, tuple(TRAIN_FILES))[1],
            _read_batches(folder, tuple(TEST_FILES))[1],
            classes,
        )

    @classmethod
    def stored_size(cls, root: Path, **kw) -> int:
        return SIDE

    def prepare_data(self) -> None:
        if self.download and self.missing(self.root):
            from torchvision.datasets import CIFAR10

            CIFAR10(str(self.root), train=True, download=True)
            CIFAR10(str(self.root), train=False, download=True)

    def read(self, split: str, keep: np.ndarray) -> np.ndarray:
        names = tuple(TRAIN_FILES if split == "train" else TEST_FILES)
        return _read_batches(self.folder(self.root), names)[0][keep]
