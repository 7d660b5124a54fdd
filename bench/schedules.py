"""Learning-rate schedules as pure functions, each with the rules of its knobs beside it.

Every schedule maps ``(t, T)`` to the learning rate used at optimizer step ``t`` (0-based) of a
run that takes ``T`` optimizer steps in all. ``base`` is the optimizer's learning rate (the peak
of the schedules that rise and fall) and the floor is ``base * min_lr_ratio``. Knobs that set a
horizon (milestones, warmup, cooldown) are fractions of training, so one preset works at any
run length.

A schedule is one function registered with ``@schedule(knob=RULE, ...)``: its keyword
arguments after ``(t, T, base)`` are its knobs, their defaults are the defaults, and every knob
needs a rule (``bench.rules``), which the config check and its error messages use. Its YAML
file in ``conf/schedule/`` (same name, same knobs and defaults) makes it a config option.

Warmup is orthogonal to the schedule: ``lr_at`` runs a linear warmup over the first
``round(warmup_fraction * T)`` steps and then the schedule over the remaining steps as if they were
all of training.

The formulas are repeated in the README; keep the two in step.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Sequence

from bench.rules import (
    AT_LEAST_ONE,
    COUNT,
    DECAY,
    FRACTION,
    OPEN_FRACTION,
    POSITIVE,
    Rule,
    number,
    one_of,
    or_null,
)

SCHEDULES: dict[str, Callable[..., float]] = {}
RULES: dict[str, dict[str, Rule]] = {}
WARMUP: dict[str, Rule] = {"warmup_fraction": FRACTION}

MILESTONES: Rule = (
    lambda x: (
        isinstance(x, list | tuple)
        and all(number(m) and 0 <= m <= 1 for m in x)
        and list(x) == sorted(x)
    ),
    "a sorted list of fractions of training in [0, 1], e.g. [0.5, 0.75]",
)


def schedule(**rules: Rule) -> Callable[[Callable[..., float]], Callable[..., float]]:
    """Register a schedule under its function's name, with a rule for each of its knobs."""

    def register(f: Callable[..., float]) -> Callable[..., float]:
        knobs = list(inspect.signature(f).parameters)[3:]
        if set(knobs) != set(rules):
            raise TypeError(
                f"schedule {f.__name__!r}: every knob needs a rule and every rule a knob; "
                f"knobs without a rule: {sorted(set(knobs) - set(rules))}, "
                f"rules without a knob: {sorted(set(rules) - set(knobs))}"
            )
        SCHEDULES[f.__name__] = f
        RULES[f.__name__] = {k: rules[k] for k in knobs}
        return f

    return register


def _anneal(shape: str, start: float, end: float, s: float) -> float:
    """From ``start`` at s=0 to ``end`` at s=1: ``cos`` (half a cosine), ``linear``, or
    ``1-sqrt``."""
    if shape in ("cos", "cosine"):
        return end + (start - end) * (1 + math.cos(math.pi * s)) / 2
    if shape == "1-sqrt":
        return end + (start - end) * (1 - math.sqrt(s))
    return start + (end - start) * s


@schedule()
def constant(t: int, T: int, base: float) -> float:
    """``base`` at every step."""
    return base


@schedule(milestones=MILESTONES, gamma=DECAY)
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


@schedule(min_lr_ratio=FRACTION)
def cosine(t: int, T: int, base: float, min_lr_ratio: float = 0.0) -> float:
    """Half a cosine from ``base`` at t=0 towards the floor at t=T."""
    return _anneal("cos", base, base * min_lr_ratio, t / T)


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


@schedule(cycles=COUNT, cycle_mult=AT_LEAST_ONE, cycle_decay=DECAY, min_lr_ratio=FRACTION)
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
    starts = restart_starts(T, cycles, cycle_mult)
    # The cycle holding t: the last one that starts at or before t and is not empty.
    i = max(j for j in range(cycles) if starts[j] <= t and starts[j + 1] > starts[j])
    length = starts[i + 1] - starts[i]
    return _anneal("cos", base * cycle_decay**i, base * min_lr_ratio, (t - starts[i]) / length)


@schedule(power=POSITIVE, min_lr_ratio=FRACTION)
def polynomial(t: int, T: int, base: float, power: float = 1.0, min_lr_ratio: float = 0.0) -> float:
    """``floor + (base - floor) * (1 - t/T)**power``."""
    floor = base * min_lr_ratio
    return floor + (base - floor) * (1 - t / T) ** power


@schedule(min_lr_ratio=FRACTION)
def linear(t: int, T: int, base: float, min_lr_ratio: float = 0.0) -> float:
    """Straight from ``base`` at t=0 to the floor at t=T: ``floor + (base - floor) * (1 - t/T)``."""
    return _anneal("linear", base, base * min_lr_ratio, t / T)


@schedule(gamma=or_null(DECAY), final_lr_ratio=DECAY)
def exponential(
    t: int, T: int, base: float, gamma: float | None = None, final_lr_ratio: float = 0.01
) -> float:
    """``base * gamma**t``; with ``gamma`` null, ``gamma = final_lr_ratio**(1/T)``, so the LR
    would reach ``base * final_lr_ratio`` at t=T."""
    if gamma is None:
        gamma = final_lr_ratio ** (1 / T)
    return base * gamma**t


