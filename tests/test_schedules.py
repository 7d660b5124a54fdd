"""Each schedule against the matching torch.optim.lr_scheduler class, stepped once per step."""

import math

import pytest
import torch
from torch.optim import lr_scheduler as torch_sched

from bench import schedules

BASE = 0.1


def torch_trace(make_scheduler, T: int) -> list[float]:
    """The LR a torch scheduler gives each of T optimizer steps."""
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=BASE)
    scheduler = make_scheduler(optimizer)
    trace = []
    for _ in range(T):
        trace.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return trace


def bench_trace(name: str, T: int, **kw) -> list[float]:
    f = schedules.make(name, base=BASE, **kw)
    return [f(t, T) for t in range(T)]


@pytest.mark.parametrize("T", [1, 7, 100])
def test_constant_matches_torch(T):
    expected = torch_trace(lambda o: torch_sched.ConstantLR(o, factor=1.0, total_iters=0), T)
    assert bench_trace("constant", T) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("T", "milestones", "gamma"),
    [
        (100, [0.5, 0.75], 0.1),
        (37, [0.3], 0.5),
        (10, [0.0, 1.0], 0.1),
        (50, [0.25, 0.5, 0.9], 0.2),
        (1, [0.5, 0.75], 0.1),
    ],
)
def test_step_matches_multistep(T, milestones, gamma):
    at = [round(m * T) for m in milestones]
    expected = torch_trace(lambda o: torch_sched.MultiStepLR(o, milestones=at, gamma=gamma), T)
    assert bench_trace("step", T, milestones=milestones, gamma=gamma) == pytest.approx(expected)


def test_step_milestones_at_the_ends():
    # A milestone at 0 applies from the first step, one at 1 never applies.
    assert bench_trace("step", 10, milestones=[0.0], gamma=0.5) == pytest.approx([0.05] * 10)
    assert bench_trace("step", 10, milestones=[1.0], gamma=0.5) == pytest.approx([BASE] * 10)


@pytest.mark.parametrize(("T", "ratio"), [(100, 0.0), (33, 0.01), (2, 0.1)])
def test_cosine_matches_cosine_annealing(T, ratio):
    expected = torch_trace(
        lambda o: torch_sched.CosineAnnealingLR(o, T_max=T, eta_min=BASE * ratio), T
    )
    got = bench_trace("cosine", T, min_lr_ratio=ratio)
    assert got == pytest.approx(expected, rel=1e-9, abs=1e-12)


@pytest.mark.parametrize(("T", "cycles", "mult"), [(70, 3, 2), (90, 3, 1), (150, 4, 2), (40, 2, 3)])
def test_cosine_restarts_matches_warm_restarts(T, cycles, mult):
    # Chosen so the first cycle is a whole number of steps: torch needs an integer T_0.
    first = T // sum(mult**i for i in range(cycles))
    expected = torch_trace(
        lambda o: torch_sched.CosineAnnealingWarmRestarts(o, T_0=first, T_mult=mult, eta_min=0.001),
        T,
    )
    got = bench_trace("cosine_restarts", T, cycles=cycles, cycle_mult=mult, min_lr_ratio=0.01)
    assert got == pytest.approx(expected, rel=1e-9, abs=1e-12)


def test_cosine_restarts_cycles_fill_training_and_decay():
    T = 100
    starts = schedules.restart_starts(T, cycles=3, cycle_mult=2)
    assert starts[0] == 0 and starts[-1] == T
    lengths = [b - a for a, b in zip(starts, starts[1:], strict=False)]
    assert lengths[1] == pytest.approx(2 * lengths[0], abs=1)
    assert lengths[2] == pytest.approx(2 * lengths[1], abs=1)
    trace = bench_trace("cosine_restarts", T, cycles=3, cycle_mult=2, cycle_decay=0.5)
    assert [trace[s] for s in starts[:-1]] == pytest.approx([BASE, BASE / 2, BASE / 4])
    # The last cycle ends at the last step, just above the floor.
    assert trace[-1] < 0.01 * BASE


