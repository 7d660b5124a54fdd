"""Checks on a resolved run configuration, made before any training starts.

Three layers, each a list of ``'field: got X; allowed: Y'`` lines:

- ``problems``: the values of the sweep's own fields, alone and together, the schedule's name
  and knobs (``bench.schedules.problems``), and every key against the keys the config has
  (``conf/``) (pure but for reading ``conf/``, instant);
- ``argument_problems``: every key against the arguments of the class it builds, the values
  against the rules that class declares beside itself (``bench.rules.checked``: a model's
  ``stem`` or ``width``), and the accelerator, devices and precision against Lightning and this
  machine (``bench.devices``; imports torch and Lightning);
- ``resources``: the data (``bench.data.contract``) and the starting weights on disk, fetched
  first where the config allows a download (reads files, may download); then the run's length
  (``run_steps``): the
  batch size against the training split, and the schedule's shape against the run's ``T``
  optimizer steps (``bench.schedules.horizon_problems``).

``validate`` raises ``ConfigError`` with all of them, or returns the checked run
(``bench.spec.RunSpec``) that the run consumes without checking again. Names of config-group
options (``schedule=``, ``optimizer=``, ...) are checked by Hydra when it composes the config.
"""

from __future__ import annotations

import difflib
import functools
import inspect
import json
import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from bench import devices, schedules, spec
from bench.rules import (
    BOOLEAN,
    COUNT,
    COUNT_OR_NULL,
    FIGURE_WIDTH,
    FRACTION,
    MOMENTUM,
    NAME,
    NON_NEGATIVE,
    NON_NEGATIVE_INT,
    OPEN_FRACTION,
    POSITIVE,
    Rule,
    did_you_mean,
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


# NumPy's legacy seeding (and so every library that seeds through it) takes 32 bits.
SEED: Rule = (
    lambda x: integer(x) and 0 <= x < 2**32,
    f"an integer in [0, {2**32 - 1}] (what NumPy's and torch's seeding accept)",
)
# A report folder is named after it: a name the filesystem can hold (255 bytes on most).
FOLDER_NAME: Rule = (
    lambda x: (
        NAME[0](x)
        and x not in (".", "..")
        and not any(c in x for c in "/\\")
        and len(x.encode()) <= 255
    ),
    "a non-empty name without '/' or '\\', not '.' or '..', at most 255 bytes (it names a "
    "report folder)",
)

NORMALIZE = ("train", "imagenet")

VAL_SIZE: Rule = (
    lambda x: COUNT[0](x) or isinstance(x, float) and 0 < x < 1,
    "a number of images (an integer >= 1) or a fraction of the training images in (0, 1)",
)
LIMIT_BATCHES: Rule = (
    lambda x: COUNT[0](x) or isinstance(x, float) and 0 < x <= 1,
    "a number of batches (an integer >= 1) or a fraction of them in (0, 1]",
)
OPTIONAL_BOOLEAN: Rule = (lambda x: x is None or isinstance(x, bool), "true, false or null")
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
}

# torch.compile's backends that trainer.compile may name (true: inductor).
COMPILE_BACKENDS = ("inductor", "aot_eager", "eager", "cudagraphs")

