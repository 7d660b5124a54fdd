"""A run as the checks leave it.

``bench.config.validate`` turns a resolved config into a ``RunSpec``: frozen, checked, and cut
into what each consumer takes. The run (``bench.run``), the schedule and Lightning's module
read their parts from it and check nothing again: the model factory's and the optimizer's
arguments apart from bench's own keys, the schedule with its knobs, the Trainer's arguments,
and the run's length ``steps`` (``T``, the optimizer steps the schedule spans) as the check
counted it. A sweep checks every run before the first one starts and hands each job its
``steps`` through ``sweep.json``, so a job does not check again.

Torch-free, like ``bench.config``: a bad value is answered before torch is imported.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from bench import schedules

# The keys of a node that bench reads itself; the others go to the class the node builds.
OWN_KEYS: dict[str, tuple[str, ...]] = {
    # bench.run: the Trainer is built around them
    "trainer": (
        "channels_last",
        "max_loss",
        "num_threads",
        "compile",
        "checkpoint_seconds",
        "keep_epochs",
    ),
    # bench.lightning.Classifier's loss
    "model": ("label_smoothing",),
    # bench.optim: parameter groups, coupled decay, schedule-free's BatchNorm, the LR's scale
    "optimizer": ("wd_norm_and_bias", "wd_coupled", "bn_batches", "lr_scale"),
}


# Keys Hydra reads itself when it instantiates a ``_target_`` node.
HYDRA_KEYS = {"_target_", "_partial_", "_convert_", "_recursive_", "_args_"}


def arguments(node: Mapping[str, Any]) -> dict[str, Any]:
    """A config node without Hydra's own keys: the arguments of the class it builds."""
    return {k: v for k, v in node.items() if k not in HYDRA_KEYS}


def _frozen(node: Mapping[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(copy.deepcopy(dict(node)))


def split(node: Mapping[str, Any], group: str) -> tuple[Mapping[str, Any], Mapping[str, Any]]:
    """A config node cut into what its ``_target_`` takes and bench's own keys (``OWN_KEYS``)."""
    own = OWN_KEYS.get(group, ())
    return (
        _frozen({k: v for k, v in node.items() if k not in own}),
        _frozen({k: v for k, v in node.items() if k in own}),
    )


@dataclass(frozen=True)
class Schedule:
    """A checked schedule: its name, its knobs (warmup included) and what the run compares."""

    name: str
    knobs: Mapping[str, Any]
    arm: str  # the schedule's name, or the schedule-free optimizer's that replaces it

    def lr(self, base: float) -> Callable[[int, int], float]:
        """``f(t, T)``: the LR at optimizer step ``t`` of ``T`` from base LR ``base``."""
        name, knobs = self.name, dict(self.knobs)
        return lambda t, T: schedules.lr_at(t, T, base, name, **knobs)

    def snapshot_steps(self, T: int) -> list[int]:
        """The steps after which a snapshot ensemble keeps the weights (``bench.schedules``)."""
        return schedules.snapshot_steps(self.name, T, **self.knobs)


@dataclass(frozen=True)
class RunSpec:
    """One run, checked. ``config`` is the resolved config as recorded (read-only); the other
    fields are its parts as their consumers take them."""

    config: Mapping[str, Any]
    schedule: Schedule
    data: Mapping[str, Any]  # the data module's node, ``_target_`` included
    model: Mapping[str, Any]  # the model factory's arguments, ``_target_`` included
    optimizer: Mapping[str, Any]  # the optimizer's arguments; ``lr`` already scaled
    trainer: Mapping[str, Any]  # Lightning Trainer's arguments
    own: Mapping[str, Mapping[str, Any]]  # bench's own keys of trainer, model and optimizer
    finetune: Mapping[str, Any] = field(default_factory=dict)
    steps: int | None = None  # the run's T as checked; None where Lightning alone can count

    @property
    def seed(self) -> int:
        return self.config["seed"]

    @property
    def run_name(self) -> str:
        return self.config["run_name"]

    def plain(self) -> dict[str, Any]:
        """The resolved config as plain, mutable data (a copy)."""
        return copy.deepcopy(dict(self.config))


def branch_epoch(config: Mapping[str, Any]) -> int | float | None:
    """The epoch a run with ``branch.from_sweep`` starts from: the cooldown start of a
    warmup-stable-decay run (``schedules.COOLDOWNS``), ``max_epochs * (1 - decay_fraction)``
    (not a whole number when the cooldown starts mid-epoch), else the run's last epoch (nothing
    left to train: the run is its source's state there, tested). Pure."""
    if not (config.get("branch") or {}).get("from_sweep"):
        return None
    epochs = config["trainer"]["max_epochs"]
    schedule = config["schedule"]
    name = schedule["name"]
    if name not in schedules.COOLDOWNS:
        return epochs
    start = epochs * (1 - schedule.get("decay_fraction", schedules.knobs(name)["decay_fraction"]))
    return round(start) if abs(start - round(start)) < 1e-9 else start


def of(config: Mapping[str, Any], steps: int | None = None) -> RunSpec:
    """The ``RunSpec`` of a config that has been checked (``bench.config.validate`` makes it;
    a sweep's job makes it from the ``steps`` its sweep's check recorded). Pure."""
    frozen = _frozen(config)
    model, own_model = split(frozen["model"], "model")
    optimizer, own_optimizer = split(frozen["optimizer"], "optimizer")
    trainer, own_trainer = split(frozen["trainer"], "trainer")
    # The LR the optimizer runs at: optimizer.lr on the optimizer's own scale (bench.optim).
    optimizer = MappingProxyType(
        {**optimizer, "lr": optimizer["lr"] * own_optimizer.get("lr_scale", 1.0)}
    )
    own_optimizer = MappingProxyType({k: v for k, v in own_optimizer.items() if k != "lr_scale"})
    knobs = {k: v for k, v in frozen["schedule"].items() if k != "name"}
    name = frozen["schedule"]["name"]
    return RunSpec(
        config=frozen,
        schedule=Schedule(
            name, MappingProxyType(knobs), schedules.arm(name, optimizer.get("_target_", ""))
        ),
        data=frozen["data"],
        model=model,
        optimizer=optimizer,
        trainer=trainer,
        own=MappingProxyType(
            {"model": own_model, "optimizer": own_optimizer, "trainer": own_trainer}
        ),
        finetune=MappingProxyType(dict(frozen.get("finetune") or {})),
        steps=steps,
    )
