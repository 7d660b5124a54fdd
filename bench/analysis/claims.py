"""Claims people make about LR schedules, tested on the user's runs.

A claim says that the difference ``A - B`` of a per-run metric, paired by seed, lies in a
range: "cosine beats constant by +0.5 to +1.5 points" is ``final_val_acc``, A = cosine,
B = constant, range [+0.5, +1.5] points; "fewer late regressions" is a range below 0; "matches"
is a range around 0 (an equivalence margin). B may be ``best``: the best other schedule of the
setting on that metric, chosen for each seed on the *other* seeds (leave one seed out), so
that the arm compared with a seed was never picked on that seed's luck.

The verdict compares an interval of the paired difference (``bench.analysis.stats``, with its
resolution floor) with the claimed range:

- **held**: the whole interval lies inside the range;
- **refuted**: the whole interval lies outside it;
- **inconclusive**: it straddles an edge of the range, or fewer than two seeds pair up.

Verdicts are family-wise over the claims tested in a setting, at 5% together. For a report of
a fixed set of seeds that is Holm's step-down correction: each claim's p-value is that of the
t test which decides it (the interval at level 1 - p just clears the edges), and a claim is
decided when its Holm-adjusted p-value is at most 5%; the interval shown is the claim's own 95%
CI. Seeds run in rounds until the claims are decided (``looks``) use confidence sequences
instead (``stats.confidence_sequence``), each at level 1 - 5%/m for m claims (Bonferroni), valid
at every look at once; the interval shown is the sequence's at the last look.

An undecided claim says what would decide it: the seeds for an 80% chance of a verdict if the
true difference and spread are the measured ones (``stats.seeds_for_power``), and the same at
both ends of the spread's 95% interval, since a spread from a few seeds is itself uncertain.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import pandas as pd
from scipy.stats import t as student_t

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
    source: str = ""  # where the claim is made: a paper, or the practice it comes from

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


def _matches(a: str, b: str, label: str, source: str = "") -> Claim:
    m = EQUIVALENCE_MARGIN
    other = "the best schedule" if b == BEST else b
    text = f"{label} matches {other} (within ±{m:g} pt)"
    return Claim(text, a, b, low=-m, high=m, source=source)


# Where the claims come from.
PRACTICE = "a rule of thumb of fine-tuning tutorials and courses"
SGDR = "Loshchilov & Hutter, SGDR: Stochastic Gradient Descent with Warm Restarts, ICLR 2017"
STRAIGHT_TO_ZERO = (
    "Bergsma et al., Straight to Zero: Why Linearly Decaying the Learning Rate to Zero Works "
    "Best for LLMs, ICLR 2025"
)
LINEAR_DECAY = (
    "Defazio et al., When, Why and How Much? Adaptive Learning Rate Scheduling by Refinement, "
    "2023 (linear decay is worst-case optimal and beats cosine on ten problems)"
)
WSD = (
    "Hägele et al., Scaling Laws and Compute-Optimal Training Beyond Fixed Training Durations, "
    "NeurIPS 2024"
)
SCHEDULE_FREE = "Defazio et al., The Road Less Scheduled, NeurIPS 2024 (AlgoPerf 2024 winner)"


DEFAULT_CLAIMS = (
    Claim(
        "cosine beats constant by +0.5 to +1.5 points",
        "cosine",
        "constant",
        low=0.5,
        high=1.5,
        source=PRACTICE,
    ),
    Claim(
        "cosine has fewer late-epoch regressions than constant",
        "cosine",
        "constant",
        "late_regressions",
        high=0.0,
        source=PRACTICE,
    ),
    Claim(
        "cosine reaches its peak sooner than constant",
        "cosine",
        "constant",
        "epochs_to_peak",
        high=0.0,
        source=PRACTICE,
    ),
    Claim("warm restarts beat plain cosine", "cosine_restarts", "cosine", low=0.0, source=SGDR),
    _matches("polynomial", "cosine", "polynomial decay", PRACTICE),
    Claim(
        "linear decay to zero beats cosine to a 10% floor",
        "linear",
        "cosine_floor",
        low=0.0,
        source=STRAIGHT_TO_ZERO,
    ),
    Claim(
        "linear decay to zero beats cosine to zero",
        "linear",
        "cosine",
        low=0.0,
        source=LINEAR_DECAY,
    ),
    _matches("wsd", "cosine", "warmup-stable-decay", WSD),
    Claim(
        "a 1-sqrt cooldown beats a linear one",
        "wsd",
        "wsd_linear",
        low=0.0,
        source=WSD,
    ),
    _matches("sgd_schedulefree", BEST, "schedule-free SGD", SCHEDULE_FREE),
    _matches("adamw_schedulefree", BEST, "schedule-free AdamW", SCHEDULE_FREE),
)


def table(claims: Sequence[Claim] = DEFAULT_CLAIMS) -> str:
    """The built-in claims as the reference lists them (``bench/analysis/README.md``): claim,
    metric, the range of A − B, and where the claim comes from."""
    rows = ["| claim | A − B | metric | expected | source |", "| --- | --- | --- | --- | --- |"]
    for c in claims:
        b = "the best other arm" if c.b == BEST else c.b
        metric = c.metric.replace("_", " ")
        rows.append(f"| {c.text} | {c.a} − {b} | {metric} | {c.expected()} | {c.source} |")
    return "\n".join(rows) + "\n"


ALPHA = 0.05  # family-wise, over the claims tested in a setting

CLAIM_COLUMNS = [
    "setting",
    "claim",
    "a",
    "b",
    "metric",
    "expected",
    "source",
    "low",
    "high",
    "n_pairs",
    "diff_mean",
    "diff_sd",
    "diff_ci_low",
    "diff_ci_high",
    "interval",
    "p_claim",
    "p_holm",
    "verdict",
    "seeds_needed",
    "seeds_needed_low",
    "seeds_needed_high",
]
# What the interval of a row is.
CI, SEQUENCE = "95% CI", "confidence sequence"


def parse(items: Iterable[Mapping]) -> list[Claim]:
    """Claims from config (``report.claims``): each a mapping with ``a``, ``b``, and optionally
    ``metric`` (default final_val_acc), ``low``/``high`` (at least one) and ``text``. Raises
    ValueError naming the field and what is allowed."""
    claims = []
    for i, item in enumerate(items):
        where = f"report.claims[{i}]"
        unknown = set(item) - {"text", "a", "b", "metric", "low", "high", "source"}
        if unknown:
            raise ValueError(
                f"{where}: unknown field(s) {sorted(unknown)}; allowed: text, a, b, metric, "
                "low, high, source"
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
        source = str(item.get("source") or "yours (report.claims)")
        claims.append(Claim(str(text), item["a"], item["b"], metric, **bounds, source=source))
    return claims


def verdict(low: float, high: float, claim_low: float | None, claim_high: float | None) -> str:
    """held / refuted / inconclusive for an interval ``[low, high]`` against the claimed
    range."""
    if math.isnan(low) or math.isnan(high):
        return "inconclusive"
    above = -math.inf if claim_low is None else claim_low
    below = math.inf if claim_high is None else claim_high
    if above < low and high < below:
        return "held"
    if high < above or low > below:
        return "refuted"
    return "inconclusive"


def edges(claim_low: float | None, claim_high: float | None) -> list[float]:
    return [e for e in (claim_low, claim_high) if e is not None]


def distances(mean: float, claim_low: float | None, claim_high: float | None) -> list[float]:
    """How far ``mean`` is from each edge an interval around it must clear for a verdict:
    inside the range, every edge (held); outside, the edge it is beyond (refuted)."""
    below = claim_low is not None and mean < claim_low
    above = claim_high is not None and mean > claim_high
    if below:
        return [claim_low - mean]
    if above:
        return [mean - claim_high]
    return [abs(mean - e) for e in edges(claim_low, claim_high)]


def p_decides(
    mean: float, sd: float, n: int, claim_low: float | None, claim_high: float | None
) -> float:
    """The smallest ``alpha`` at which the ``1 - alpha`` t interval of the mean (``n`` values of
    standard deviation ``sd``) lies wholly inside or wholly outside the claimed range: the
    two-sided p-value of the test that decides the claim. NaN with fewer than two values."""
    if n < 2 or not math.isfinite(sd) or not math.isfinite(mean):
        return math.nan
    gaps = distances(mean, claim_low, claim_high)
    if sd == 0:
        return 0.0 if min(gaps) > 0 else 1.0
    se = sd / math.sqrt(n)
    # The interval clears an edge at distance g when t_{1 - alpha/2} < g / se; it must clear all.
    return float(min(1.0, 2 * max(student_t.sf(g / se, n - 1) for g in gaps)))


def evaluate(
    per_run: pd.DataFrame,
    claims: Sequence[Claim] = DEFAULT_CLAIMS,
    looks: Sequence[int] | None = None,
    alpha: float = ALPHA,
) -> pd.DataFrame:
    """Every claim in every setting whose runs include both of its schedules
    (``CLAIM_COLUMNS``; differences in the display unit), decided family-wise at ``alpha``:
    Holm's correction over the setting's claims, or with ``looks`` (the seeds per arm at each
    look of a sequential study, in seed order) confidence sequences at ``alpha / m``."""
    rows = []
    for setting, group in per_run.groupby("setting", sort=True):
        block = [row for c in claims if (row := _paired(group, c)) is not None]
        if looks:
            _decide_sequentially(block, looks, alpha)
        else:
            _decide_with_holm(block, alpha)
        rows += [
            {"setting": setting, **{k: v for k, v in row.items() if k[0] != "_"}} for row in block
        ]
    return pd.DataFrame(rows, columns=CLAIM_COLUMNS)


def _paired(group: pd.DataFrame, claim: Claim) -> dict | None:
    """The claim's paired differences in this setting (seed order), their summary, and what it
    takes to decide it at a given level (filled in by the deciding step)."""
    if claim.metric not in group:
        return None
    seeds = group.pivot_table(index="seed", columns="schedule", values=claim.metric, aggfunc="mean")
    seeds = seeds.sort_index()
    if claim.a not in seeds:
        return None
    if claim.b == BEST:
        others = seeds.drop(columns=[claim.a])
        if others.empty or len(seeds) < 2:
            return None
        # For each seed, the best other arm on the mean of the other seeds.
        chosen = pd.Series(
            [others.drop(index=s).mean().idxmax() for s in seeds.index], index=seeds.index
        )
        b_values = pd.Series([others.at[s, chosen[s]] for s in seeds.index], index=seeds.index)
        names = sorted(set(chosen))
        b = f"best of the others ({', '.join(names)}; chosen on the other seeds)"
    else:
        if claim.b not in seeds:
            return None
        b, b_values = claim.b, seeds[claim.b]
    res = resolution(group, claim.metric)
    bounds = (-1.0, 1.0) if METRICS[claim.metric] == "pt" else None
    p = stats.paired(seeds[claim.a], b_values, res, bounds)
    d = (seeds[claim.a] - b_values).to_numpy(dtype=float)
    scale = claim.scale
    return {
        "claim": claim.text,
        "a": claim.a,
        "b": b,
        "metric": claim.metric,
        "expected": claim.expected(),
        "source": claim.source,
        "low": math.nan if claim.low is None else claim.low,
        "high": math.nan if claim.high is None else claim.high,
        "n_pairs": p.diff.n,
        "diff_mean": p.diff.mean / scale,
        "diff_sd": p.sd / scale,
        "diff_ci_low": p.diff.low / scale,
        "diff_ci_high": p.diff.high / scale,
        "interval": CI,
        "p_claim": p_decides(p.diff.mean / scale, p.sd / scale, p.diff.n, claim.low, claim.high),
        "_claim": claim,
        "_d": d / scale,
        "_resolution": res / scale,
    }


def _seeds(row: dict, level: float) -> None:
    """Seeds for 80% power at confidence ``level`` (at the measured sd and at the ends of its
    95% interval), for an undecided row."""
    claim = row["_claim"]
    gaps = distances(row["diff_mean"], claim.low, claim.high) if row["n_pairs"] else []
    sd = row["diff_sd"]
    low, high = stats.sd_interval(sd, row["n_pairs"])
    row["seeds_needed"] = stats.seeds_for_power(gaps, sd, confidence=level)
    row["seeds_needed_low"] = stats.seeds_for_power(gaps, low, confidence=level)
    row["seeds_needed_high"] = stats.seeds_for_power(gaps, high, confidence=level)


def _decide_with_holm(block: list[dict], alpha: float) -> None:
    adjusted = stats.holm([row["p_claim"] for row in block])
    undecided = sum(1 for p in adjusted if not p <= alpha)
    for row, p_holm in zip(block, adjusted, strict=True):
        row["p_holm"] = p_holm
        claim = row["_claim"]
        decided = p_holm <= alpha
        row["verdict"] = (
            verdict(row["diff_ci_low"], row["diff_ci_high"], claim.low, claim.high)
            if decided
            else "inconclusive"
        )
        if row["verdict"] == "inconclusive":
            # Holm tests the last undecided claims at alpha / (their number).
            _seeds(row, 1 - alpha / max(undecided, 1))
        else:
            row |= dict.fromkeys(
                ("seeds_needed", "seeds_needed_low", "seeds_needed_high"), math.nan
            )


def sequence_verdict(
    d,
    looks: Sequence[int],
    claim_low: float | None,
    claim_high: float | None,
    alpha: float,
    resolution: float = 0.0,
) -> tuple[str, stats.Interval]:
    """The verdict of a claim on the paired differences ``d`` (seed order) looked at after
    ``looks[k]`` seeds each: the confidence sequence at level ``1 - alpha`` at the last look
    against the claimed range, and that interval."""
    [*_, last] = stats.confidence_sequence(d, looks, alpha, resolution)
    bounded = math.isfinite(last.low) and math.isfinite(last.high)
    low, high = (last.low, last.high) if bounded else (math.nan, math.nan)
    return verdict(low, high, claim_low, claim_high), last


def _decide_sequentially(block: list[dict], looks: Sequence[int], alpha: float) -> None:
    level = alpha / max(len(block), 1)
    for row in block:
        claim = row["_claim"]
        decided, last = sequence_verdict(
            row["_d"], looks, claim.low, claim.high, level, row["_resolution"]
        )
        row["diff_ci_low"], row["diff_ci_high"] = last.low, last.high
        row["interval"] = SEQUENCE
        row["p_holm"] = math.nan
        row["verdict"] = decided
        if decided == "inconclusive":
            row["seeds_needed"] = _sequence_seeds(row, level)
            row["seeds_needed_low"] = row["seeds_needed_high"] = math.nan
        else:
            row["seeds_needed"] = row["seeds_needed_low"] = row["seeds_needed_high"] = math.nan


def _sequence_seeds(row: dict, level: float) -> float:
    """The seeds at which the confidence sequence, at the measured mean and sd, would clear
    every edge it must (``inf`` past ``stats.MAX_SEEDS``)."""
    claim = row["_claim"]
    gap = min(distances(row["diff_mean"], claim.low, claim.high), default=0.0)
    sd = row["diff_sd"]
    if not math.isfinite(sd) or gap <= 0:
        return math.nan if not math.isfinite(sd) else math.inf
    for n in range(2, stats.MAX_SEEDS + 1):
        if stats.cs_radius(sd, n, level) < gap:
            return float(n)
    return math.inf
