"""Schedules against the run's length: what ``horizon_problems`` rejects really goes wrong in
the formulas, and the ranges it suggests do fit."""

import re

import pytest

from bench import schedules

BASE = 0.1


def trace(name: str, T: int, **kw) -> list[float]:
    f = schedules.make(name, base=BASE, **kw)
    return [f(t, T) for t in range(T)]


@pytest.mark.parametrize("name", list(schedules.SCHEDULES))
def test_default_knobs_fit_a_short_run(name):
    assert schedules.horizon_problems(name, 20) == []


def test_a_warmup_rounded_to_one_step_or_none_is_no_warmup():
    for fraction in (0.02, 0.05):  # round(0.4) = 0 and round(1.0) = 1 step of 20
        (problem,) = schedules.horizon_problems("cosine", 20, warmup_fraction=fraction)
        assert problem.startswith(f"schedule.warmup_fraction: got {fraction} for a run of 20")
        assert "no warmup at all" in problem
        assert trace("cosine", 20, warmup_fraction=fraction)[0] == BASE  # starts at the peak


def test_a_warmup_rounded_to_all_of_training_leaves_no_schedule():
    (problem,) = schedules.horizon_problems("cosine", 20, warmup_fraction=0.98)
    assert "round(0.98 * 20) = 20 steps: all of them, none left for the schedule" in problem
    assert trace("cosine", 20, warmup_fraction=0.98) == trace("constant", 20, warmup_fraction=0.98)


def test_a_one_step_cooldown_never_lowers_the_lr():
    (problem,) = schedules.horizon_problems("wsd", 5)  # round(0.2 * 5) = 1
    assert problem.startswith("schedule.decay_fraction: got 0.2 for a run of 5 optimizer steps")
    assert trace("wsd", 5) == [BASE] * 5
    assert schedules.horizon_problems("wsd", 5, decay_fraction=0.0) == []  # no cooldown: asked


def test_a_milestone_at_the_end_never_applies():
    (problem,) = schedules.horizon_problems("step", 40, milestones=[0.5, 1.0])
    assert "milestone 1.0 would fall at step 40 or later" in problem
    assert trace("step", 40, milestones=[0.5, 1.0]) == trace("step", 40, milestones=[0.5])


def test_empty_restart_cycles_are_dropped():
    (problem,) = schedules.horizon_problems("cosine_restarts", 10, cycles=6)
    assert "the shortest restart cycle would be 0 steps" in problem
    starts = schedules.restart_starts(10, 6, 2.0)
    assert any(b == a for a, b in zip(starts, starts[1:], strict=False))  # a cycle of no step


def test_half_cycles_under_a_step_alias_the_triangles():
    (problem,) = schedules.horizon_problems("cyclic", 7)  # 4 cycles: half-cycles of 0.875
    assert "each half-cycle (the rise or the fall) would be 0.875 steps" in problem
    peaks = [t for t, lr in enumerate(trace("cyclic", 7)) if lr == pytest.approx(BASE)]
    assert len(peaks) < 4  # fewer peaks than the cycles asked for


def test_three_phases_past_the_middle_never_reach_the_minimum():
    (problem,) = schedules.horizon_problems("one_cycle", 100, pct_start=0.6, three_phase=True)
    assert problem.startswith("schedule.pct_start: got 0.6 with three_phase=true")
    minimum = BASE / 25 / 1e4
    lrs = trace("one_cycle", 100, pct_start=0.6, three_phase=True)
    assert min(lrs) > 100 * minimum


CASES = [
    ("cosine", 20, {"warmup_fraction": 0.98}),
    ("cosine", 270, {"warmup_fraction": 0.003}),
    ("cosine", 7, {"warmup_fraction": 0.01}),
    ("wsd", 5, {}),
    ("wsd", 270, {"decay_fraction": 0.005}),
    ("one_cycle", 5, {}),
    ("one_cycle", 50, {"pct_start": 0.02}),
    ("one_cycle", 270, {"pct_start": 0.6, "three_phase": True}),
    ("one_cycle", 23, {"pct_start": 0.99}),
]


@pytest.mark.parametrize(("name", "T", "knobs"), CASES)
def test_the_suggested_fractions_fit(name, T, knobs):
    (problem,) = schedules.horizon_problems(name, T, **knobs)
    field = problem.split(":")[0].removeprefix("schedule.")
    low, high = map(float, re.search(r"a number in \[([\d.e-]+), ([\d.e-]+)\]", problem).groups())
    for value in (low, high, (low + high) / 2):
        assert schedules.horizon_problems(name, T, **(knobs | {field: value})) == [], value


@pytest.mark.parametrize(
    ("name", "T", "knobs"),
    [
        ("cosine_restarts", 270, {"cycles": 1000}),
        ("cosine_restarts", 40, {"cycles": 50, "cycle_mult": 1.0}),
        ("cosine_restarts", 100, {"cycles": 20, "cycle_mult": 1.3}),
        ("cyclic", 7, {}),
        ("cyclic", 270, {"cycles": 200}),
    ],
)
def test_the_suggested_counts_fit_and_one_more_does_not(name, T, knobs):
    (problem,) = schedules.horizon_problems(name, T, **knobs)
    most = int(re.search(r"an integer in \[1, (\d+)\]", problem).group(1))
    assert schedules.horizon_problems(name, T, **(knobs | {"cycles": most})) == []
    assert schedules.horizon_problems(name, T, **(knobs | {"cycles": most + 1})) != []


def test_a_run_too_short_for_a_shape_says_so():
    (problem,) = schedules.horizon_problems("one_cycle", 2)
    assert problem.endswith(
        "allowed: none: 2 steps is too short for one_cycle; pick another schedule or train longer"
    )