# Fields checked when present.
OPTIONAL: dict[str, Rule] = {
    "optimizer.momentum": MOMENTUM,
    "optimizer.nesterov": BOOLEAN,
    "optimizer.betas": BETAS,
    "optimizer.eps": NON_NEGATIVE,
    "optimizer.dampening": FRACTION,
    "data.batch_size": COUNT,
    "data.val_fraction": OPEN_FRACTION,
    "data.test_fraction": OPEN_FRACTION,
    "data.split_seed": SEED,
    "trainer.accumulate_grad_batches": COUNT,
    "trainer.accelerator": one_of(*devices.ACCELERATORS),
    "trainer.channels_last": (
        lambda x: isinstance(x, bool) or x == "auto",
        "true, false or auto (true on a CUDA GPU)",
    ),
    "trainer.compile": (
        lambda x: isinstance(x, bool) or x in COMPILE_BACKENDS,
        f"true (inductor), false or a torch.compile backend: {', '.join(COMPILE_BACKENDS)}",
    ),
    "trainer.num_threads": COUNT_OR_NULL,
    "trainer.max_loss": or_null(POSITIVE),
    "trainer.checkpoint_seconds": NON_NEGATIVE,
    "trainer.keep_epochs": (
        lambda x: x is None or isinstance(x, list | tuple) and all(COUNT[0](e) for e in x),
        "null or a list of epochs (integers >= 1) to keep a checkpoint at, e.g. [3, 6]",
    ),
    "branch.checkpoint": or_null(NAME),
    "branch.from_sweep": or_null(NAME),
    "trainer.max_steps": (lambda x: x == -1 or COUNT[0](x), "-1 (no limit) or an integer >= 1"),
    "trainer.limit_train_batches": LIMIT_BATCHES,
    "trainer.check_val_every_n_epoch": COUNT_OR_NULL,
    "trainer.num_sanity_val_steps": (
        lambda x: integer(x) and x >= -1,
        "an integer >= 0, or -1 (all validation batches)",
    ),
    "trainer.deterministic": (
        lambda x: x is None or isinstance(x, bool) or x in ("warn", "auto"),
        "true, false, warn, auto (false on a CUDA GPU, with cuDNN's autotuner) or null",
    ),
    "trainer.enable_checkpointing": OPTIONAL_BOOLEAN,
    "trainer.enable_model_summary": OPTIONAL_BOOLEAN,
    "trainer.enable_progress_bar": OPTIONAL_BOOLEAN,
    "trainer.num_nodes": COUNT,
    "trainer.gradient_clip_val": or_null(NON_NEGATIVE),
    "rerun": BOOLEAN,
    "launch.jobs_per_gpu": COUNT,
    "launch.gpu": or_null(NAME),  # set by hydra/launcher=gpus (bench.launch.pinned)
    "tracking.uri": or_null(NAME),
    "data.val_size": VAL_SIZE,
    "data.root": NAME,
    "data.download": BOOLEAN,
    "data.augment": BOOLEAN,
    "data.on_device": BOOLEAN,
    "data.num_workers": NON_NEGATIVE_INT,
    "data.normalize": one_of(*NORMALIZE),
    "data.resize": COUNT_OR_NULL,
    "data.image_size": COUNT_OR_NULL,
    "data.train_per_class": COUNT_OR_NULL,
    "data.test_per_class": COUNT_OR_NULL,
    "model.label_smoothing": (lambda x: number(x) and 0 <= x < 1, "a number in [0, 1)"),
    "optimizer.wd_norm_and_bias": BOOLEAN,
    "optimizer.wd_coupled": BOOLEAN,
    "optimizer.bn_batches": COUNT,
    "optimizer.lr_scale": POSITIVE,
    "lr_find.min_lr": POSITIVE,
    "lr_find.max_lr": POSITIVE,
    "lr_find.steps": COUNT,
    "lr_find.early_stop_threshold": or_null(POSITIVE),
    "finetune.freeze_epochs": NON_NEGATIVE_INT,
    "finetune.backbone_lr_mult": POSITIVE,
    "finetune.head": or_null(NAME),
    "report.dir": or_null(NAME),
    "report.baseline": one_of(*schedules.ARMS),
    "report.metric": one_of("final_val_acc", "best_val_acc", "test_acc"),
    "report.formats": (
        lambda x: isinstance(x, list | tuple) and len(x) > 0 and set(x) <= {"png", "svg", "pdf"},
        "a non-empty list of png, svg, pdf",
    ),
    "report.width": FIGURE_WIDTH,
}

# Model arguments that the data decides.
FROM_DATA = ("num_classes", "in_channels", "image_size")

_MISSING = object()

# The config's folder, as ``bench.cli.CONFIG_DIR`` finds it (inside an installed wheel, or the
# repository's ``conf/``).
_PACKAGED = Path(__file__).parent / "conf"
CONFIG_DIR = _PACKAGED if _PACKAGED.is_dir() else Path(__file__).parent.parent / "conf"
# The primary configs of the commands; every option of a group packaged ``_global_`` (the
# presets in ``experiment/``) may add top-level keys too.
ROOT_CONFIGS = ("train.yaml", "lr_find.yaml", "sweep.yaml")
_GLOBAL = "@package _global_"


