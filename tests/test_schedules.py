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


@pytest.mark.parametrize("name", [n for n in schedules.SCHEDULES if n != "step"])
def test_single_step_runs_at_base(name):
    # (step's single step is checked against MultiStepLR above: its milestones round to 0 and 1.)
    assert bench_trace(name, 1) == pytest.approx([BASE])


@pytest.mark.parametrize("name", list(schedules.SCHEDULES))
def test_defined_past_the_last_step(name):
    # A torch scheduler evaluates its lambda once more after the last step.
    f = schedules.make(name, base=BASE)
    assert math.isfinite(f(10, 10)) and f(10, 10) == f(9, 10)


def test_unknown_schedule_and_knob_are_named():
    with pytest.raises(ValueError, match="unknown schedule 'linear'; allowed: constant, step"):
        schedules.make("linear", base=BASE)
    with pytest.raises(ValueError, match="no knob gamma; allowed: .*min_lr_ratio"):
        schedules.make("cosine", base=BASE, gamma=0.1)


def test_no_steps_is_an_error():
    with pytest.raises(ValueError, match="at least one optimizer step"):
        schedules.make("cosine", base=BASE)(0, 0)


def test_many_restart_cycles_do_not_overflow():
    starts = schedules.restart_starts(100, cycles=2000, cycle_mult=2.0)
    assert starts[0] == 0 and starts[-1] == 100 and starts == sorted(starts)
    trace = bench_trace("cosine_restarts", 100, cycles=2000)
    assert all(0 <= lr <= BASE for lr in trace)
