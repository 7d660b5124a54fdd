"""Claims people make about LR schedules, tested on the user's runs.

A claim says that the difference ``A - B`` of a per-run metric, paired by seed, lies in a
range: "cosine beats constant by +0.5 to +1.5 points" is ``final_val_acc``, A = cosine,
B = constant, range [+0.5, +1.5] points; "fewer late regressions" is a range below 0; "matches"
is a range around 0 (an equivalence margin). B may be ``best``: the best other schedule of the
setting on that metric.

The verdict compares the 95% CI of the paired difference (``bench.analysis.stats``, with its
resolution floor) with the claimed range:

- **held**: the whole CI lies inside the range;
- **refuted**: the whole CI lies outside it;
- **inconclusive**: the CI straddles an edge of the range, or fewer than two seeds pair up. The
  table then gives the number of seeds that would decide it: the fewest for which a CI with the
  observed mean and spread would clear the nearest edge.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import pandas as pd

from bench.analysis import stats
from bench.analysis.tables import resolution

BEST = "best"
ACCURACY = ("final_val_acc", "best_val_acc", "test_acc")
METRICS = {  # per-run columns a claim can be about, and their unit in the table
    "final_val_acc": "pt",
    "best_val_acc": "pt",
    "test_acc": "pt",
    "late_regressions": "per run",
    "oscillation": "pt",
    "epochs_to_peak": "epochs",
}
EQUIVALENCE_MARGIN = 0.5  # points: "matches" means within this of each other


@dataclass(frozen=True)
class Claim:
    """``mean(A - B)`` of ``metric`` lies in ``[low, high]`` (None: unbounded), in the metric's
    display unit: points for accuracies and oscillation, counts otherwise."""

    text: str
    a: str
    b: str
    metric: str = "final_val_acc"
    low: float | None = None
    high: float | None = None

    @property
    def scale(self) -> float:
        """Display unit -> the per-run column's unit (points -> fractions)."""
        return 0.01 if METRICS[self.metric] == "pt" else 1.0

    def expected(self) -> str:
        unit = METRICS[self.metric]

        def signed(x: float) -> str:
            return "0" if x == 0 else f"{x:+g}"

        if self.low is not None and self.high is not None:
            return f"{signed(self.low)} to {signed(self.high)} {unit}"
        if self.low is not None:
            return f"> {signed(self.low)} {unit}"
        return f"< {signed(self.high)} {unit}"


def _matches(a: str, b: str, label: str) -> Claim:
    m = EQUIVALENCE_MARGIN
    other = "the best schedule" if b == BEST else b
    return Claim(f"{label} matches {other} (within ±{m:g} pt)", a, b, low=-m, high=m)


DEFAULT_CLAIMS = (
    Claim("cosine beats constant by +0.5 to +1.5 points", "cosine", "constant", low=0.5, high=1.5),
    Claim(
        "cosine has fewer late-epoch regressions than constant",
        "cosine",
        "constant",
        "late_regressions",
        high=0.0,
    ),
    Claim(
        "cosine reaches its peak sooner than constant",
        "cosine",
        "constant",
        "epochs_to_peak",
        high=0.0,
    ),
    Claim("warm restarts beat plain cosine", "cosine_restarts", "cosine", low=0.0),
    _matches("polynomial", "cosine", "polynomial decay"),
    _matches("linear", "cosine", "linear decay to zero"),
    _matches("wsd", "cosine", "warmup-stable-decay"),
    _matches("sgd_schedulefree", BEST, "schedule-free SGD"),
    _matches("adamw_schedulefree", BEST, "schedule-free AdamW"),
)

CLAIM_COLUMNS = [
    "setting",
    "claim",
    "a",
    "b",
    "metric",
    "expected",
    "n_pairs",
    "diff_mean",
    "diff_ci_low",
    "diff_ci_high",
    "verdict",
    "seeds_needed",
]


