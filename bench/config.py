"""Checks on a resolved run configuration, made before any training starts.

``validate`` takes the config as a plain nested dict and raises ``ConfigError`` listing every field
that is out of range, each with the value it got and the values it allows. Names of config-group
options (``schedule=``, ``optimizer=``, ...) are checked by Hydra when it composes the config.
"""

from __future__ import annotations

import inspect
import numbers
from collections.abc import Callable, Mapping
from typing import Any

from bench import schedules


class ConfigError(ValueError):
    """A configuration value that no run can use."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("invalid configuration:\n" + "\n".join(f"  - {p}" for p in problems))


def _number(x: Any) -> bool:
    return isinstance(x, numbers.Real) and not isinstance(x, bool)


def _integer(x: Any) -> bool:
    return isinstance(x, numbers.Integral) and not isinstance(x, bool)


# (test, description of the allowed values)
Rule = tuple[Callable[[Any], bool], str]

POSITIVE: Rule = (lambda x: _number(x) and x > 0, "a number > 0")
NON_NEGATIVE: Rule = (lambda x: _number(x) and x >= 0, "a number >= 0")
FRACTION: Rule = (lambda x: _number(x) and 0 <= x <= 1, "a number in [0, 1]")
OPEN_FRACTION: Rule = (lambda x: _number(x) and 0 < x < 1, "a number in (0, 1)")
DECAY: Rule = (lambda x: _number(x) and 0 < x <= 1, "a number in (0, 1]")
MOMENTUM: Rule = (lambda x: _number(x) and 0 <= x < 1, "a number in [0, 1)")
COUNT: Rule = (lambda x: _integer(x) and x >= 1, "an integer >= 1")
SEED: Rule = (lambda x: _integer(x) and x >= 0, "an integer >= 0")
BOOLEAN: Rule = (lambda x: isinstance(x, bool), "true or false")
NAME: Rule = (lambda x: isinstance(x, str) and x.strip() != "", "a non-empty string")
FOLDER_NAME: Rule = (
    lambda x: NAME[0](x) and x not in (".", "..") and not any(c in x for c in "/\\"),
    "a non-empty name without '/' or '\\', not '.' or '..' (it names a report folder)",
)
ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps")
MILESTONES: Rule = (
    lambda x: (
        isinstance(x, list | tuple)
        and all(_number(m) and 0 <= m <= 1 for m in x)
        and list(x) == sorted(x)
    ),
    "a sorted list of fractions of training in [0, 1], e.g. [0.5, 0.75]",
)
BETAS: Rule = (
    lambda x: (
        isinstance(x, list | tuple) and len(x) == 2 and all(_number(b) and 0 <= b < 1 for b in x)
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
}

SCHEDULE_KNOBS: dict[str, Rule] = {
    "warmup_fraction": FRACTION,
    "min_lr_ratio": FRACTION,
    "milestones": MILESTONES,
    "gamma": DECAY,
    "cycles": COUNT,
    "cycle_mult": (lambda x: _number(x) and x >= 1, "a number >= 1"),
    "cycle_decay": DECAY,
    "power": POSITIVE,
}

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

    schedule = _get(cfg, "schedule")
    if not isinstance(schedule, Mapping):
        found.append("schedule: missing; choose one with schedule=" + "|".join(schedules.SCHEDULES))
    else:
        name = schedule.get("name")
        if name not in schedules.SCHEDULES:
            found.append(f"schedule.name: got {name!r}; allowed: {', '.join(schedules.SCHEDULES)}")
        else:
            allowed = schedules.knobs(name)
            for knob, value in schedule.items():
                if knob == "name":
                    continue
                if knob not in allowed:
                    found.append(
                        f"schedule.{knob}: not a knob of the {name!r} schedule; "
                        f"allowed: {', '.join(allowed)}"
                    )
                else:
                    found.append(_check(f"schedule.{knob}", value, SCHEDULE_KNOBS[knob]))
    return [p for p in found if p is not None]


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
        found += _unknown_arguments(field, list(node), target, node["_target_"])

    trainer = cfg.get("trainer")
    if isinstance(trainer, Mapping):
        import pytorch_lightning as pl
        import torch

        found += _unknown_arguments(
            "trainer", list(trainer), pl.Trainer.__init__, "pytorch_lightning.Trainer", skip=1
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


def validate(cfg: Mapping[str, Any]) -> None:
    """Raise ``ConfigError`` naming every invalid field of ``cfg`` (values and arguments)."""
    found = problems(cfg)
    found += argument_problems(cfg)
    if found:
        raise ConfigError(found)
