"""Statistics of a handful of runs: intervals, paired differences, multiple comparisons.

Pure functions of NumPy arrays, built on ``scipy.stats``. The conventions, stated once:

- **Interval of a mean**: Student's t over the runs (``confidence``, 95% by default).
- **Resolution floor**: a metric that counts things moves in steps: an accuracy measured on
  ``N`` examples in steps of ``1/N``, a count of epochs in steps of 1. A spread of zero over a
  handful of seeds is then a rounding artefact, not evidence that the runs cannot differ, so
  the standard deviation used for an interval (and a t statistic) is never taken below one
  step. Where the observed spread is larger, which is usual, the floor changes nothing and
  the numbers are exactly Student's.
- **Bounds**: an interval of a metric confined to ``[low, high]`` (an accuracy to [0, 1]) is
  clipped to it; ``Interval.clipped`` says when that happened, so the report can say so.
- **Paired difference**: runs of two schedules with the same seed share their initialisation
  and data order, so a difference is taken seed by seed, over the seeds both have.
- **Holm's step-down correction** of p-values for the comparisons made together.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

CONFIDENCE = 0.95
MAX_SEEDS = 1000  # "seeds needed" beyond this is reported as more than it


@dataclass(frozen=True)
class Interval:
    """A mean and its confidence interval (NaN where undefined: fewer than two values)."""

    mean: float
    low: float
    high: float
    n: int
    clipped: bool = False

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2


def _finite(x) -> np.ndarray:
    x = np.asarray(x, dtype=float)
    return x[np.isfinite(x)]


def spread(x, resolution: float = 0.0) -> float:
    """The sample standard deviation, never below ``resolution`` (see the module docstring);
    NaN with fewer than two values."""
    x = _finite(x)
    if len(x) < 2:
        return math.nan
    return max(float(np.std(x, ddof=1)), resolution)


def mean_ci(
    x,
    resolution: float = 0.0,
    bounds: tuple[float, float] | None = None,
    confidence: float = CONFIDENCE,
) -> Interval:
    """Student's t interval of the mean of the finite values of ``x``, its standard deviation
    floored at ``resolution`` and the interval clipped to ``bounds``."""
    x = _finite(x)
    n = len(x)
    if n == 0:
        return Interval(math.nan, math.nan, math.nan, 0)
    mean = float(x.mean())
    if n < 2:
        return Interval(mean, math.nan, math.nan, n)
    half = stats.t.ppf(0.5 + confidence / 2, n - 1) * spread(x, resolution) / math.sqrt(n)
    low, high = mean - half, mean + half
    clipped = False
    if bounds is not None:
        clipped = low < bounds[0] or high > bounds[1]
        low, high = max(low, bounds[0]), min(high, bounds[1])
    return Interval(mean, float(low), float(high), n, clipped)


@dataclass(frozen=True)
class Paired:
    """``x - y`` over the seeds both have: the mean difference with its interval, the paired
    t-test's and Wilcoxon's two-sided p-values, and Cohen's d_z (mean / sd of the differences)."""

    diff: Interval
    sd: float
    p_t: float
    p_wilcoxon: float
    effect_size: float
    wins: float  # share of the seeds where x beat y (a tie counts a half)


def paired(
    x,
    y,
    resolution: float = 0.0,
    bounds: tuple[float, float] | None = None,
    confidence: float = CONFIDENCE,
) -> Paired:
    """Compare ``x`` and ``y``, paired element by element (pairs with a NaN are dropped).
    ``bounds`` are those of the difference (``(-1, 1)`` for accuracies)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    keep = np.isfinite(x) & np.isfinite(y)
    d = x[keep] - y[keep]
    n = len(d)
    diff = mean_ci(d, resolution, bounds, confidence)
    if n == 0:
        return Paired(diff, math.nan, math.nan, math.nan, math.nan, math.nan)
    wins = float(np.mean((d > 0) + 0.5 * (d == 0)))
    if n < 2:
        return Paired(diff, math.nan, math.nan, math.nan, math.nan, wins)
    sd = spread(d, resolution)
    if sd == 0:  # identical differences and no floor: nothing to test against
        p_t = 1.0 if diff.mean == 0 else 0.0
        effect = 0.0 if diff.mean == 0 else math.copysign(math.inf, diff.mean)
    else:
        t = diff.mean / (sd / math.sqrt(n))
        p_t = float(2 * stats.t.sf(abs(t), n - 1))
        effect = diff.mean / sd
    p_w = (
        math.nan
        if np.all(d == 0)
        else float(stats.wilcoxon(d, zero_method="zsplit", alternative="two-sided").pvalue)
    )
    return Paired(diff, sd, p_t, p_w, float(effect), wins)


def holm(p_values) -> np.ndarray:
    """Holm's step-down adjustment of ``p_values`` (NaN stay NaN and do not count as tests)."""
    p = np.asarray(p_values, dtype=float)
    adjusted = np.full_like(p, math.nan)
    tested = np.flatnonzero(np.isfinite(p))
    m = len(tested)
    running = 0.0
    for rank, i in enumerate(tested[np.argsort(p[tested], kind="stable")]):
        running = max(running, min(1.0, (m - rank) * p[i]))
        adjusted[i] = running
    return adjusted


def seeds_needed(mean: float, sd: float, distance: float, confidence: float = CONFIDENCE) -> float:
    """The fewest values (seeds) for which a t interval around ``mean`` with standard deviation
    ``sd`` would have a half-width below ``distance``, i.e. stay clear of a boundary that far
    from the mean. ``inf`` when the mean sits on the boundary or more than ``MAX_SEEDS`` would
    be needed; NaN when ``sd`` is unknown."""
    if not math.isfinite(sd) or not math.isfinite(mean):
        return math.nan
    if distance <= 0:
        return math.inf
    for n in range(2, MAX_SEEDS + 1):
        if stats.t.ppf(0.5 + confidence / 2, n - 1) * sd / math.sqrt(n) < distance:
            return float(n)
    return math.inf