@functools.cache
def known_keys() -> dict[str, tuple[str, ...] | None]:
    """The top-level keys a run config may have, read from ``conf/`` (plus the fields that have
    a rule here), each with the keys its node may have; None for a config group (``data``,
    ``model``, ...: their keys are checked against the class they build, or the schedule's
    knobs) and for a plain value."""
    from omegaconf import OmegaConf

    folder = Path(CONFIG_DIR)
    files = [folder / name for name in ROOT_CONFIGS if (folder / name).is_file()]
    groups: list[str] = []
    for path in list(files):
        for entry in OmegaConf.to_container(OmegaConf.load(path)).get("defaults", []):
            if not isinstance(entry, dict):
                continue
            group = next(iter(entry)).split()[-1].lstrip("/")
            options = sorted((folder / group).glob("*.yaml"))
            if options and all(_GLOBAL in o.read_text() for o in options):
                files += options  # a preset: its keys are top-level keys
            elif group not in groups:
                groups.append(group)
    keys: dict[str, list[str] | None] = {g: None for g in groups}
    for path in files:
        node = OmegaConf.to_container(OmegaConf.load(path))
        for key, value in node.items():
            if key in ("defaults", "hydra") or key in groups:
                continue
            if isinstance(value, dict):
                sub = keys.setdefault(key, [])
                sub += [k for k in value if k not in sub] if sub is not None else []
            else:
                keys.setdefault(key, None)
    for field in (*REQUIRED, *OPTIONAL):
        top, _, sub = field.partition(".")
        if top in groups:
            continue
        if sub:
            node = keys.setdefault(top, [])
            if node is not None and sub not in node:
                node.append(sub)
        else:
            keys.setdefault(top, None)
    return {k: tuple(v) if v is not None else None for k, v in keys.items()}


def _nearest(key: str, allowed: list[str]) -> str:
    return (difflib.get_close_matches(key, allowed, n=1, cutoff=0) or allowed)[0]


def unknown_key_problems(cfg: Mapping[str, Any]) -> list[str]:
    """Keys that no config file has, at the top level and in the nodes that are not passed to
    a class (``finetune``, ``tracking``, ``report``, ``lr_find``): added with ``+key=value``,
    they would be ignored or fail inside the run."""
    known = known_keys()
    found = []
    top = list(known)
    for key, value in cfg.items():
        if key not in known:
            found.append(
                f"{key}: not a key of the config (the nearest: {_nearest(key, top)!r}); "
                f"allowed: {', '.join(top)}"
            )
        elif known[key] is not None and isinstance(value, Mapping):
            sub = list(known[key])
            found += [
                f"{key}.{k}: not a key of {key} (the nearest: {_nearest(k, sub)!r}); "
                f"allowed: {', '.join(sub)}"
                for k in value
                if k not in sub
            ]
    return found


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

    found += unknown_key_problems(cfg)
    found += _schedule_free_problems(cfg)
    found += _claim_problems(cfg)
    found += _trainer_problems(cfg)
    nesterov, momentum = _get(cfg, "optimizer.nesterov"), _get(cfg, "optimizer.momentum")
    dampening = _get(cfg, "optimizer.dampening")
    if nesterov is True and number(momentum) and momentum == 0:
        found.append(
            "optimizer.nesterov: got true with optimizer.momentum=0; allowed: false, or true "
            "with a momentum > 0 (Nesterov momentum needs a momentum)"
        )
    if nesterov is True and number(dampening) and dampening != 0:
        found.append(
            f"optimizer.dampening: got {dampening} with optimizer.nesterov=true; allowed: 0 "
            "(torch's SGD takes Nesterov momentum only without dampening)"
        )
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
        knobs = {k: v for k, v in schedule.items() if k != "name"}
        found += schedules.problems(schedule.get("name"), knobs)
    return [p for p in found if p is not None]