@pytest.mark.parametrize(("T", "power"), [(100, 1.0), (50, 2.0), (9, 0.5)])
def test_polynomial_matches_polynomial_lr(T, power):
    expected = torch_trace(lambda o: torch_sched.PolynomialLR(o, total_iters=T, power=power), T)
    assert bench_trace("polynomial", T, power=power) == pytest.approx(expected, rel=1e-9)


def test_polynomial_floor():
    T, ratio = 20, 0.1
    got = bench_trace("polynomial", T, power=1.0, min_lr_ratio=ratio)
    floor = BASE * ratio
    assert got == pytest.approx([floor + (BASE - floor) * (1 - t / T) for t in range(T)])


def test_polynomial_by_default_is_not_linear():
    """Under its default knobs `polynomial` is a study arm of its own: torch's PolynomialLR at
    power 2, not the straight line `linear` already is (power 1 would duplicate it exactly)."""
    T = 100
    poly = bench_trace("polynomial", T, **_yaml_knobs("polynomial"))
    linear = bench_trace("linear", T, **_yaml_knobs("linear"))
    assert max(abs(a - b) for a, b in zip(poly, linear, strict=True)) > 0.2 * BASE
    assert bench_trace("polynomial", T, power=1.0) == pytest.approx(linear)


def _yaml_knobs(name: str) -> dict:
    """The knobs of conf/schedule/NAME.yaml, the defaults a user gets."""
    from omegaconf import OmegaConf

    from bench.config import CONFIG_DIR

    node = OmegaConf.to_container(OmegaConf.load(CONFIG_DIR / "schedule" / f"{name}.yaml"))
    return {k: v for k, v in node.items() if k != "name"}


@pytest.mark.parametrize(("T", "power", "tau_fraction"), [(100, 1.0, 0.1), (60, 0.6, 0.5)])
def test_inverse_time_is_the_stochastic_approximation_decay(T, power, tau_fraction):
    """lr proportional to (1 + t/tau)^-power; with power 1, Keras' InverseTimeDecay: lr / (1 +
    decay_rate * t / decay_steps) with decay_rate 1 and decay_steps tau, which torch's LambdaLR
    reproduces here."""
    tau = tau_fraction * T
    expected = torch_trace(lambda o: torch_sched.LambdaLR(o, lambda t: (1 + t / tau) ** -power), T)
    got = bench_trace("inverse_time", T, power=power, tau_fraction=tau_fraction)
    assert got == pytest.approx(expected, rel=1e-9)
    # it never reaches zero: one step past the end it is base * (1 + 1/tau_fraction)^-power
    end = schedules.make("inverse_time", BASE, power=power, tau_fraction=tau_fraction)
    assert schedules.SCHEDULES["inverse_time"](T, T, BASE, power, tau_fraction) == pytest.approx(
        BASE * (1 + 1 / tau_fraction) ** -power
    )
    assert end(T - 1, T) > BASE * (1 + 1 / tau_fraction) ** -power


def test_inverse_time_refuses_powers_outside_the_robbins_monro_range():
    rule, allowed = schedules.rules("inverse_time")["power"]
    assert rule(0.75) and rule(1.0) and not rule(0.5) and not rule(1.5)
    assert allowed == "a number in (0.5, 1]"


@pytest.mark.parametrize(("T", "fraction"), [(100, 0.1), (50, 0.3)])
def test_warmup_then_cosine_matches_sequential(T, fraction):
    W = round(fraction * T)
    expected = torch_trace(
        lambda o: torch_sched.SequentialLR(
            o,
            [
                torch_sched.LinearLR(o, start_factor=1 / W, end_factor=1.0, total_iters=W - 1),
                torch_sched.CosineAnnealingLR(o, T_max=T - W),
            ],
            milestones=[W],
        ),
        T,
    )
    assert bench_trace("cosine", T, warmup_fraction=fraction) == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("name", list(schedules.SCHEDULES))
