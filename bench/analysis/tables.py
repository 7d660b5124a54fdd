"""The report's tables: pure functions from the per-run frame (``curves.per_run``) and the runs
frame (``bench.tracking.load_runs``) to tidy pandas tables. Accuracies stay fractions here;
only the rendering shows points. Every table has a ``setting`` column ("" when the runs share
one setting) and compares schedules within a setting only.

- ``accuracy_table``: per setting, metric (final val, best val, test) and schedule: n, mean,
  std, median, 95% CI; the difference from a baseline schedule paired by seed, its CI, paired t
  and Wilcoxon p-values (Wilcoxon on the evaluation's grid, and only from the number of pairs
  where it can reach significance), Holm's correction over the schedules compared, Cohen's
  d_z; the share of seeds it beats the baseline on, and its mean rank over seeds.
- ``stability_table``: spread over seeds, best-minus-final gap, late regressions, oscillation,
  epochs to peak, epochs and seconds to a target accuracy, divergences and failures.
- ``ensemble_table``: snapshot ensembles against the final model, paired by run.
- ``rank_summary``: across settings, each schedule's mean rank.
- ``lr_sensitivity``, ``runs_at_best_lr`` and ``at_best_lr``: when the base LR is swept.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

from bench.analysis import curves as curves_mod
from bench.analysis import stats

BASELINE = "constant"
HEADLINE = "final_val_acc"
ACCURACY_METRICS = ("final_val_acc", "best_val_acc", "test_acc")
TARGET_FRACTION = 0.99  # target accuracy: 99% of the best schedule's mean final val acc
NEAR_BEST_LR = 0.01  # LRs within one point of a schedule's best count as near-best

ACCURACY_COLUMNS = [
    "setting",
    "metric",
    "schedule",
    "n_runs",
    "n_unfinished",
    "mean",
    "std",
    "median",
    "ci_low",
    "ci_high",
    "ci_clipped",
    "baseline",
    "n_pairs",
    "diff_mean",
    "diff_ci_low",
    "diff_ci_high",
    "p_t",
    "p_wilcoxon",
    "p_holm",
    "effect_size",
    "win_rate",
    "rank_mean",
]
# What each stability column is: (its columns in stability.csv, its heading in report.md, the
# definition). The one copy: report.md's glossary and the reference's table
# (``bench/analysis/README.md``) are both written from it (``stability_glossary``).
STABILITY_DEFINITIONS: tuple[tuple[str, str, str], ...] = (
    (
        "final_std, seed_range",
        "sd over seeds, seed range",
        "standard deviation and max − min of the final val acc over seeds",
    ),
    (
        "best_minus_final_mean",
        "best − final",
        "best val acc minus final val acc, averaged over runs: what a run lost by the end",
    ),
    (
        "late_regressions_mean",
        "late regressions",
        "validations in the second half of training (epoch > E/2) more than "
        f"{100 * curves_mod.REGRESSION_THRESHOLD:g} points below the best val acc so far, per run",
    ),
    (
        "oscillation_mean",
        "oscillation",
        "standard deviation of the epoch-to-epoch change of val acc over the last quarter (the "
        "changes into epochs > 3E/4), per run",
    ),
    (
        "epochs_to_peak_mean",
        "epochs to peak",
        f"the first epoch within {100 * curves_mod.PEAK_TOLERANCE:g} points of the run's best "
        "val acc",
    ),
    (
        "target, n_reached",
        "reached target",
        f"the target accuracy: {TARGET_FRACTION:.0%} of the best schedule's mean final val acc "
        "in the setting; how many runs reached it",
    ),
    (
        "epochs_to_target_mean, seconds_to_target_mean",
        "epochs to target, seconds to target",
        "the first epoch at or above the target, and the wall time from the run's start to that "
        "validation, averaged over the runs that reached it (NaN when none did)",
    ),
    (
        "n_diverged",
        "diverged",
        "finished runs with a NaN or infinite loss or accuracy, or tagged `bench.diverged`",
    ),
    ("n_failed", "failed", "runs that ended FAILED"),
)


def stability_glossary(form: str = "reference") -> str:
    """The stability columns' definitions as Markdown: ``reference``, the table of
    ``bench/analysis/README.md`` (by CSV column); ``report``, report.md's list (by heading)."""
    if form == "report":
        return "".join(f"- **{shown}**: {text}\n" for _, shown, text in STABILITY_DEFINITIONS)
    rows = ["| column | definition |", "| --- | --- |"]
    for columns, _, text in STABILITY_DEFINITIONS:
        names = ", ".join(f"`{c.strip()}`" for c in columns.split(","))
        rows.append(f"| {names} | {text} |")
    return "\n".join(rows) + "\n"


