"""Checks on a resolved run configuration, made before any training starts.

Three layers, each a list of ``'field: got X; allowed: Y'`` lines:

- ``problems``: the values of bench's own fields, alone and together (pure, instant);
- ``argument_problems``: every key against the arguments of the class it builds, and the
  accelerator against this machine (imports torch and Lightning);
- ``resource_problems``: the data and the starting weights on disk, fetched first where the
  config allows a download (reads files, may download).

``validate`` raises ``ConfigError`` with all of them. Names of config-group options
(``schedule=``, ``optimizer=``, ...) are checked by Hydra when it composes the config.
"""

from __future__ import annotations

import functools
import inspect
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from bench import schedules
from bench.rules import (
    BOOLEAN,
    COUNT,
    COUNT_OR_NULL,
    MOMENTUM,
    NAME,
    NON_NEGATIVE,
    NON_NEGATIVE_INT,
    OPEN_FRACTION,
    POSITIVE,
    Rule,
    integer,
    number,
    one_of,
    or_null,
)


class ConfigError(ValueError):
    """A configuration value that no run can use."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("invalid configuration:\n" + "\n".join(f"  - {p}" for p in problems))


SEED: Rule = NON_NEGATIVE_INT
FOLDER_NAME: Rule = (
    lambda x: NAME[0](x) and x not in (".", "..") and not any(c in x for c in "/\\"),
    "a non-empty name without '/' or '\\', not '.' or '..' (it names a report folder)",
)
ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps")
STEMS = ("imagenet", "cifar")
NORMALIZE = ("train", "imagenet")

BLOCKS: Rule = (
    lambda x: isinstance(x, list | tuple) and len(x) >= 1 and all(COUNT[0](b) for b in x),
    "a list of integers >= 1, blocks per stage, e.g. [2, 2, 2, 2]",
)
BETAS: Rule = (
    lambda x: (
        isinstance(x, list | tuple) and len(x) == 2 and all(number(b) and 0 <= b < 1 for b in x)
    ),
    "two numbers in [0, 1), e.g. [0.9, 0.999]",
)

# Fields every run config has (missing ones are reported too).
REQUIRED: dict[str, Rule] = {
    "seed": SEED,
    "run_name": NAME,
    "tracking.experiment": FOLDER_NAME,
    "optimizer.lr": POSITIVE,
    "optimizer.weight_decay": NON_NEGATIVE,
    "trainer.max_epochs": COUNT,
    "data.batch_size": COUNT,
}

# Fields checked when present.
OPTIONAL: dict[str, Rule] = {
    "optimizer.momentum": MOMENTUM,
    "optimizer.nesterov": BOOLEAN,
    "optimizer.betas": BETAS,
    "data.val_fraction": OPEN_FRACTION,
    "data.test_fraction": OPEN_FRACTION,
    "data.split_seed": SEED,
    "trainer.accumulate_grad_batches": COUNT,
    "trainer.channels_last": BOOLEAN,
    "data.root": NAME,
    "data.download": BOOLEAN,
    "data.augment": BOOLEAN,
    "data.normalize": one_of(*NORMALIZE),
    "data.resize": COUNT_OR_NULL,
    "data.image_size": COUNT_OR_NULL,
    "data.train_per_class": COUNT_OR_NULL,
    "data.test_per_class": COUNT_OR_NULL,
    "model.stem": one_of(*STEMS),
    "model.width": COUNT,
    "model.blocks": BLOCKS,
    "model.weights": NAME,
    "model.label_smoothing": (lambda x: number(x) and 0 <= x < 1, "a number in [0, 1)"),
    "optimizer.wd_norm_and_bias": BOOLEAN,
    "optimizer.wd_coupled": BOOLEAN,
    "optimizer.bn_batches": COUNT,
    "lr_find.min_lr": POSITIVE,
    "lr_find.max_lr": POSITIVE,
    "lr_find.steps": COUNT,
    "lr_find.early_stop_threshold": or_null(POSITIVE),
    "finetune.freeze_epochs": NON_NEGATIVE_INT,
    "finetune.backbone_lr_mult": POSITIVE,
    "report.dir": or_null(NAME),
    "report.baseline": one_of(*schedules.ARMS),
    "report.metric": one_of("final_val_acc", "best_val_acc", "test_acc"),
    "report.formats": (
        lambda x: isinstance(x, list | tuple) and len(x) > 0 and set(x) <= {"png", "svg", "pdf"},
        "a non-empty list of png, svg, pdf",
    ),
}

# Keys that bench reads itself; the others go to the class the node builds.
OWN_TRAINER_KEYS = ("channels_last",)
OWN_MODEL_KEYS = ("label_smoothing",)
OWN_OPTIMIZER_KEYS = ("wd_norm_and_bias", "wd_coupled", "bn_batches")  # see bench.optim

# Model arguments that the data decides.
FROM_DATA = ("num_classes", "in_channels", "image_size")

_MISSING = object()


def _get(cfg: Mapping[str, Any], dotted: str) -> Any:
    node: Any = cfg
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return _MISSING
        node = node[part]
    return node


def _check(field: str, value: Any, rule: Rule) -> str | None:
    test, allowed = rule
    if value is _MISSING:
        return f"{field}: missing; allowed: {allowed}"
    if not test(value):
        return f"{field}: got {value!r}; allowed: {allowed}"
    return None


def problems(cfg: Mapping[str, Any]) -> list[str]:
    """Every problem with ``cfg``, as ``'field: got X; allowed: Y'`` lines (empty when valid)."""
    found = [_check(f, _get(cfg, f), r) for f, r in REQUIRED.items()]
    found += [_check(f, v, r) for f, r in OPTIONAL.items() if (v := _get(cfg, f)) is not _MISSING]
    model = _get(cfg, "model")
    if isinstance(model, Mapping):
        found += [
            f"model.{key}: set from the data (the dataset's {key.replace('_', ' ')}); remove it"
            for key in FROM_DATA
            if key in model
        ]
    freeze, epochs = _get(cfg, "finetune.freeze_epochs"), _get(cfg, "trainer.max_epochs")
    if integer(freeze) and integer(epochs) and 0 < epochs <= freeze:
        found.append(
            f"finetune.freeze_epochs: got {freeze} with trainer.max_epochs={epochs}; allowed: "
            "fewer epochs than training has (the backbone would never train)"
        )

    found += _schedule_free_problems(cfg)
    found += _claim_problems(cfg)
    low, high = _get(cfg, "lr_find.min_lr"), _get(cfg, "lr_find.max_lr")
    if number(low) and number(high) and 0 < high <= low:
        found.append(
            f"lr_find.max_lr: got {high} with lr_find.min_lr={low}; allowed: a number above "
            "lr_find.min_lr"
        )

    schedule = _get(cfg, "schedule")
    if not isinstance(schedule, Mapping):
        found.append("schedule: missing; choose one with schedule=" + "|".join(schedules.SCHEDULES))
    else:
        name = schedule.get("name")
        if name not in schedules.SCHEDULES:
            found.append(f"schedule.name: got {name!r}; allowed: {', '.join(schedules.SCHEDULES)}")
        else:
            allowed = schedules.rules(name)
            for knob, value in schedule.items():
                if knob == "name":
                    continue
                if knob not in allowed:
                    found.append(
                        f"schedule.{knob}: not a knob of the {name!r} schedule; "
                        f"allowed: {', '.join(allowed)}"
                    )
                else:
                    found.append(_check(f"schedule.{knob}", value, allowed[knob]))
    return [p for p in found if p is not None]


def _claim_problems(cfg: Mapping[str, Any]) -> list[str]:
    items = _get(cfg, "report.claims")
    if items is _MISSING or items is None:
        return []
    if not isinstance(items, list | tuple) or not all(isinstance(i, Mapping) for i in items):
        return [f"report.claims: got {items!r}; allowed: a list of mappings with a, b, low/high"]
    from bench.analysis import claims

    try:
        parsed = claims.parse(items)
    except ValueError as e:
        return [str(e)]
    return [
        f"report.claims[{i}].{side}: got {name!r}; allowed: {', '.join(schedules.ARMS)}"
        + (", best" if side == "b" else "")
        for i, c in enumerate(parsed)
        for side, name in (("a", c.a), ("b", c.b))
        if name not in schedules.ARMS and not (side == "b" and name == claims.BEST)
    ]


def _schedule_free_problems(cfg: Mapping[str, Any]) -> list[str]:
    target = _get(cfg, "optimizer._target_")
    if target not in schedules.SCHEDULE_FREE:
        return []
    found = []
    name = _get(cfg, "schedule.name")
    if name != "constant" and name in schedules.SCHEDULES:
        found.append(
            f"schedule.name: got {name!r} with the schedule-free optimizer {target}; allowed: "
            "constant (the optimizer replaces the schedule; warm up with "
            "schedule.warmup_fraction)"
        )
    momentum = _get(cfg, "optimizer.momentum")
    if target == "schedulefree.SGDScheduleFree" and number(momentum) and momentum == 0:
        found.append(
            f"optimizer.momentum: got 0 with {target}; allowed: a number in (0, 1) "
            "(its averaging needs momentum)"
        )
    return found


# Keys Hydra reads itself when it instantiates a ``_target_`` node.
_HYDRA_KEYS = {"_target_", "_partial_", "_convert_", "_recursive_", "_args_"}


def _accepted(target: Callable, skip: int = 0) -> tuple[list[str], bool]:
    """The keyword parameters ``target`` accepts, and whether it takes ``**kwargs`` too."""
    params = list(inspect.signature(target).parameters.values())[skip:]
    names = [p.name for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    return names, any(p.kind == p.VAR_KEYWORD for p in params)


def _unknown_arguments(field: str, keys: list[str], target: Callable, label: str, skip=0):
    names, open_ended = _accepted(target, skip)
    if open_ended:
        return []
    return [
        f"{field}.{key}: not an argument of {label}; allowed: {', '.join(names)}"
        for key in keys
        if key not in names and key not in _HYDRA_KEYS
    ]


def argument_problems(cfg: Mapping[str, Any]) -> list[str]:
    """Keys that the class a config node builds would reject: arguments of each ``_target_``
    (data, model, optimizer) and of ``pytorch_lightning.Trainer``; and an accelerator that this
    machine does not have. Imports those classes (torch, Lightning) to read their signatures."""
    from hydra.utils import get_object

    found = []
    for field in ("data", "model", "optimizer"):
        node = cfg.get(field)
        if not isinstance(node, Mapping) or "_target_" not in node:
            continue
        try:
            target = get_object(node["_target_"])
        except Exception as e:
            found.append(f"{field}._target_: cannot import {node['_target_']!r} ({e})")
            continue
        own = {"model": OWN_MODEL_KEYS, "optimizer": OWN_OPTIMIZER_KEYS}.get(field, ())
        keys = [k for k in node if k not in own]
        found += _unknown_arguments(field, keys, target, node["_target_"])

    trainer = cfg.get("trainer")
    if isinstance(trainer, Mapping):
        import pytorch_lightning as pl
        import torch

        keys = [k for k in trainer if k not in OWN_TRAINER_KEYS]
        found += _unknown_arguments(
            "trainer", keys, pl.Trainer.__init__, "pytorch_lightning.Trainer", skip=1
        )
        accelerator = trainer.get("accelerator", "auto")
        if accelerator not in ACCELERATORS:
            found.append(
                f"trainer.accelerator: got {accelerator!r}; allowed: {', '.join(ACCELERATORS)}"
            )
        elif accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
            found.append(
                f"trainer.accelerator: got {accelerator!r} but this machine has no CUDA GPU; "
                "allowed here: auto, cpu"
            )
        elif accelerator == "mps" and not torch.backends.mps.is_available():
            found.append(
                "trainer.accelerator: got 'mps' but MPS is not available here; "
                "allowed here: auto, cpu"
            )
    return found


def resolve_paths(cfg: dict[str, Any], launch_dir: str | Path) -> dict[str, Any]:
    """Make ``data.root`` and a ``model.weights`` file absolute against the folder the command
    ran in (a run may work in a folder of its own). Changes ``cfg`` in place and returns it."""
    base = Path(launch_dir)
    data, model = cfg.get("data"), cfg.get("model")
    if isinstance(data, dict) and isinstance(data.get("root"), str):
        data["root"] = str((base / Path(data["root"]).expanduser()).resolve())
    weights = model.get("weights") if isinstance(model, dict) else None
    if isinstance(weights, str) and weights not in ("none", "imagenet"):
        model["weights"] = str((base / Path(weights).expanduser()).resolve())
    return cfg


def _plain(node: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in node.items() if k not in _HYDRA_KEYS}


@functools.cache
def _data_problems(data_json: str) -> tuple[str, ...]:
    from hydra.utils import get_object, instantiate

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
    return tuple(check(**_plain(data))) if check else ()


@functools.cache
def _weights_problems(model_json: str, in_channels: int) -> tuple[str, ...]:
    from bench import models

    model = json.loads(model_json)
    try:
        # The head is never loaded, so any class count and image size will do for the check.
        knobs = {k: v for k, v in model.items() if k not in OWN_MODEL_KEYS}
        models.build(knobs, num_classes=2, in_channels=in_channels, image_size=32)
    except models.WeightsError as e:
        return (str(e),)
    return ()


def resource_problems(cfg: Mapping[str, Any]) -> list[str]:
    """The data (present, with the classes and split sizes asked for) and the model's starting
    weights (readable, fitting the model). Where the config allows it, missing data and
    torchvision's ImageNet weights are downloaded first, once per process."""
    from hydra.utils import get_object

    data, model = cfg.get("data"), cfg.get("model")
    if not isinstance(data, Mapping) or not isinstance(model, Mapping):
        return []
    found = list(_data_problems(json.dumps(dict(data), sort_keys=True)))
    if model.get("weights", "none") != "none":
        in_channels = getattr(get_object(data["_target_"]), "in_channels", 3)
        found += _weights_problems(json.dumps(dict(model), sort_keys=True), in_channels)
    return found


def validate(cfg: Mapping[str, Any]) -> None:
    """Raise ``ConfigError`` naming every invalid field of ``cfg``: values, arguments, and
    (when those are fine) the data and weights on disk."""
    found = problems(cfg)
    found += argument_problems(cfg)
    if not found:
        found += resource_problems(cfg)
    if found:
        raise ConfigError(found)