def one_cycle_phases(T: int, pct_start: float, three_phase: bool) -> list[float]:
    """The last step of each phase of a one-cycle schedule, as torch's OneCycleLR places them."""
    if three_phase:
        return [pct_start * T - 1, 2 * pct_start * T - 2, T - 1]
    return [pct_start * T - 1, T - 1]


@schedule(
    pct_start=OPEN_FRACTION,
    div_factor=AT_LEAST_ONE,
    final_div_factor=AT_LEAST_ONE,
    anneal_strategy=one_of("cos", "linear"),
    three_phase=(lambda x: isinstance(x, bool), "true or false"),
)
def one_cycle(
    t: int,
    T: int,
    base: float,
    pct_start: float = 0.3,
    div_factor: float = 25.0,
    final_div_factor: float = 1.0e4,
    anneal_strategy: str = "cos",
    three_phase: bool = False,
) -> float:
    """torch's OneCycleLR with ``max_lr = base``: from ``base / div_factor`` up to ``base`` over
    the first ``pct_start`` of training, then down to ``base / div_factor / final_div_factor``
    (``three_phase``: back down to the start over as many steps, then to that minimum)."""
    initial = base / div_factor
    minimum = initial / final_div_factor
    ends = one_cycle_phases(T, pct_start, three_phase)
    levels = [initial, base, initial, minimum] if three_phase else [initial, base, minimum]
    start = 0.0
    for i, end in enumerate(ends):
        if t <= end or i == len(ends) - 1:
            s = (t - start) / (end - start) if end > start else 1.0
            return _anneal(anneal_strategy, levels[i], levels[i + 1], s)
        start = end
    raise AssertionError("unreachable")


@schedule(
    decay_fraction=FRACTION,
    decay_shape=one_of("linear", "1-sqrt", "cosine"),
    min_lr_ratio=FRACTION,
)
def wsd(
    t: int,
    T: int,
    base: float,
    decay_fraction: float = 0.2,
    decay_shape: str = "1-sqrt",
    min_lr_ratio: float = 0.0,
) -> float:
    """Warmup-stable-decay: ``base`` until the cooldown, which takes the last
    ``D = round(decay_fraction * T)`` steps from ``base`` towards the floor at t=T, in the
    ``decay_shape`` (``linear``, ``1-sqrt`` or ``cosine``) of ``s = (t - (T - D)) / D``."""
    D = round(decay_fraction * T)
    if t < T - D:
        return base
    return _anneal(decay_shape, base, base * min_lr_ratio, (t - (T - D)) / D)


@schedule(cycles=COUNT, min_lr_ratio=FRACTION, mode=one_of("triangular", "triangular2"))
def cyclic(
    t: int,
    T: int,
    base: float,
    cycles: int = 4,
    min_lr_ratio: float = 0.1,
    mode: str = "triangular",
) -> float:
    """torch's CyclicLR with ``max_lr = base``, ``base_lr = base * min_lr_ratio`` and
    ``step_size_up = step_size_down = T / (2 * cycles)``: ``cycles`` triangles, each rising
    linearly from the floor to the peak and back; ``triangular2`` halves the height every
    cycle."""
    half = T / (2 * cycles)
    cycle = math.floor(1 + t / (2 * half))
    x = abs(t / half - 2 * cycle + 1)
    height = (base - base * min_lr_ratio) * max(0.0, 1 - x)
    if mode == "triangular2":
        height /= 2 ** (cycle - 1)
    return base * min_lr_ratio + height


# Schedule-free optimizers (the ``schedulefree`` package) take the schedule's place: they run
# with ``constant`` (plus any warmup), and the report lists each beside the schedules under its
# own name. Their class -> (name in the report, the optimizer family they belong to).
SCHEDULE_FREE = {
    "schedulefree.SGDScheduleFree": ("sgd_schedulefree", "torch.optim.SGD"),
    "schedulefree.AdamWScheduleFree": ("adamw_schedulefree", "torch.optim.AdamW"),
}


# What a report compares: every schedule, and every schedule-free optimizer.
ARMS = (*SCHEDULES, *(name for name, _ in SCHEDULE_FREE.values()))


def arm(schedule_name: str, optimizer_target: str) -> str:
    """What a run compares: its schedule, or the schedule-free optimizer that replaces it."""
    return SCHEDULE_FREE.get(optimizer_target, (schedule_name,))[0]


def knobs(name: str) -> dict[str, object]:
    """The knobs a schedule takes, with their defaults (``warmup_fraction`` applies to all)."""
    params = list(inspect.signature(SCHEDULES[name]).parameters.values())[3:]
    return {"warmup_fraction": 0.0} | {p.name: p.default for p in params}


def rules(name: str) -> dict[str, Rule]:
    """The rule of every knob of schedule ``name``, warmup included."""
    return WARMUP | RULES[name]


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


def snapshot_steps(name: str, T: int, warmup_fraction: float = 0.0, **kw) -> list[int]:
    """The steps after which a snapshot ensemble keeps the weights: the last step of every warm
    restart cycle of ``cosine_restarts`` (so the last one is the end of training); none for the
    other schedules."""
    if name != "cosine_restarts":
        return []
    warmup = round(warmup_fraction * T)
    knob = knobs(name) | kw
    starts = restart_starts(T - warmup, knob["cycles"], knob["cycle_mult"])
    return sorted({warmup + end - 1 for end in starts[1:] if end > 0})


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
