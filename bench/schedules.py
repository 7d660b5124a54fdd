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

Some shapes need a number of steps: ``horizon_problems`` says which knobs do not fit a run of
``T`` steps (a restart cycle or a half-cycle shorter than a step, a milestone past the end, ...);
the config check calls it with the run's ``T`` before any run starts.

Each schedule's docstring is its formula as the reference shows it: ``table()`` (``python -m
bench.schedules``) writes the table of ``conf/README.md`` ("The schedules") from them, and a
test checks that the two agree.
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
    PROPER_FRACTION,
    Rule,
    interval,
    number,
    one_of,
    or_null,
    round_sig,
)

SCHEDULES: dict[str, Callable[..., float]] = {}
RULES: dict[str, dict[str, Rule]] = {}
# At least one step must be left for the schedule (``horizon_problems`` checks it against T).
WARMUP: dict[str, Rule] = {"warmup_fraction": PROPER_FRACTION}

MILESTONES: Rule = (
    lambda x: (
        isinstance(x, list | tuple)
        and all(number(m) and 0 <= m <= 1 for m in x)
        and list(x) == sorted(x)
    ),
    "a sorted list of fractions of training in [0, 1], e.g. [0.5, 0.75]",
)


def schedule(**rules: Rule) -> Callable[[Callable[..., float]], Callable[..., float]]:
    """Register a schedule (``constant``, ``step``, ``cosine``, ...) with a rule per knob."""

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
    """`base` at every step"""
    return base


@schedule(milestones=MILESTONES, gamma=DECAY)
def step(
    t: int,
    T: int,
    base: float,
    milestones: Sequence[float] = (0.5, 0.75),
    gamma: float = 0.1,
) -> float:
    """`base * gamma^k`, k = number of milestones m with `t >= round(m * T)` (milestones are
    fractions of training)"""
    k = sum(1 for m in milestones if t >= round(m * T))
    return base * gamma**k


@schedule(min_lr_ratio=FRACTION)
def cosine(t: int, T: int, base: float, min_lr_ratio: float = 0.0) -> float:
    """`floor + (base - floor) * (1 + cos(pi * t / T)) / 2`"""
    return _anneal("cos", base, base * min_lr_ratio, t / T)


@schedule(min_lr_ratio=FRACTION)
def cosine_floor(t: int, T: int, base: float, min_lr_ratio: float = 0.1) -> float:
    """`cosine` to a floor of 10% of `base` by default: the usual recipe of LLM training, its
    own arm so that a claim can set it against `cosine` to zero or `linear`"""
    return cosine(t, T, base, min_lr_ratio)


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
    """`cycles` cycles whose lengths grow by `cycle_mult` and together fill `T` exactly (the last
    one ends at the last step); in cycle i, starting at `S_i` with length `L_i`, with `peak_i =
    base * cycle_decay^i`: `floor + (peak_i - floor) * (1 + cos(pi * (t - S_i) / L_i)) / 2`"""
    starts = restart_starts(T, cycles, cycle_mult)
    # The cycle holding t: the last one that starts at or before t and is not empty.
    i = max(j for j in range(cycles) if starts[j] <= t and starts[j + 1] > starts[j])
    length = starts[i + 1] - starts[i]
    return _anneal("cos", base * cycle_decay**i, base * min_lr_ratio, (t - starts[i]) / length)


@schedule(power=POSITIVE, min_lr_ratio=FRACTION)
def polynomial(t: int, T: int, base: float, power: float = 2.0, min_lr_ratio: float = 0.0) -> float:
    """torch's `PolynomialLR`: `floor + (base - floor) * (1 - t / T)^power`; `power: 1` is
    `linear`, the default 2 falls faster early and flattens towards the end"""
    floor = base * min_lr_ratio
    return floor + (base - floor) * (1 - t / T) ** power


ROBBINS_MONRO: Rule = (lambda x: number(x) and 0.5 < x <= 1, "a number in (0.5, 1]")


