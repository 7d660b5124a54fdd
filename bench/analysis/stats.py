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
- **Wilcoxon's signed-rank test** is taken on the evaluation's grid: differences are rounded
  to whole steps of the resolution (a count of images) before ranking, so two differences of
  one image are a tie and a difference of zero images is zero, whatever float noise the stored
  accuracies carry. With ``n`` pairs it cannot go below ``2 / 2**n`` (all signs alike), so it
  is reported only from the number of pairs where it could reach significance
  (``wilcoxon_reaches``: 6 pairs at 5%).
- **Holm's step-down correction** of p-values for the comparisons made together.
- **Power**: the chance that a t interval from ``n`` seeds clears a boundary when the true
  difference and spread are the observed ones (the noncentral t), and the seeds that give 80%;
  the spread from a handful of seeds is itself uncertain, so the seeds are also given at the
  ends of the spread's chi-square interval.
- **Confidence sequences** for looking again after every round of seeds: the normal-mixture
  t confidence sequence (below, ``confidence_sequence``), valid at every look at once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

CONFIDENCE = 0.95
POWER = 0.80  # the chance of a decision that "seeds needed" aims at
MAX_SEEDS = 1000  # "seeds needed" beyond this is reported as more than it
# The mixing scale of the confidence sequence: a prior on the standardised difference
# (mean / sd) of variance 1 / PHI, wide because differences of paired seeds are often several
# of their sds. It moves only the width, never the validity; 0.1 keeps the sequence within
# 1.6-1.9 times a fixed-n t interval of the same level from 5 to 30 seeds.
PHI = 0.1


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
    p_w = wilcoxon(d, resolution)
    if sd == 0:  # identical differences and no floor: nothing to test against
        p_t = 1.0 if diff.mean == 0 else 0.0
        effect = 0.0 if diff.mean == 0 else math.copysign(math.inf, diff.mean)
    else:
        t = diff.mean / (sd / math.sqrt(n))
        p_t = float(2 * stats.t.sf(abs(t), n - 1))
        effect = diff.mean / sd
    return Paired(diff, sd, p_t, p_w, float(effect), wins)


def on_grid(d, resolution: float = 0.0) -> np.ndarray:
    """Differences rounded to whole steps of ``resolution`` (unchanged without one)."""
    d = np.asarray(d, dtype=float)
    return np.round(d / resolution) * resolution if resolution > 0 else d


def wilcoxon(d, resolution: float = 0.0) -> float:
    """Wilcoxon's two-sided signed-rank p-value of the differences ``d`` on the evaluation's grid
    (zeros split between the signs); NaN when every difference is zero."""
    d = on_grid(_finite(d), resolution)
    if len(d) == 0 or np.all(d == 0):
        return math.nan
    return float(stats.wilcoxon(d, zero_method="zsplit", alternative="two-sided").pvalue)


def wilcoxon_reaches(n: int, alpha: float = 1 - CONFIDENCE) -> bool:
    """Whether the signed-rank test of ``n`` pairs can reach ``p < alpha`` at all: its smallest
    two-sided p-value, every sign alike, is ``2 / 2**n``."""
    return n > 0 and 2.0 / 2**n < alpha


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


def power(distances, sd: float, n: int, confidence: float = CONFIDENCE) -> float:
    """The chance that a ``confidence`` t interval of the mean of ``n`` values with standard
    deviation ``sd`` lies beyond every boundary in ``distances`` (each the true mean's distance
    to a boundary it must clear, > 0), by the noncentral t; for two boundaries, the lower bound
    ``P(A) + P(B) - 1`` of clearing both. NaN when ``sd`` is unknown."""
    if not math.isfinite(sd) or n < 2:
        return math.nan
    if sd == 0:
        return 1.0
    critical = stats.t.ppf(0.5 + confidence / 2, n - 1)
    misses = [stats.nct.cdf(critical, n - 1, d * math.sqrt(n) / sd) for d in distances]
    return max(0.0, 1.0 - float(sum(misses)))


def seeds_for_power(
    distances, sd: float, target: float = POWER, confidence: float = CONFIDENCE
) -> float:
    """The fewest seeds (values) whose ``confidence`` t interval clears every boundary in
    ``distances`` with probability ``target`` (``power``); ``inf`` when a distance is 0 or more
    than ``MAX_SEEDS`` would be needed, NaN when ``sd`` is unknown."""
    if not math.isfinite(sd):
        return math.nan
    if not distances or min(distances) <= 0:
        return math.inf
    if power(distances, sd, MAX_SEEDS, confidence) < target:
        return math.inf
    low, high = 2, MAX_SEEDS  # power grows with n: bisect for the first n that reaches target
    while low < high:
        mid = (low + high) // 2
        low, high = (
            (mid + 1, high) if power(distances, sd, mid, confidence) < target else (low, mid)
        )
    return float(low)


def sd_interval(sd: float, n: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """The chi-square ``confidence`` interval of a normal standard deviation estimated as ``sd``
    from ``n`` values (NaN with fewer than two)."""
    if n < 2 or not math.isfinite(sd):
        return math.nan, math.nan
    df = n - 1
    tail = (1 - confidence) / 2
    return (
        sd * math.sqrt(df / stats.chi2.ppf(1 - tail, df)),
        sd * math.sqrt(df / stats.chi2.ppf(tail, df)),
    )


def cs_radius(sd: float, n: int, alpha: float, phi: float = PHI) -> float:
    """Half-width of the normal-mixture t confidence sequence (Lai, 1976) after ``n`` values of
    standard deviation ``sd``, at level ``1 - alpha``: the set of means ``mu`` whose mixture
    Bayes factor against ``mu`` (a normal prior of variance ``1 / phi`` on the standardised
    difference; the right-Haar prior on the scale) stays below ``1 / alpha``. That factor is a
    nonnegative martingale under ``mu`` (Grünwald, de Heide and Koolen's safe t-test; Lindon et
    al., 2024, give this closed form), so by Ville's inequality the sequence holds the true mean
    at every ``n`` at once with probability ``1 - alpha``, whenever one stops looking. ``inf``
    until the data can exclude anything."""
    if n < 2 or not math.isfinite(sd):
        return math.inf
    nu = n - 1
    r = phi / (phi + n)
    q = (r * alpha**2) ** (1 / (nu + 1))
    if q <= r:
        return math.inf
    return sd / math.sqrt(n) * math.sqrt(nu * (1 - q) / (q - r))


def confidence_sequence(
    d, looks, alpha: float = 1 - CONFIDENCE, resolution: float = 0.0, phi: float = PHI
) -> list[Interval]:
    """The confidence sequence of the mean of ``d`` (values in the order they came: seed by
    seed) at each look, after ``looks[k]`` values; each interval is intersected with the ones
    before it (the sequence is valid for all of them at once, so their intersection is too).
    Standard deviations are floored at ``resolution`` as everywhere here."""
    d = np.asarray(d, dtype=float)
    low, high = -math.inf, math.inf
    out = []
    for n in looks:
        x = _finite(d[:n])
        mean = float(x.mean()) if len(x) else math.nan
        radius = cs_radius(spread(x, resolution), len(x), alpha, phi)
        if math.isfinite(radius):
            low, high = max(low, mean - radius), min(high, mean + radius)
        out.append(Interval(mean, low, high, len(x)))
    return out
