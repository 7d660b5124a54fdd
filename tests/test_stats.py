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


def test_wilcoxon_ranks_on_the_evaluation_grid_not_float_noise():
    """Differences of +1, -2 and +2 images out of 500 (+0.2, -0.4, +0.4 points) as float32
    accuracies store them: the noise makes the two 2-image differences unequal, which breaks
    their tie and moves the p-value; on the grid they are a tie again."""
    baseline = np.array([370, 376, 413]) / 500  # images right out of 500, per seed
    other = baseline + np.array([1, -2, 2]) / 500
    a, b = np.float32(other), np.float32(baseline)  # as the store holds them
    stored = a.astype(float) - b.astype(float)
    assert len(set(np.abs(stored))) == 3  # the noise: three distinct magnitudes
    on_grid = stats.wilcoxon(stored, resolution=1 / 500)
    assert on_grid == pytest.approx(sp.wilcoxon([1, -2, 2], zero_method="zsplit").pvalue)
    assert on_grid == pytest.approx(1.0)
    assert stats.wilcoxon(stored) == pytest.approx(0.75)  # what ranking the noise gives
    assert stats.paired(a, b, 1 / 500).p_wilcoxon == pytest.approx(1.0)


def test_wilcoxon_is_shown_only_where_it_can_reach_significance():
    assert [n for n in range(1, 10) if stats.wilcoxon_reaches(n)] == [6, 7, 8, 9]
    # all six signs alike: the smallest p it can give, 2/64, under 5%
    assert sp.wilcoxon([1, 2, 3, 4, 5, 6]).pvalue == pytest.approx(2 / 64)
    assert sp.wilcoxon([1, 2, 3, 4, 5]).pvalue > 0.05


def test_power_is_the_noncentral_t_and_matches_a_simulation():
    rng = np.random.default_rng(1)
    n, sd, gap = 8, 1.0, 1.0
    draws = rng.normal(gap, sd, size=(20000, n))  # true mean 1 above a boundary at 0
    half = sp.t.ppf(0.975, n - 1) * draws.std(axis=1, ddof=1) / math.sqrt(n)
    simulated = np.mean(draws.mean(axis=1) - half > 0)
    assert stats.power([gap], sd, n) == pytest.approx(simulated, abs=0.01)
    assert 0.5 < simulated < 0.9  # not a trivial case


def test_seeds_for_power_reach_80_percent_and_no_fewer_do():
    n = stats.seeds_for_power([0.5], 1.0)
    assert stats.power([0.5], 1.0, int(n)) >= 0.8 > stats.power([0.5], 1.0, int(n) - 1)
    # a precision rule (the half-width below the distance) asks for about half as many
    precision = next(k for k in range(2, 200) if sp.t.ppf(0.975, k - 1) / math.sqrt(k) < 0.5)
    assert n > 1.5 * precision
    assert stats.seeds_for_power([0.0], 1.0) == math.inf  # on the edge: nothing decides
    assert stats.seeds_for_power([1e-6], 1.0) == math.inf  # beyond MAX_SEEDS
    assert math.isnan(stats.seeds_for_power([0.5], math.nan))
    low, high = stats.sd_interval(1.0, 3)
    assert low < 1.0 < high and high / low > 10  # three seeds hardly know their spread
    assert stats.seeds_for_power([0.5], high) > stats.seeds_for_power([0.5], low)


def test_the_confidence_sequence_keeps_its_error_rate_over_repeated_looks():
    """Seeds come in rounds and the interval is looked at after each: a t interval looked at
    every round excludes the true mean far more often than 5% of the time; the confidence
    sequence does not, at any number of looks."""
    rng = np.random.default_rng(0)
    looks = list(range(3, 31))  # a look after every seed, from 3 to 30
    sims = 1000
    naive = sequence = 0
    for _ in range(sims):
        d = rng.normal(0.0, 1.0, size=looks[-1])  # the true mean is 0
        naive += any(not (ci.low <= 0 <= ci.high) for ci in (stats.mean_ci(d[:n]) for n in looks))
        last = stats.confidence_sequence(d, looks, alpha=0.05)[-1]
        sequence += not (last.low <= 0 <= last.high)  # the running intersection
    assert naive / sims > 0.15  # repeated t intervals: roughly one study in four errs
    assert sequence / sims <= 0.05


def test_the_confidence_sequence_narrows_and_is_inf_until_it_can_say_anything():
    d = np.random.default_rng(3).normal(1.0, 1.0, size=40)
    seq = stats.confidence_sequence(d, [2, 5, 10, 20, 40], alpha=0.05)
    assert math.isinf(seq[0].high)  # two values: nothing excluded yet
    widths = [s.high - s.low for s in seq[1:]]
    assert widths == sorted(widths, reverse=True) and seq[-1].low > 0
    fixed = stats.mean_ci(d).half_width
    assert 1.5 * fixed < seq[-1].half_width < 2.5 * fixed  # the price of looking as often