@schedule(power=ROBBINS_MONRO, tau_fraction=DECAY)
def inverse_time(
    t: int, T: int, base: float, power: float = 1.0, tau_fraction: float = 0.1
) -> float:
    """the polynomial decay of stochastic approximation, `base * (1 + t / tau)^-power` with `tau =
    tau_fraction * T`: the Robbins-Monro conditions hold for `0.5 < power <= 1` (the only powers
    allowed); `power: 1` is Keras' `InverseTimeDecay`. It ends at `base * (1 + 1 /
    tau_fraction)^-power`, 1/11 of `base` by default"""
    return base * (1 + t / (tau_fraction * T)) ** -power


@schedule(min_lr_ratio=FRACTION)
def linear(t: int, T: int, base: float, min_lr_ratio: float = 0.0) -> float:
    """`floor + (base - floor) * (1 - t / T)`: straight down to the floor"""
    return _anneal("linear", base, base * min_lr_ratio, t / T)


@schedule(gamma=or_null(DECAY), final_lr_ratio=DECAY)
def exponential(
    t: int, T: int, base: float, gamma: float | None = None, final_lr_ratio: float = 0.01
) -> float:
    """`base * gamma^t`; with `gamma: null`, `gamma = final_lr_ratio^(1/T)`, so the LR would reach
    `base * final_lr_ratio` at `t = T` (`final_lr_ratio` is unused when `gamma` is set)"""
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
    """torch's `OneCycleLR` with `max_lr = base`: with `lo = base / div_factor`, phase 1 goes from
    `lo` up to `base` over steps `0 .. pct_start * T - 1`, phase 2 from `base` down to `lo /
    final_div_factor` by step `T - 1`; in each phase, with `s` the fraction of the phase done,
    `cos`: `end + (start - end) * (1 + cos(pi * s)) / 2`, `linear`: `start + (end - start) * s`.
    `three_phase`: up over `pct_start * T` steps, back down to `lo` over as many, then to the
    minimum. Momentum is not cycled"""
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
    """warmup-stable-decay: `base` until the cooldown, which takes the last `D =
    round(decay_fraction * T)` steps; with `s = (t - (T - D)) / D`: `linear`: `floor + (base -
    floor) * (1 - s)`, `1-sqrt`: `floor + (base - floor) * (1 - sqrt(s))`, `cosine`: `floor +
    (base - floor) * (1 + cos(pi * s)) / 2`"""
    D = round(decay_fraction * T)
    if t < T - D:
        return base
    return _anneal(decay_shape, base, base * min_lr_ratio, (t - (T - D)) / D)


# The schedules that hold `base` until a cooldown over the last `decay_fraction` of the run: a
# run of one branches from a constant-LR run's checkpoint where its cooldown starts.
COOLDOWNS = ("wsd", "wsd_linear")


@schedule(decay_fraction=FRACTION, min_lr_ratio=FRACTION)
def wsd_linear(
    t: int, T: int, base: float, decay_fraction: float = 0.2, min_lr_ratio: float = 0.0
) -> float:
    """`wsd` with a linear cooldown (`decay_shape: linear`): its own arm, so that a claim can
    set `wsd`'s 1-sqrt cooldown against a linear one"""
    return wsd(t, T, base, decay_fraction, "linear", min_lr_ratio)


@schedule(cycles=COUNT, min_lr_ratio=FRACTION, mode=one_of("triangular", "triangular2"))
def cyclic(
    t: int,
    T: int,
    base: float,
    cycles: int = 4,
    min_lr_ratio: float = 0.1,
    mode: str = "triangular",
) -> float:
    """torch's `CyclicLR` (triangular) with `max_lr = base`, `base_lr = floor` and half-cycles of
    `h = T / (2 * cycles)` steps: `floor + (base - floor) * max(0, 1 - abs(t / h - 2c + 1))`, `c
    = floor(1 + t / (2h))` the cycle; `triangular2` halves the height every cycle (`/ 2^(c-1)`)"""
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


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}{'s' * (count != 1)}"


def _span(low: float, high: float) -> str | None:
    bounds = interval(low, high)
    return None if bounds is None else f"[{bounds[0]:g}, {bounds[1]:g}]"