def test_warmup_over_everything_is_linear(name):
    T = 12
    assert bench_trace(name, T, warmup_fraction=1.0) == pytest.approx(
        [BASE * (t + 1) / T for t in range(T)]
    )


@pytest.mark.parametrize(
    "name", [n for n in schedules.SCHEDULES if n not in ("step", "one_cycle", "cyclic")]
)
def test_single_step_runs_at_base(name):
    # (step's single step is checked against MultiStepLR above: its milestones round to 0 and 1;
    # one_cycle and cyclic start below the peak by design.)
    assert bench_trace(name, 1) == pytest.approx([BASE])


@pytest.mark.parametrize("name", list(schedules.SCHEDULES))
def test_defined_past_the_last_step(name):
    # A torch scheduler evaluates its lambda once more after the last step.
    f = schedules.make(name, base=BASE)
    assert math.isfinite(f(10, 10)) and f(10, 10) == f(9, 10)


def test_unknown_schedule_and_knob_are_named():
    with pytest.raises(ValueError, match="schedule.name: got .sine.; allowed: constant, step"):
        schedules.make("sine", base=BASE)
    with pytest.raises(ValueError, match="gamma: not a knob of the .cosine.*min_lr_ratio"):
        schedules.make("cosine", base=BASE, gamma=0.1)


def test_no_steps_is_an_error():
    with pytest.raises(ValueError, match="at least one optimizer step"):
        schedules.make("cosine", base=BASE)(0, 0)


def test_many_restart_cycles_do_not_overflow():
    starts = schedules.restart_starts(100, cycles=2000, cycle_mult=2.0)
    assert starts[0] == 0 and starts[-1] == 100 and starts == sorted(starts)
    trace = bench_trace("cosine_restarts", 100, cycles=2000)
    assert all(0 <= lr <= BASE for lr in trace)


@pytest.mark.parametrize(("T", "ratio"), [(100, 0.0), (33, 0.05), (1, 0.0)])
def test_linear_matches_linear_lr(T, ratio):
    expected = torch_trace(
        lambda o: torch_sched.LinearLR(o, start_factor=1.0, end_factor=ratio, total_iters=T), T
    )
    assert bench_trace("linear", T, min_lr_ratio=ratio) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize(("T", "gamma"), [(50, 0.9), (200, 0.99), (3, 1.0)])
def test_exponential_matches_exponential_lr(T, gamma):
    expected = torch_trace(lambda o: torch_sched.ExponentialLR(o, gamma=gamma), T)
    assert bench_trace("exponential", T, gamma=gamma) == pytest.approx(expected, rel=1e-9)


def test_exponential_from_the_final_lr():
    T, ratio = 40, 0.01
    trace = bench_trace("exponential", T, final_lr_ratio=ratio)
    gamma = ratio ** (1 / T)
    assert trace == pytest.approx([BASE * gamma**t for t in range(T)])
    assert trace[-1] * gamma == pytest.approx(BASE * ratio)  # the step after the last


@pytest.mark.parametrize(
    ("T", "knobs"),
    [
        (100, {}),
        (57, {"pct_start": 0.25, "anneal_strategy": "linear"}),
        (80, {"div_factor": 10.0, "final_div_factor": 100.0}),
        (90, {"three_phase": True, "pct_start": 0.2}),
        (61, {"three_phase": True, "anneal_strategy": "linear"}),
    ],
)
def test_one_cycle_matches_one_cycle_lr(T, knobs):
    defaults = {"pct_start": 0.3, "div_factor": 25.0, "final_div_factor": 1e4}
    expected = torch_trace(
        lambda o: torch_sched.OneCycleLR(
            o, max_lr=BASE, total_steps=T, cycle_momentum=False, **(defaults | knobs)
        ),
        T,
    )
    assert bench_trace("one_cycle", T, **knobs) == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize(("T", "fraction", "ratio"), [(100, 0.2, 0.0), (73, 0.1, 0.05)])
