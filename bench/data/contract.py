"""What bench needs of a data module: the contract that its own modules and a user's meet.

**Required.** A data module is a plain ``pytorch_lightning.LightningDataModule`` (``DataModule``
below) whose ``train_dataloader()``, ``val_dataloader()`` and ``test_dataloader()`` give
``(inputs, labels)`` batches, labels being class indices, plus ``num_classes``: how many classes
the labels have (an integer >= 2), at the latest once ``setup("fit")`` has run. Its constructor
takes the keys of its config node (``data.KEY=VALUE``, ``+data.KEY=VALUE`` for a key the node
does not have yet).

**Optional**, each used where present:

- ``in_channels`` and ``image_size``: handed to a model factory that takes them;
- ``splits``, a mapping of split name to dataset: each split's size is recorded as ``n_<name>``;
- ``train_dataloader(augmented=False)``: the training batches without augmentation, for the
  BatchNorm recalibration of schedule-free optimizers (without the keyword, the plain training
  batches are used);
- ``on_after_batch_transfer``: Lightning's hook, where batches are prepared on the device;
- class methods that answer before any data is loaded: ``problems(**config) -> list[str]``
  (what makes this config unusable, one ``data.FIELD: ...`` line each), ``train_size(**config)
  -> int`` (the training images, for the check of the schedule against the run's steps) and
  ``shape(**config) -> Shape``. A module without ``shape`` is built, set up and its first
  training batch read when the configuration is checked, so that a broken module fails there,
  before any run, with a line that says what is wrong.
"""

from __future__ import annotations

import functools
import inspect
import json
from collections.abc import Iterable
from typing import NamedTuple, Protocol, runtime_checkable

METHODS = ("setup", "train_dataloader", "val_dataloader", "test_dataloader")


@runtime_checkable
class DataModule(Protocol):
    """The required part of the contract (see the module's docstring for the optional part)."""

    num_classes: int

    def setup(self, stage: str | None = None) -> None: ...

    def train_dataloader(self) -> Iterable: ...

    def val_dataloader(self) -> Iterable: ...

    def test_dataloader(self) -> Iterable: ...


class Shape(NamedTuple):
    """What the model is built for: the class count, and the input's channels and side where
    the data says them (None where it does not)."""

    num_classes: int
    in_channels: int | None = None
    image_size: int | None = None


def shape_of(datamodule) -> Shape:
    """The shape of a data module that is set up."""
    return Shape(
        datamodule.num_classes,
        getattr(datamodule, "in_channels", None),
        getattr(datamodule, "image_size", None),
    )


def training_batches(datamodule, augmented: bool = True):
    """``train_dataloader(augmented=...)`` where the module takes the keyword, else its plain
    training batches."""
    parameters = inspect.signature(datamodule.train_dataloader).parameters
    if "augmented" in parameters:
        return datamodule.train_dataloader(augmented=augmented)
    return datamodule.train_dataloader()


def split_sizes(datamodule) -> dict[str, int]:
    """``n_<split>`` of each split the module names in ``splits`` (none without it)."""
    splits = getattr(datamodule, "splits", None)
    if not isinstance(splits, dict):
        return {}
    return {f"n_{name}": len(split) for name, split in splits.items()}


def _problem(target: str, what: str) -> str:
    return f"data._target_={target}: {what}"