def _most_cycles(S: int, cycle_mult: float, cycles: int) -> int:
    """The most warm-restart cycles (fewer than ``cycles``, which do not fit) that fit ``S`` steps
    with every cycle at least one step long."""

    def fits(c: int) -> bool:
        starts = restart_starts(S, c, cycle_mult)
        return all(b > a for a, b in zip(starts, starts[1:], strict=False))

    good, bad = 1, cycles  # one cycle always fits: it is the whole run
    while bad - good > 1:
        mid = (good + bad) // 2
        good, bad = (mid, bad) if fits(mid) else (good, mid)
    return good


def horizon_problems(
    name: str, T: int, *, run: str | None = None, warmup_fraction: float = 0.0, **kw
) -> list[str]:
    """What goes wrong when schedule ``name`` with knobs ``kw`` runs for ``T`` optimizer steps
    (``T >= 1``), as ``'schedule.KNOB: got X for <run>: ...; allowed: ...'`` lines; empty when the
    shape fits. ``run`` describes the run (default: "a run of T optimizer steps"). The knobs' own
    rules (``rules(name)``) are assumed to hold. Pure.

    - warmup: ``w = round(warmup_fraction * T)`` must leave the schedule a step (``w < T``), and
      a warmup must have ``w >= 2`` steps to do anything (a 1-step warmup runs at ``base``);
    - ``step``: a milestone with ``round(m * S) >= S`` never applies (S: the schedule's steps);
    - ``cosine_restarts``: every restart cycle at least one step;
    - ``cyclic``: half-cycles ``S / (2 * cycles)`` of at least one step;
    - ``one_cycle``: every phase at least one step (so ``pct_start <= 0.5`` with three phases);
    - ``wsd``: a cooldown (``decay_fraction > 0``) of ``round(decay_fraction * S) >= 2`` steps
      (a 1-step cooldown stays at ``base``).
    ``constant``, ``cosine``, ``polynomial``, ``inverse_time``, ``linear`` and ``exponential`` fit
    any ``T``.
    """
    run = run or f"a run of {_n(T, 'optimizer step')}"
    knob = knobs(name) | kw
    found = []
    w = round(warmup_fraction * T)
    if warmup_fraction > 0 and not 2 <= w < T:
        span = _span(2 / T, (T - 1) / T)
        allowed = "0 (no warmup)" + (
            f" or a number in {span} here (a warmup of 2 or more steps that leaves the schedule "
            "at least one)"
            if span
            else f"; {_n(T, 'step')} is too short for a warmup"
        )
        what = (
            "all of them, none left for the schedule"
            if w >= T
            else "no warmup at all (a warmup of w steps starts at base / w)"
        )
        found.append(
            f"schedule.warmup_fraction: got {warmup_fraction} for {run}: the warmup would take "
            f"round({warmup_fraction} * {T}) = {_n(w, 'step')}: {what}; allowed: {allowed}"
        )
        if w >= T:
            return found
    S = T - w  # the schedule's own steps
    steps = _n(S, "step") if w == 0 else f"the {_n(S, 'step')} after the warmup"
    too_short = f"none: {steps} is too short for {name}; pick another schedule or train longer"

    if name == "step":
        late = [m for m in knob["milestones"] if round(m * S) >= S]
        if late:
            found.append(
                f"schedule.milestones: got {list(knob['milestones'])} for {run}: "
                f"milestone {', '.join(str(m) for m in late)} would fall at step {S} or later of "
                f"{steps} (0..{S - 1}) and never apply; allowed: fractions up to "
                f"{round_sig((S - 1) / S, 3, up=False):g} here (round(m * {S}) < {S})"
            )
    elif name == "cosine_restarts":
        cycles, mult = knob["cycles"], knob["cycle_mult"]
        starts = restart_starts(S, cycles, mult)
        shortest = min(b - a for a, b in zip(starts, starts[1:], strict=False))
        if shortest < 1:
            most = _most_cycles(S, mult, cycles)
            found.append(
                f"schedule.cycles: got {cycles} for {run}: with cycle_mult={mult:g} the "
                f"shortest restart cycle would be {shortest} steps; allowed: an integer in "
                f"[1, {most}] here (every cycle at least one step"
                + (", more with a smaller cycle_mult)" if mult > 1 else ")")
            )
    elif name == "cyclic":
        cycles = knob["cycles"]
        half = S / (2 * cycles)
        if half < 1:
            most = S // 2
            allowed = (
                f"an integer in [1, {most}] here (half-cycles of at least one step)"
                if most >= 1
                else too_short
            )
            found.append(
                f"schedule.cycles: got {cycles} for {run}: each half-cycle (the rise or the "
                f"fall) would be {half:.3g} steps; allowed: {allowed}"
            )
    elif name == "one_cycle":
        pct, three = knob["pct_start"], knob["three_phase"]
        ends = one_cycle_phases(S, pct, three)
        lengths = [ends[0], *(b - a for a, b in zip(ends, ends[1:], strict=False))]
        if min(lengths) < 1:
            span = _span(2 / S, 0.5 if three else (S - 1) / S)
            allowed = (
                f"a number in {span} here (every phase at least one step)" if span else too_short
            )
            found.append(
                f"schedule.pct_start: got {pct}{' with three_phase=true' * three} for {run}: "
                f"its phases would span {', '.join(f'{x:.3g}' for x in lengths)} steps; "
                f"allowed: {allowed}"
            )
    elif name in COOLDOWNS:
        fraction = knob["decay_fraction"]
        D = round(fraction * S)
        if fraction > 0 and D < 2:
            span = _span(2 / S, 1.0)
            allowed = "0 (no cooldown)" + (
                f" or a number in {span} here (a cooldown of 2 or more steps)"
                if span
                else f"; {steps} is too short for a cooldown"
            )
            found.append(
                f"schedule.decay_fraction: got {fraction} for {run}: the cooldown would take "
                f"round({fraction} * {S}) = {_n(D, 'step')}, which leaves the LR at base; "
                f"allowed: {allowed}"
            )
    return found