STABILITY_COLUMNS = [
    "setting",
    "schedule",
    "n_runs",
    "n_failed",
    "n_diverged",
    "final_std",
    "seed_range",
    "best_minus_final_mean",
    "late_regressions_mean",
    "oscillation_mean",
    "epochs_to_peak_mean",
    "target",
    "n_reached",
    "epochs_to_target_mean",
    "seconds_to_target_mean",
]
ENSEMBLE_COLUMNS = [
    "setting",
    "schedule",
    "n_runs",
    "n_snapshots",
    "final_val_acc_mean",
    "val_acc_ensemble_mean",
    "ensemble_gain_val_mean",
    "ensemble_gain_val_ci_low",
    "ensemble_gain_val_ci_high",
    "test_acc_mean",
    "test_acc_ensemble_mean",
    "ensemble_gain_test_mean",
    "ensemble_gain_test_ci_low",
    "ensemble_gain_test_ci_high",
]


def order(schedules: Iterable[str], preferred: Iterable[str] = (), baseline: str = BASELINE):
    """Schedules in ``preferred`` order (the baseline leading), then the rest sorted."""
    present = set(schedules)
    first = [baseline, *[s for s in preferred if s != baseline]]
    return [s for s in first if s in present] + sorted(present - set(first))


def resolution(per_run: pd.DataFrame, metric: str) -> float:
    """One example of the evaluation set a metric counts (see ``stats``): 1/n_val for
    validation accuracies, 1/n_test for test accuracy, 1 for counts of epochs; 0 if unknown."""
    if metric in ("late_regressions", "epochs_to_peak", "epochs_to_target"):
        return 1.0
    column = "n_test" if metric.startswith("test") else "n_val"
    sizes = per_run[column].dropna() if column in per_run else pd.Series(dtype=float)
    return 1.0 / sizes.max() if len(sizes) and sizes.max() > 0 else 0.0


def by_seed(per_run: pd.DataFrame, metric: str) -> pd.DataFrame:
    """``metric`` as a seed x schedule table (runs of a cell averaged)."""
    return per_run.pivot_table(index="seed", columns="schedule", values=metric, aggfunc="mean")


def _ranks(table: pd.DataFrame) -> pd.Series:
    """Mean rank per schedule over seeds (1 = best; ties share the average rank)."""
    return table.rank(axis=1, ascending=False).mean(axis=0)


