"""The statistics behind the report, checked against scipy on small cases with known answers."""

import math

import numpy as np
import pytest
from scipy import stats as sp

from bench.analysis import stats


def test_mean_ci_is_students_t_interval():
    x = np.array([0.81, 0.84, 0.80, 0.86])
    ci = stats.mean_ci(x)
    expected = sp.ttest_1samp(x, 0.0).confidence_interval(0.95)
    assert (ci.low, ci.high) == pytest.approx((expected.low, expected.high))
    assert ci.mean == pytest.approx(x.mean()) and ci.n == 4 and not ci.clipped


def test_mean_ci_is_clipped_to_bounds_and_says_so():
    x = np.array([0.99, 0.90, 1.0])  # the t interval runs past 1
    ci = stats.mean_ci(x, bounds=(0.0, 1.0))
    assert ci.clipped and ci.high == 1.0
    assert ci.low == pytest.approx(sp.ttest_1samp(x, 0).confidence_interval().low)


def test_resolution_floor_widens_only_a_spread_below_one_step():
    identical = np.array([0.98, 0.98, 0.98])
    assert stats.mean_ci(identical).half_width == 0  # Student's interval collapses
    floored = stats.mean_ci(identical, resolution=1 / 288)
    t = sp.t.ppf(0.975, 2)
    assert floored.half_width == pytest.approx(t * (1 / 288) / math.sqrt(3))
    wide = np.array([0.70, 0.80, 0.90])
    assert stats.mean_ci(wide, resolution=1 / 288).half_width == pytest.approx(
        stats.mean_ci(wide).half_width
    )


def test_fewer_than_two_values_have_no_interval():
    assert math.isnan(stats.mean_ci([0.5]).low) and stats.mean_ci([0.5]).mean == 0.5
    assert stats.mean_ci([]).n == 0 and math.isnan(stats.mean_ci([]).mean)
    assert stats.mean_ci([0.5, math.nan]).n == 1  # NaN values are not values


def test_paired_clear_win_matches_scipy():
    rng = np.random.default_rng(0)
    base = rng.normal(0.80, 0.02, size=8)
    better = base + 0.03 + rng.normal(0, 0.005, size=8)  # same seed, same luck, +3 points
    p = stats.paired(better, base)
    t = sp.ttest_rel(better, base)
    ci = t.confidence_interval(0.95)
    assert (p.diff.low, p.diff.high) == pytest.approx((ci.low, ci.high))
    assert p.p_t == pytest.approx(t.pvalue) and p.p_t < 0.001
    assert p.p_wilcoxon == pytest.approx(sp.wilcoxon(better - base).pvalue)
    d = better - base
    assert p.effect_size == pytest.approx(d.mean() / d.std(ddof=1))
    assert p.wins == 1.0 and p.diff.low > 0


def test_paired_clear_loss_and_a_noisy_tie():
    base = np.array([0.80, 0.82, 0.78, 0.81, 0.79])
    loss = stats.paired(base - np.array([0.05, 0.04, 0.06, 0.05, 0.045]), base)
    assert loss.diff.high < 0 and loss.wins == 0.0 and loss.effect_size < 0
    tie = stats.paired(base + np.array([0.01, -0.01, 0.005, -0.008, 0.002]), base)
    assert tie.diff.low < 0 < tie.diff.high and tie.p_t > 0.5
    assert tie.wins == pytest.approx(3 / 5)


def test_pairing_removes_the_seed_to_seed_spread():
    """Seeds differ a lot, the schedule's gain is steady: a paired test sees it, Welch's not."""
    base = np.array([0.60, 0.70, 0.80, 0.90])
    better = base + np.array([0.010, 0.012, 0.011, 0.009])
    assert stats.paired(better, base).p_t < 0.001
    assert sp.ttest_ind(better, base, equal_var=False).pvalue > 0.5


def test_unpaired_seeds_are_dropped():
    x = np.array([0.80, 0.82, math.nan, 0.85])  # seed 2 missing in x
    y = np.array([0.78, 0.80, 0.90, math.nan])  # seed 3 missing in y
    p = stats.paired(x, y)
    assert p.diff.n == 2 and p.diff.mean == pytest.approx(0.02)


def test_identical_differences_without_a_floor():
    p = stats.paired([0.9, 0.8, 0.7], [0.9, 0.8, 0.7])
    assert p.diff.mean == 0 and p.p_t == 1.0 and math.isnan(p.p_wilcoxon) and p.wins == 0.5


def test_holm_matches_the_step_down_definition():
    p = [0.01, 0.04, 0.03, math.nan, 0.005]
    # sorted: 0.005*4, 0.01*3, 0.03*2, 0.04*1, made monotone
    assert stats.holm(p) == pytest.approx([0.03, 0.06, 0.06, math.nan, 0.02], nan_ok=True)
    assert list(stats.holm([0.5, 0.9])) == [1.0, 1.0]  # capped at 1


def test_seeds_needed_clears_the_boundary():
    n = stats.seeds_needed(mean=0.0, sd=0.01, distance=0.005)
    half = lambda k: sp.t.ppf(0.975, k - 1) * 0.01 / math.sqrt(k)  # noqa: E731
    assert half(n) < 0.005 <= half(n - 1)
    assert stats.seeds_needed(0.0, 0.01, 0.0) == math.inf
    assert stats.seeds_needed(0.0, 1.0, 1e-6) == math.inf  # beyond MAX_SEEDS
    assert math.isnan(stats.seeds_needed(0.0, math.nan, 0.1))