def problems(name: object, knobs: dict[str, object], values: bool = True) -> list[str]:
    """What is wrong with schedule ``name`` and its ``knobs`` (warmup included; with
    ``values=False`` their names only), as ``'schedule.<field>: got X; allowed: Y'`` lines;
    empty when all are right. The run's length is checked apart (``horizon_problems``)."""
    if name not in SCHEDULES:
        return [f"schedule.name: got {name!r}; allowed: {', '.join(SCHEDULES)}"]
    allowed = rules(name)
    found = []
    for knob, value in knobs.items():
        if knob not in allowed:
            found.append(
                f"schedule.{knob}: not a knob of the {name!r} schedule; "
                f"allowed: {', '.join(allowed)}"
            )
        elif values and not allowed[knob][0](value):
            found.append(f"schedule.{knob}: got {value!r}; allowed: {allowed[knob][1]}")
    return found


def make(name: str, base: float, **kw) -> Callable[[int, int], float]:
    """Bind a schedule's name, base LR and knobs (their names checked, ``problems``; their
    values may be any the formula takes): returns ``f(t, T) -> lr``. A run's schedule comes
    checked already (``bench.spec.Schedule``)."""
    found = problems(name, kw, values=False)
    if found:
        raise ValueError("; ".join(found))

    def schedule(t: int, T: int) -> float:
        return lr_at(t, T, base, name, **kw)

    return schedule


def _yaml(value: object) -> str:
    """A knob's default as its YAML file writes it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_yaml(v) for v in value) + "]"
    return str(value)


def table() -> str:
    """The reference's table of the schedules (``conf/README.md``), made from each schedule's
    docstring and its knobs' defaults."""
    rows = ["| schedule | LR at step t | knobs (defaults) |", "| --- | --- | --- |"]
    for name, f in SCHEDULES.items():
        formula = " ".join(line.strip() for line in (f.__doc__ or "").strip().splitlines())
        defaults = {k: v for k, v in knobs(name).items() if k != "warmup_fraction"}
        shown = ", ".join(f"`{k}: {_yaml(v)}`" for k, v in defaults.items())
        rows.append(f"| `{name}` | {formula} | {shown} |")
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    print(table(), end="")
