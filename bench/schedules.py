"""Learning-rate schedules as pure functions.

Every schedule maps ``(t, T)`` to the learning rate used at optimizer step ``t`` (0-based) of a
run that takes ``T`` optimizer steps in all. ``base`` is the optimizer's learning rate and the floor
is ``base * min_lr_ratio``. Knobs that set a horizon (milestones, warmup) are fractions of training,
so one preset works at any run length.

Warmup is orthogonal to the schedule: ``lr_at`` runs a linear warmup over the first
``round(warmup_fraction * T)`` steps and then the schedule over the remaining steps as if they were
all of training.

The formulas are repeated in the README; keep the two in step.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Sequence


def constant(t: int, T: int, base: float) -> float:
    """``base`` at every step."""
    return base


def step(
    t: int,
    T: int,
    base: float,
    milestones: Sequence[float] = (0.5, 0.75),
    gamma: float = 0.1,
) -> float:
    """``base * gamma**k``, k = number of milestones m with ``t >= round(m * T)``."""
    k = sum(1 for m in milestones if t >= round(m * T))
    return base * gamma**k


def cosine(t: int, T: int, base: float, min_lr_ratio: float = 0.0) -> float:
    """Half a cosine from ``base`` at t=0 towards the floor at t=T."""
    floor = base * min_lr_ratio
    return floor + (base - floor) * (1 + math.cos(math.pi * t / T)) / 2


def restart_starts(T: int, cycles: int, cycle_mult: float) -> list[int]:
    """Start steps of the warm-restart cycles, plus ``T`` at the end.

    Cycle i is ``cycle_mult**i`` times as long as the first one and together they fill ``T``
    exactly; boundaries are rounded to whole steps.
    """
    if cycle_mult == 1:
        fractions = [i / cycles for i in range(cycles + 1)]
    else:
        # (m^i - 1) / (m^C - 1), written with negative powers so that no power overflows.
        m, C = float(cycle_mult), cycles
        fractions = [(m ** (i - C) - m**-C) / (1 - m**-C) for i in range(C + 1)]
    return [round(f * T) for f in fractions]


def cosine_restarts(
    t: int,
    T: int,
    base: float,
    cycles: int = 3,
    cycle_mult: float = 2.0,
    cycle_decay: float = 1.0,
    min_lr_ratio: float = 0.0,
) -> float:
    """SGDR: cosine annealing with `cycles` warm restarts; cycle i peaks at base*cycle_decay**i."""
    floor = base * min_lr_ratio
    starts = restart_starts(T, cycles, cycle_mult)
    # The cycle holding t: the last one that starts at or before t and is not empty.
    i = max(j for j in range(cycles) if starts[j] <= t and starts[j + 1] > starts[j])
    length = starts[i + 1] - starts[i]
    peak = base * cycle_decay**i
    return floor + (peak - floor) * (1 + math.cos(math.pi * (t - starts[i]) / length)) / 2


def polynomial(t: int, T: int, base: float, power: float = 1.0, min_lr_ratio: float = 0.0) -> float:
    """``floor + (base - floor) * (1 - t/T)**power``."""
    floor = base * min_lr_ratio
    return floor + (base - floor) * (1 - t / T) ** power


SCHEDULES: dict[str, Callable[..., float]] = {
    "constant": constant,
    "step": step,
    "cosine": cosine,
    "cosine_restarts": cosine_restarts,
    "polynomial": polynomial,
}


def knobs(name: str) -> dict[str, object]:
    """The knobs a schedule takes, with their defaults (``warmup_fraction`` applies to all)."""
    params = list(inspect.signature(SCHEDULES[name]).parameters.values())[3:]
    return {"warmup_fraction": 0.0} | {p.name: p.default for p in params}


def lr_at(t: int, T: int, base: float, name: str, warmup_fraction: float = 0.0, **kw) -> float:
    """The learning rate at optimizer step ``t`` of ``T`` for schedule ``name`` with warmup.

    Steps past the end (``t >= T``; a torch scheduler evaluates one after the last step) get the
    last step's value.
    """
    if T < 1:
        raise ValueError(f"a schedule needs at least one optimizer step, got T={T}")
    t = min(max(t, 0), T - 1)
    warmup = round(warmup_fraction * T)
    if t < warmup:
        return base * (t + 1) / warmup
    return SCHEDULES[name](t - warmup, T - warmup, base, **kw)


def make(name: str, base: float, **kw) -> Callable[[int, int], float]:
    """Bind a schedule's name, base LR and knobs: returns ``f(t, T) -> lr``."""
    if name not in SCHEDULES:
        raise ValueError(f"unknown schedule {name!r}; allowed: {', '.join(SCHEDULES)}")
    unknown = sorted(set(kw) - set(knobs(name)))
    if unknown:
        raise ValueError(
            f"schedule {name!r} has no knob {', '.join(unknown)}; allowed: {', '.join(knobs(name))}"
        )

    def schedule(t: int, T: int) -> float:
        return lr_at(t, T, base, name, **kw)

    return schedule