def parse(items: Iterable[Mapping]) -> list[Claim]:
    """Claims from config (``report.claims``): each a mapping with ``a``, ``b``, and optionally
    ``metric`` (default final_val_acc), ``low``/``high`` (at least one) and ``text``. Raises
    ValueError naming the field and what is allowed."""
    claims = []
    for i, item in enumerate(items):
        where = f"report.claims[{i}]"
        unknown = set(item) - {"text", "a", "b", "metric", "low", "high"}
        if unknown:
            raise ValueError(
                f"{where}: unknown field(s) {sorted(unknown)}; allowed: text, a, b, metric, "
                "low, high"
            )
        for field in ("a", "b"):
            if not isinstance(item.get(field), str) or not item[field]:
                raise ValueError(f"{where}.{field}: a schedule name is required")
        metric = item.get("metric", "final_val_acc")
        if metric not in METRICS:
            raise ValueError(f"{where}.metric={metric!r}: allowed: {', '.join(METRICS)}")
        if item["b"] == BEST and metric not in ACCURACY:
            raise ValueError(f"{where}.b=best: only for accuracies ({', '.join(ACCURACY)})")
        bounds = {}
        for field in ("low", "high"):
            value = item.get(field)
            if value is not None and (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not math.isfinite(value)
            ):
                raise ValueError(f"{where}.{field}={value!r}: a finite number or null")
            bounds[field] = None if value is None else float(value)
        if bounds["low"] is None and bounds["high"] is None:
            raise ValueError(f"{where}: give low, high or both (the expected range of A - B)")
        if None not in bounds.values() and bounds["low"] >= bounds["high"]:
            raise ValueError(f"{where}: low={bounds['low']} must be below high={bounds['high']}")
        text = item.get("text") or f"{item['a']} vs {item['b']} on {metric}"
        claims.append(Claim(str(text), item["a"], item["b"], metric, **bounds))
    return claims


def verdict(low: float, high: float, claim_low: float | None, claim_high: float | None) -> str:
    """held / refuted / inconclusive for a CI ``[low, high]`` against the claimed range."""
    if math.isnan(low) or math.isnan(high):
        return "inconclusive"
    above = -math.inf if claim_low is None else claim_low
    below = math.inf if claim_high is None else claim_high
    if above < low and high < below:
        return "held"
    if high < above or low > below:
        return "refuted"
    return "inconclusive"


def evaluate(per_run: pd.DataFrame, claims: Sequence[Claim] = DEFAULT_CLAIMS) -> pd.DataFrame:
    """Every claim in every setting whose runs include both of its schedules
    (``CLAIM_COLUMNS``; differences in the display unit)."""
    rows = []
    for setting, group in per_run.groupby("setting", sort=True):
        for claim in claims:
            row = _evaluate(group, claim)
            if row is not None:
                rows.append({"setting": setting, **row})
    return pd.DataFrame(rows, columns=CLAIM_COLUMNS)


def _evaluate(group: pd.DataFrame, claim: Claim) -> dict | None:
    if claim.metric not in group:
        return None
    seeds = group.pivot_table(index="seed", columns="schedule", values=claim.metric, aggfunc="mean")
    b = claim.b
    if b == BEST:
        others = seeds.drop(columns=[claim.a], errors="ignore").mean()
        b = others.idxmax() if others.notna().any() else None
    if claim.a not in seeds or b is None or b not in seeds:
        return None
    res = resolution(group, claim.metric)
    bounds = (-1.0, 1.0) if METRICS[claim.metric] == "pt" else None
    p = stats.paired(seeds[claim.a], seeds[b], res, bounds)
    scale = claim.scale
    low, high, mean = p.diff.low / scale, p.diff.high / scale, p.diff.mean / scale
    decided = verdict(low, high, claim.low, claim.high)
    needed = math.nan
    if decided == "inconclusive":
        edges = [e for e in (claim.low, claim.high) if e is not None]
        distance = min(abs(mean - e) for e in edges) * scale
        needed = stats.seeds_needed(p.diff.mean, p.sd, distance)
    return {
        "claim": claim.text,
        "a": claim.a,
        "b": b,
        "metric": claim.metric,
        "expected": claim.expected(),
        "n_pairs": p.diff.n,
        "diff_mean": mean,
        "diff_ci_low": low,
        "diff_ci_high": high,
        "verdict": decided,
        "seeds_needed": needed,
    }