def _settings(per_run: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    return [(s, g) for s, g in per_run.groupby("setting", sort=True)] if len(per_run) else []


def accuracy_table(
    per_run: pd.DataFrame,
    runs: pd.DataFrame | None = None,
    baseline: str = BASELINE,
    preferred: Iterable[str] = (),
    metrics: Sequence[str] = ACCURACY_METRICS,
) -> pd.DataFrame:
    """Per setting, metric and schedule (``ACCURACY_COLUMNS``; definitions in the module
    docstring). ``runs`` (with ``setting, schedule, status``) counts the unfinished runs. The
    baseline's own row, and every row of a setting without the baseline, has no difference."""
    rows = []
    for setting, group in _settings(per_run):
        unfinished = _unfinished(runs, setting)
        # A schedule none of whose runs finished still gets its row, to say so.
        schedules = order({*group["schedule"], *unfinished.index}, preferred, baseline)
        for metric in metrics:
            seeds = by_seed(group, metric)
            ranks = _ranks(seeds)
            res = resolution(group, metric)
            block = []
            for schedule in schedules:
                values = group.loc[group["schedule"] == schedule, metric].to_numpy(dtype=float)
                ci = stats.mean_ci(values, res, bounds=(0.0, 1.0))
                finite = values[np.isfinite(values)]
                row = {
                    "setting": setting,
                    "metric": metric,
                    "schedule": schedule,
                    "n_runs": len(values),
                    "n_unfinished": int(unfinished.get(schedule, 0)),
                    "mean": ci.mean,
                    "std": float(np.std(finite, ddof=1)) if len(finite) > 1 else math.nan,
                    "median": float(np.median(finite)) if len(finite) else math.nan,
                    "ci_low": ci.low,
                    "ci_high": ci.high,
                    "ci_clipped": ci.clipped,
                    "baseline": baseline if baseline in seeds else "",
                    "rank_mean": ranks.get(schedule, math.nan),
                }
                if baseline in seeds and schedule in seeds and schedule != baseline:
                    p = stats.paired(seeds[schedule], seeds[baseline], res, bounds=(-1.0, 1.0))
                    row |= {
                        "n_pairs": p.diff.n,
                        "diff_mean": p.diff.mean,
                        "diff_ci_low": p.diff.low,
                        "diff_ci_high": p.diff.high,
                        "p_t": p.p_t,
                        # only where it could reach significance with this many pairs
                        "p_wilcoxon": p.p_wilcoxon
                        if stats.wilcoxon_reaches(p.diff.n)
                        else math.nan,
                        "effect_size": p.effect_size,
                        "win_rate": p.wins,
                    }
                block.append(row)
            adjusted = stats.holm([r.get("p_t", math.nan) for r in block])
            for row, p_holm in zip(block, adjusted, strict=True):
                row["p_holm"] = p_holm
            rows += block
    table = pd.DataFrame(rows, columns=ACCURACY_COLUMNS)
    return table.astype({"ci_clipped": bool}) if len(table) else table


def _unfinished(runs: pd.DataFrame | None, setting: str, only: str | None = None) -> pd.Series:
    """Per schedule, the setting's runs that did not finish (``only``: with that status)."""
    if runs is None or runs.empty:
        return pd.Series(dtype=int)
    status = runs["status"]
    ours = status == only if only else status != "FINISHED"
    mine = runs[ours & (runs.get("setting", "") == setting)]
    return mine.groupby("schedule").size()


def headline(accuracy: pd.DataFrame, metric: str = HEADLINE) -> pd.DataFrame:
    """The accuracy table's rows of one metric."""
    return accuracy[accuracy["metric"] == metric].reset_index(drop=True)


def stability_runs(
    per_run: pd.DataFrame, epochs: pd.DataFrame, target_fraction: float = TARGET_FRACTION
) -> pd.DataFrame:
    """``per_run`` with each run's target and when it got there: ``target`` is
    ``target_fraction`` of the best schedule's mean final val acc in the run's setting;
    ``epochs_to_target`` and ``seconds_to_target`` the run's first validation at or above it
    (NaN: never). ``epochs`` (``run_id, epoch, val_acc``, optionally ``time_s``) gives the
    curves."""
    if per_run.empty:
        return per_run.assign(target=[], epochs_to_target=[], seconds_to_target=[])
    best = per_run.groupby(["setting", "schedule"])["final_val_acc"].mean().groupby("setting")
    target = per_run["setting"].map(target_fraction * best.max())
    curves = epochs.merge(pd.DataFrame({"run_id": per_run["run_id"], "target": target}))
    hits = (
        curves[curves["val_acc"] >= curves["target"]]
        .sort_values(["run_id", "epoch"])
        .groupby("run_id")
        .first()
    )
    seconds = hits["time_s"] if "time_s" in hits else pd.Series(math.nan, index=hits.index)
    return per_run.assign(
        target=target,
        epochs_to_target=per_run["run_id"].map(hits["epoch"]).astype(float),
        seconds_to_target=per_run["run_id"].map(seconds).astype(float),
    )


def stability_table(
    per_run: pd.DataFrame,
    epochs: pd.DataFrame,
    runs: pd.DataFrame | None = None,
    preferred: Iterable[str] = (),
    baseline: str = BASELINE,
    target_fraction: float = TARGET_FRACTION,
) -> pd.DataFrame:
    """Per setting and schedule (``STABILITY_COLUMNS``). The target is ``target_fraction`` of the
    best schedule's mean final val acc in the setting; ``n_reached`` runs reached it, and the
    epochs and seconds to reach it are averaged over those (``stability_runs``). ``epochs``
    (``run_id, epoch, val_acc``, optionally ``time_s``) gives the curves; ``runs`` counts
    failures."""
    rows = []
    for setting, group in _settings(stability_runs(per_run, epochs, target_fraction)):
        failed = _unfinished(runs, setting, only="FAILED")
        schedules = order(
            {*group["schedule"], *_unfinished(runs, setting).index}, preferred, baseline
        )
        for schedule in schedules:
            mine = group[group["schedule"] == schedule]
            final = mine["final_val_acc"].to_numpy(dtype=float)
            reached = mine["epochs_to_target"].dropna()
            seconds = mine.loc[reached.index, "seconds_to_target"]
            rows.append(
                {
                    "setting": setting,
                    "schedule": schedule,
                    "n_runs": len(mine),
                    "n_failed": int(failed.get(schedule, 0)),
                    "n_diverged": int(mine["diverged"].sum()),
                    "final_std": stats.spread(final),
                    "seed_range": float(np.nanmax(final) - np.nanmin(final))
                    if np.isfinite(final).any()
                    else math.nan,
                    "best_minus_final_mean": mine["best_minus_final"].mean(),
                    "late_regressions_mean": mine["late_regressions"].mean(),
                    "oscillation_mean": mine["oscillation"].mean(),
                    "epochs_to_peak_mean": mine["epochs_to_peak"].mean(),
                    "target": group["target"].iloc[0],
                    "n_reached": len(reached),
                    "epochs_to_target_mean": reached.mean() if len(reached) else math.nan,
                    "seconds_to_target_mean": np.nanmean(seconds)
                    if np.isfinite(seconds).any()
                    else math.nan,
                }
            )
    return pd.DataFrame(rows, columns=STABILITY_COLUMNS)


def ensemble_table(
    per_run: pd.DataFrame, runs: pd.DataFrame, preferred: Iterable[str] = ()
) -> pd.DataFrame:
    """Per setting and schedule whose runs kept snapshots: the single (final) model against the
    snapshot ensemble on validation and test, and the gain with a 95% CI over runs (paired:
    each run is its own single model). ``runs`` needs ``run_id, val_acc_ensemble,
    test_acc_ensemble, n_snapshots``; empty when no run kept snapshots."""
    kept = runs.loc[runs["n_snapshots"] > 0, ["run_id", *_ENSEMBLE_FACTS]]
    merged = per_run.merge(kept, on="run_id")
    rows = []
    for setting, group in _settings(merged):
        for schedule in order(set(group["schedule"]), preferred):
            mine = group[group["schedule"] == schedule]
            counts = sorted(mine["n_snapshots"].unique())
            row = {
                "setting": setting,
                "schedule": schedule,
                "n_runs": len(mine),
                "n_snapshots": counts[0] if len(counts) == 1 else math.nan,
            }
            for split, single in (("val", "final_val_acc"), ("test", "test_acc")):
                metric = f"{split}_acc_ensemble"
                p = stats.paired(mine[metric], mine[single], resolution(mine, single), (-1, 1))
                row |= {
                    f"{single}_mean": mine[single].mean(),
                    f"{metric}_mean": mine[metric].mean(),
                    f"ensemble_gain_{split}_mean": p.diff.mean,
                    f"ensemble_gain_{split}_ci_low": p.diff.low,
                    f"ensemble_gain_{split}_ci_high": p.diff.high,
                }
            rows.append(row)
    return pd.DataFrame(rows, columns=ENSEMBLE_COLUMNS)


_ENSEMBLE_FACTS = ("val_acc_ensemble", "test_acc_ensemble", "n_snapshots")


def rank_summary(
    accuracy: pd.DataFrame, metric: str = HEADLINE, preferred: Iterable[str] = ()
) -> pd.DataFrame:
    """Across settings: per schedule, the settings it ran in, its mean rank among the schedules
    of each setting (by mean ``metric``; 1 = best) and the settings where it was best."""
    rows = headline(accuracy, metric)
    rank = rows.groupby("setting")["mean"].rank(ascending=False)
    rows = rows.assign(rank=rank)
    summary = rows.groupby("schedule").agg(
        n_settings=("setting", "nunique"),
        rank_mean=("rank", "mean"),
        n_best=("rank", lambda r: int((r == 1).sum())),
    )
    schedules = order(summary.index, preferred)
    return summary.loc[schedules].reset_index()


def lr_sensitivity(per_run: pd.DataFrame, metric: str = HEADLINE) -> pd.DataFrame:
    """When the base LR is swept: per setting (apart from the LR, column ``setting``), schedule
    and LR (``lr``), the mean ``metric`` with its 95% CI; ``near_best`` marks the LRs whose mean
    is within one point of the schedule's best. ``per_run`` needs ``lr`` and ``setting``."""
    rows = []
    for (setting, schedule, lr), mine in per_run.groupby(["setting", "schedule", "lr"]):
        ci = stats.mean_ci(mine[metric], resolution(mine, metric), bounds=(0.0, 1.0))
        rows.append(
            {
                "setting": setting,
                "schedule": schedule,
                "lr": lr,
                "n_runs": len(mine),
                "mean": ci.mean,
                "ci_low": ci.low,
                "ci_high": ci.high,
            }
        )
    columns = ["setting", "schedule", "lr", "n_runs", "mean", "ci_low", "ci_high"]
    table = pd.DataFrame(rows, columns=columns)
    best = table.groupby(["setting", "schedule"])["mean"].transform("max")
    return table.assign(near_best=table["mean"] >= best - NEAR_BEST_LR)


def _span(lrs: pd.Series, ok: pd.Series, best: int) -> tuple[float, float]:
    """The lowest and highest LR of the run of ``ok`` LRs (sorted) around position ``best``."""
    low = high = best
    while low > 0 and ok[low - 1]:
        low -= 1
    while high < len(lrs) - 1 and ok[high + 1]:
        high += 1
    return lrs[low], lrs[high]


def lr_robustness(per_run: pd.DataFrame, metric: str = HEADLINE) -> pd.DataFrame:
    """How wide each schedule's good peak LR is, from a grid of base LRs: per setting (apart
    from the LR) and schedule, ``best_lr`` (the highest mean ``metric``); ``good_low`` to
    ``good_high``, the LRs next to it, on both sides without a gap, whose mean is within
    ``NEAR_BEST_LR`` of the best's, and ``good_decades``, that range's width in decades
    (log10 of high over low; 0 when the best LR stands alone); ``plausible_low`` to
    ``plausible_high`` and ``plausible_decades``, the same for LRs whose 95% CI reaches within
    that distance (the range the grid cannot tell from good); ``diverged_from``, the lowest LR at
    which a run diverged (NaN: none did), the edge of the usable range; ``open`` when the good
    range reaches an end of the grid (its width is then a lower bound). ``per_run`` needs ``lr``,
    ``setting`` and ``diverged``."""
    sens = lr_sensitivity(per_run, metric)
    rows = []
    for (setting, schedule), grid in sens.groupby(["setting", "schedule"], sort=False):
        grid = grid.sort_values("lr").reset_index(drop=True)
        best = int(grid["mean"].idxmax())
        floor = grid["mean"][best] - NEAR_BEST_LR

        good = _span(grid["lr"], grid["mean"] >= floor, best)
        plausible = _span(grid["lr"], grid["ci_high"].fillna(grid["mean"]) >= floor, best)
        mine = per_run[(per_run["setting"] == setting) & (per_run["schedule"] == schedule)]
        diverged = mine.loc[mine["diverged"].astype(bool), "lr"]
        rows.append(
            {
                "setting": setting,
                "schedule": schedule,
                "n_lrs": len(grid),
                "best_lr": grid["lr"][best],
                "best_mean": grid["mean"][best],
                "best_ci_low": grid["ci_low"][best],
                "best_ci_high": grid["ci_high"][best],
                "good_low": good[0],
                "good_high": good[1],
                "good_decades": math.log10(good[1] / good[0]),
                "plausible_low": plausible[0],
                "plausible_high": plausible[1],
                "plausible_decades": math.log10(plausible[1] / plausible[0]),
                "diverged_from": float(diverged.min()) if len(diverged) else math.nan,
                "open": good[0] == grid["lr"].iloc[0] or good[1] == grid["lr"].iloc[-1],
            }
        )
    return pd.DataFrame(rows)


def runs_at_best_lr(per_run: pd.DataFrame, choose_on: str = HEADLINE) -> pd.DataFrame:
    """The runs of each schedule (per setting) at its own best base LR: the ``lr`` whose mean
    ``choose_on`` is highest. ``per_run`` as ``lr_sensitivity`` takes it; its rows are kept."""
    return _at_best(per_run, lr_sensitivity(per_run, choose_on))


def _at_best(per_run: pd.DataFrame, sens: pd.DataFrame) -> pd.DataFrame:
    best = sens.loc[sens.groupby(["setting", "schedule"])["mean"].idxmax()]
    return per_run.merge(best[["setting", "schedule", "lr"]], on=["setting", "schedule", "lr"])


def at_best_lr(
    per_run: pd.DataFrame,
    baseline: str = BASELINE,
    preferred: Iterable[str] = (),
    choose_on: str = HEADLINE,
    compare_on: str = "test_acc",
) -> pd.DataFrame:
    """The fair comparison when the base LR is swept: each schedule at its own best LR, chosen
    on mean ``choose_on`` (validation), then compared on ``compare_on`` (test) like
    ``accuracy_table`` does. Adds ``lr`` (the chosen LR) and ``near_best_lrs`` (the range of LRs
    within one point of the best)."""
    sens = lr_sensitivity(per_run, choose_on)
    chosen = _at_best(per_run, sens)
    table = accuracy_table(chosen, None, baseline, preferred, metrics=(compare_on,))
    near = sens[sens["near_best"]].groupby(["setting", "schedule"])["lr"].agg(["min", "max"])
    best = chosen[["setting", "schedule", "lr"]].drop_duplicates()
    table = table.merge(best, on=["setting", "schedule"])
    return table.assign(
        near_best_lrs=[
            f"{near.loc[(s, k), 'min']:g}–{near.loc[(s, k), 'max']:g}"
            for s, k in zip(table["setting"], table["schedule"], strict=True)
        ]
    )