def _trainer_problems(cfg: Mapping[str, Any]) -> list[str]:
    devices = _get(cfg, "trainer.devices")
    many = (integer(devices) and (devices > 1 or devices == -1)) or (
        isinstance(devices, list | tuple) and len(devices) > 1
    )
    if many and _get(cfg, "data.on_device") is True:
        return [
            f"data.on_device: true with trainer.devices={devices}: batches cut on the device are "
            "not split between devices (each would train on all of them); allowed: "
            "trainer.devices=1, or data.on_device=false (a DataLoader, which Lightning splits)"
        ]
    every, epochs = _get(cfg, "trainer.check_val_every_n_epoch"), _get(cfg, "trainer.max_epochs")
    if COUNT[0](every) and COUNT[0](epochs) and epochs % every:
        divisors = [d for d in range(1, epochs + 1) if epochs % d == 0]
        return [
            f"trainer.check_val_every_n_epoch: got {every} with trainer.max_epochs={epochs}; "
            f"allowed: a divisor of {epochs} ({', '.join(map(str, divisors))}), so that the last "
            "epoch is validated (final_val_acc)"
        ]
    return []


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
        f"{field}.{key}: not an argument of {label};{did_you_mean(key, names)} allowed: "
        f"{', '.join(names)}"
        for key in keys
        if key not in names and key not in spec.HYDRA_KEYS
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
        own = spec.OWN_KEYS.get(field, ())
        keys = [k for k in node if k not in own]
        found += _unknown_arguments(field, keys, target, node["_target_"])
        # The rules a component declares beside itself (``bench.rules.checked``).
        for key, rule in getattr(target, "rules", {}).items():
            if key in node:
                found.append(_check(f"{field}.{key}", node[key], rule))
        if field == "model":
            from bench import models

            found += models.name_problems(dict(node))

    trainer = cfg.get("trainer")
    if isinstance(trainer, Mapping):
        import pytorch_lightning as pl

        keys = [k for k in trainer if k not in spec.OWN_KEYS["trainer"]]
        found += _unknown_arguments(
            "trainer", keys, pl.Trainer.__init__, "pytorch_lightning.Trainer", skip=1
        )
        found += devices.problems(trainer)
    return [p for p in found if p is not None]


def step_problems(cfg: Mapping[str, Any], n_train: int | None) -> list[str]:
    """What shows only with the run's length (``run_steps``)."""
    return run_steps(cfg, n_train)[1]


def run_steps(cfg: Mapping[str, Any], n_train: int | None) -> tuple[int | None, list[str]]:
    """The run's ``T``, the optimizer steps its schedule spans (None where Lightning alone can
    count them), and what shows only with the run's length, given ``n_train`` training images
    (None: not known, nothing to check): a batch larger than the training split, gradient
    accumulation over more batches than an epoch has, and a schedule whose shape does not fit
    the run's ``T`` optimizer steps, counted as Lightning counts them
    (``estimated_stepping_batches``: ``ceil(batches / accumulate_grad_batches) * max_epochs``,
    at most ``max_steps``; the training loader keeps the last, partial batch). With several
    devices, or ``fast_dev_run``/``overfit_batches``, Lightning decides the batches itself and
    ``T`` is not counted; nor in the LR range test, whose ramp replaces the schedule."""
    trainer = cfg.get("trainer")
    batch = _get(cfg, "data.batch_size")
    if n_train is None or not isinstance(trainer, Mapping) or not COUNT[0](batch):
        return None, []
    found = []
    if batch > n_train:
        found.append(
            f"data.batch_size: got {batch} with a training split of {n_train} images; "
            f"allowed: an integer in [1, {n_train}] here"
        )
    n_batches = math.ceil(n_train / batch)
    limit = trainer.get("limit_train_batches", 1.0)
    if integer(limit):
        n_batches = min(n_batches, limit)
    elif number(limit):
        n_batches = int(n_batches * limit)
    described = f"{n_batches} training batches per epoch ({n_train} images in batches of {batch})"
    if n_batches < 1:
        return None, found + [
            f"trainer.limit_train_batches: got {limit} of {math.ceil(n_train / batch)} training "
            f"batches per epoch, which is none; allowed: an integer >= 1 or a fraction of at "
            f"least {1 / math.ceil(n_train / batch):.3g}"
        ]
    accumulate = trainer.get("accumulate_grad_batches", 1)
    if COUNT[0](accumulate) and accumulate > n_batches:
        found.append(
            f"trainer.accumulate_grad_batches: got {accumulate} with {described}; allowed: an "
            f"integer in [1, {n_batches}] here (an optimizer step sums the gradients of one "
            "epoch's batches at most)"
        )
    schedule = cfg.get("schedule")
    epochs = trainer.get("max_epochs")
    if (
        "lr_find" in cfg
        or not isinstance(schedule, Mapping)
        or not COUNT[0](epochs)
        or not COUNT[0](accumulate)
        or devices.world_size(trainer) != 1
        or trainer.get("fast_dev_run") not in (None, False, 0)
        or trainer.get("overfit_batches") not in (None, 0, 0.0)
    ):
        return None, found
    per_epoch = math.ceil(n_batches / accumulate)
    T = per_epoch * epochs
    how = f"{per_epoch} per epoch x {epochs} epoch{'s' * (epochs != 1)}"
    if accumulate > 1:
        how = f"ceil({n_batches} batches / {accumulate}) = {how}"
    max_steps = trainer.get("max_steps", -1)
    if COUNT[0](max_steps) and max_steps < T:
        T, how = max_steps, "trainer.max_steps"
    knobs = {k: v for k, v in schedule.items() if k != "name"}
    found += schedules.horizon_problems(
        schedule["name"], T, run=f"a run of {T} optimizer steps ({how})", **knobs
    )
    return T, found