def test_wsd_linear_cooldown_matches_constant_then_linear(T, fraction, ratio):
    D = round(fraction * T)
    expected = torch_trace(
        lambda o: torch_sched.SequentialLR(
            o,
            [
                torch_sched.ConstantLR(o, factor=1.0, total_iters=0),
                torch_sched.LinearLR(o, start_factor=1.0, end_factor=ratio, total_iters=D),
            ],
            milestones=[T - D],
        ),
        T,
    )
    got = bench_trace("wsd", T, decay_fraction=fraction, decay_shape="linear", min_lr_ratio=ratio)
    assert got == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize(
    ("shape", "at"),
    [
        ("1-sqrt", lambda s: 1 - math.sqrt(s)),
        ("cosine", lambda s: (1 + math.cos(math.pi * s)) / 2),
        ("linear", lambda s: 1 - s),
    ],
)
def test_wsd_cooldown_shapes(shape, at):
    T, D = 50, 10
    trace = bench_trace("wsd", T, decay_fraction=D / T, decay_shape=shape)
    assert trace[: T - D] == pytest.approx([BASE] * (T - D))
    assert trace[T - D :] == pytest.approx([BASE * at(i / D) for i in range(D)])


def test_wsd_without_cooldown_is_constant():
    assert bench_trace("wsd", 30, decay_fraction=0.0) == pytest.approx([BASE] * 30)


@pytest.mark.parametrize(
    ("T", "cycles", "ratio", "mode"),
    [(100, 4, 0.1, "triangular"), (90, 3, 0.0, "triangular2"), (37, 2, 0.2, "triangular")],
)
def test_cyclic_matches_cyclic_lr(T, cycles, ratio, mode):
    half = T / (2 * cycles)
    expected = torch_trace(
        lambda o: torch_sched.CyclicLR(
            o,
            base_lr=BASE * ratio,
            max_lr=BASE,
            step_size_up=half,
            step_size_down=half,
            mode=mode,
            cycle_momentum=False,
        ),
        T,
    )
    got = bench_trace("cyclic", T, cycles=cycles, min_lr_ratio=ratio, mode=mode)
    assert got == pytest.approx(expected, rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("name", list(schedules.SCHEDULES))
def test_warmup_then_any_schedule(name):
    T, W = 40, 8
    plain = bench_trace(name, T - W)
    assert bench_trace(name, T, warmup_fraction=W / T) == pytest.approx(
        [BASE * (t + 1) / W for t in range(W)] + plain
    )


def test_snapshots_at_the_end_of_every_restart_cycle():
    # 3 cycles doubling in length over 70 steps: 10, 20, 40 steps.
    assert schedules.snapshot_steps("cosine_restarts", 70) == [9, 29, 69]
    assert schedules.snapshot_steps("cosine_restarts", 70, cycles=2, cycle_mult=1.0) == [34, 69]
    # after a warmup of 7 steps the cycles share the remaining 63
    ends = schedules.snapshot_steps("cosine_restarts", 70, warmup_fraction=0.1)
    starts = schedules.restart_starts(63, 3, 2.0)
    assert ends == [7 + s - 1 for s in starts[1:]]
    trace = bench_trace("cosine_restarts", 70, warmup_fraction=0.1)
    assert all(trace[e + 1] > trace[e] for e in ends[:-1])  # each snapshot precedes a restart
    assert schedules.snapshot_steps("cosine", 70) == []


def test_every_knob_needs_a_rule():
    with pytest.raises(TypeError, match=r"knobs without a rule: \['sharpness'\]"):

        @schedules.schedule()
        def unruly(t, T, base, sharpness=1.0):
            return base

    assert "unruly" not in schedules.SCHEDULES


@pytest.mark.parametrize("name", list(schedules.SCHEDULES))
def test_every_knob_has_a_rule_that_accepts_its_default(name):
    rules = schedules.rules(name)
    assert set(rules) == set(schedules.knobs(name))
    for knob, default in schedules.knobs(name).items():
        test, allowed = rules[knob]
        value = list(default) if isinstance(default, tuple) else default
        assert test(value), f"{name}.{knob}: default {default!r} is not {allowed}"