def inspect_data(node_json: str):
    """``(shape, example inputs or None, problems)`` of the data a config node (as JSON)
    describes. bench's own modules answer from their ``shape`` class method without loading
    anything (the example is then made of zeros); any other module is built, set up and its
    first training batch read, each step checked against the contract."""
    import torch
    from hydra.utils import get_object, instantiate

    from bench.spec import arguments

    node = json.loads(node_json)
    target = node["_target_"]
    cls = get_object(target)
    described = getattr(cls, "shape", None)
    if callable(described):
        shape = Shape(*described(**arguments(node)))
        example = None
        if isinstance(shape.in_channels, int) and isinstance(shape.image_size, int):
            example = torch.zeros(2, shape.in_channels, shape.image_size, shape.image_size)
        return shape, example, []
    try:
        datamodule = instantiate(node)
    except Exception as e:
        return None, None, [_problem(target, f"building it failed: {type(e).__name__}: {e}")]
    missing = [m for m in METHODS if not callable(getattr(datamodule, m, None))]
    if missing:
        return (
            None,
            None,
            [
                _problem(
                    target,
                    f"has no {', '.join(f'{m}()' for m in missing)}; a data module is a "
                    "LightningDataModule with setup, train_dataloader, val_dataloader, "
                    "test_dataloader and num_classes (bench.data.contract)",
                )
            ],
        )
    try:
        if callable(getattr(datamodule, "prepare_data", None)):
            datamodule.prepare_data()
        datamodule.setup("fit")
    except Exception as e:
        return None, None, [_problem(target, f"setup('fit') failed: {type(e).__name__}: {e}")]
    n = getattr(datamodule, "num_classes", None)
    if not isinstance(n, int) or isinstance(n, bool) or n < 2:
        got = "has no num_classes" if n is None else f"has num_classes={n!r}"
        return (
            None,
            None,
            [
                _problem(
                    target,
                    f"{got} after setup('fit'); allowed: an integer >= 2, the number of classes "
                    "its labels have (an attribute or a property)",
                )
            ],
        )
    try:
        batch = next(iter(datamodule.train_dataloader()))
    except Exception as e:
        return (
            None,
            None,
            [_problem(target, f"its train_dataloader() gives no batch: {type(e).__name__}: {e}")],
        )
    if not (
        isinstance(batch, list | tuple)
        and len(batch) == 2
        and all(isinstance(t, torch.Tensor) for t in batch)
    ):
        return (
            None,
            None,
            [
                _problem(
                    target,
                    f"its training batches must be (inputs, labels) pairs of tensors; the first is "
                    f"a {type(batch).__name__}",
                )
            ],
        )
    try:
        prepare = getattr(datamodule, "on_after_batch_transfer", lambda b, i: b)
        x, y = prepare(batch, 0)
    except Exception as e:
        return (
            None,
            None,
            [_problem(target, f"on_after_batch_transfer failed: {type(e).__name__}: {e}")],
        )
    if y.is_floating_point() or y.ndim != 1 or (len(y) and (y.min() < 0 or y.max() >= n)):
        seen = f"{y.dtype} of shape {tuple(y.shape)}"
        if not y.is_floating_point() and y.ndim == 1 and len(y):
            seen += f", from {int(y.min())} to {int(y.max())}"
        return (
            None,
            None,
            [
                _problem(
                    target,
                    f"its labels must be class indices in [0, {n - 1}] (num_classes={n}), one per "
                    f"input; the first training batch has {seen}",
                )
            ],
        )
    return shape_of(datamodule), x[:2].cpu(), []


@functools.cache
def fetch_problems(data_json: str) -> tuple[str, ...]:
    """The data a config node (as JSON) describes, fetched first where the node allows a
    download, then checked by the module's ``problems`` class method (where it has one),
    without loading it. Once per process."""
    from hydra.utils import get_object, instantiate

    from bench.spec import arguments

    data = json.loads(data_json)
    cls = get_object(data["_target_"])
    if data.get("download"):
        try:
            instantiate(data).prepare_data()
        except Exception as e:
            return (
                f"data.download: could not fetch the data into {data.get('root')} "
                f"({type(e).__name__}: {e}); offline, copy it there yourself, or point at an "
                "image folder with data=image_folder data.root=DIR",
            )
    check = getattr(cls, "problems", None)
    return tuple(check(**arguments(data))) if check else ()


@functools.cache
def train_size(data_json: str) -> int | None:
    """The training split's size by the module's ``train_size`` class method (None: the module
    does not say)."""
    from hydra.utils import get_object

    from bench.spec import arguments

    data = json.loads(data_json)
    size = getattr(get_object(data["_target_"]), "train_size", None)
    return size(**arguments(data)) if size else None