@functools.cache
def _inspected(data_json: str):
    from bench.data import contract

    return contract.inspect_data(data_json)


@functools.cache
def _model_problems(model_json: str, data_json: str, head: str | None, needs_head: bool):
    from bench import models

    shape, example, _ = _inspected(data_json)
    model = dict(spec.split(json.loads(model_json), "model")[0])
    return tuple(models.problems(model, shape, example, head, needs_head))


def needs_head(cfg: Mapping[str, Any]) -> bool:
    """Whether the run treats the model's head apart: two-stage fine-tuning, or a backbone LR
    other than the head's."""
    freeze, mult = _get(cfg, "finetune.freeze_epochs"), _get(cfg, "finetune.backbone_lr_mult")
    return (integer(freeze) and freeze > 0) or (number(mult) and mult != 1)


def resource_problems(cfg: Mapping[str, Any]) -> list[str]:
    """What ``resources`` finds wrong."""
    return resources(cfg)[1]


def resources(cfg: Mapping[str, Any]) -> tuple[int | None, list[str]]:
    """The run's ``T`` (``run_steps``), and what is wrong with the data (present, with the
    classes and split sizes asked for; a module of the user's built, set up and its first batch
    read: ``bench.data.contract``), the run's length against the data, and the model built for
    the data, its starting weights loaded and one batch of the data's inputs passed through it
    (``bench.models.problems``). Where the config allows it, missing data and pretrained
    weights are downloaded first, once per process."""
    from bench.data import contract

    data, model = cfg.get("data"), cfg.get("model")
    if not isinstance(data, Mapping) or not isinstance(model, Mapping):
        return None, []
    data_json = json.dumps(dict(data), sort_keys=True)
    found = list(contract.fetch_problems(data_json))
    if found:
        return None, found
    _, _, found = _inspected(data_json)
    if found:
        return None, list(found)
    steps, found = run_steps(cfg, contract.train_size(data_json))
    found += branch_problems(cfg)
    head = _get(cfg, "finetune.head")
    model_json = json.dumps(dict(model), sort_keys=True)
    found += _model_problems(
        model_json, data_json, None if head is _MISSING else head, needs_head(cfg)
    )
    return steps, found


def branch_problems(cfg: Mapping[str, Any]) -> list[str]:
    """``trainer.keep_epochs`` within the run, and a ``branch.checkpoint`` that a run can start
    from: a whole checkpoint a bench run kept (``trainer.keep_epochs``), at an epoch the run
    has not passed."""
    found = []
    epochs = _get(cfg, "trainer.max_epochs")
    keep = _get(cfg, "trainer.keep_epochs")
    if isinstance(keep, list | tuple) and integer(epochs) and any(e > epochs for e in keep):
        found.append(
            f"trainer.keep_epochs: got {list(keep)} with trainer.max_epochs={epochs}; allowed: "
            f"epochs in [1, {epochs}]"
        )
    from bench import lightning, run, tracking

    path = _get(cfg, "branch.checkpoint")
    sweep = _get(cfg, "branch.from_sweep")
    if isinstance(sweep, str):
        if isinstance(path, str):
            return found + [
                "branch.from_sweep: set together with branch.checkpoint; allowed: one of them"
            ]
        epoch = spec.branch_epoch(cfg)
        if epoch != int(epoch):
            return found + [
                f"branch.from_sweep: a {cfg['schedule']['name']} run of {epochs} epochs with "
                "schedule.decay_fraction="
                f"{cfg['schedule'].get('decay_fraction')} cools down from epoch {epoch:g}, not "
                "from an epoch's end; allowed: a decay_fraction x max_epochs that is a whole "
                "number"
            ]
        uri = tracking.resolve_uri(_get(cfg, "tracking.uri") or None)
        try:
            path = tracking.branch_point(uri, sweep, cfg["seed"], int(epoch))
        except Exception as e:
            path, why = None, f" ({type(e).__name__}: {e})"
        else:
            why = ""
        if path is None:
            return found + [
                f"branch.from_sweep: sweep {sweep} has no finished run of seed {cfg['seed']} "
                f"that kept a checkpoint at epoch {int(epoch)}{why}; allowed: a sweep whose runs "
                f"kept it (trainer.keep_epochs=[{int(epoch)}, ...]); a finished run without it "
                "is trained again with rerun=true"
            ]
    if not isinstance(path, str):
        return found

    if not run.checkpoint_usable(path):
        return found + [
            f"branch.checkpoint: no whole checkpoint at {path}; allowed: a file a run kept with "
            "trainer.keep_epochs (<run folder>/branches/epochK.ckpt, its .sha256 beside it)"
        ]
    origin = lightning.checkpoint_origin(path)
    if origin["run_id"] is None:
        found.append(
            f"branch.checkpoint: {path} does not say which run it is of; allowed: a checkpoint "
            "a bench run kept with trainer.keep_epochs"
        )
    if integer(epochs) and origin["epoch"] > epochs:
        found.append(
            f"branch.checkpoint: it holds {origin['epoch']} epochs but trainer.max_epochs="
            f"{epochs}; allowed: a checkpoint of at most {epochs} epochs"
        )
    return found


# Base LRs that train something: well outside, a run is almost surely a typo (1e-30, 1e5).
SANE_LR = (1e-6, 10.0)


def warnings(cfg: Mapping[str, Any]) -> list[str]:
    """What is allowed but almost surely not meant: an LR far outside any that trains."""
    lr, scale = _get(cfg, "optimizer.lr"), _get(cfg, "optimizer.lr_scale")
    if not number(lr):
        return []
    runs_at = lr * (scale if number(scale) else 1)
    low, high = SANE_LR
    if low <= runs_at <= high:
        return []
    side = "below" if runs_at < low else "above"
    return [
        f"optimizer.lr: {lr:g}"
        + (f" x lr_scale {scale:g}" if number(scale) and scale != 1 else "")
        + f" is far {side} any LR that trains a network ({low:g} to {high:g}): the runs will go "
        "on, but check the value (bench-lr-find suggests one)"
    ]


def validate(cfg: Mapping[str, Any]) -> spec.RunSpec:
    """The checked run of ``cfg`` (``bench.spec.RunSpec``); raises ``ConfigError`` naming every
    invalid field: values, arguments, and (when those are fine) the data and weights on disk
    and the run's length."""
    found = problems(cfg)
    found += argument_problems(cfg)
    steps = None
    if not found:
        steps, found = resources(cfg)
    if found:
        raise ConfigError(found)
    return spec.of(cfg, steps)
