"""From tidy frames of runs to the report's tables. Pure functions, no I/O.

Inputs are the frames ``bench.tracking.load_runs`` returns: ``runs`` (one row per run, with
``schedule, seed, test_acc``) and ``epochs`` (one row per run and epoch, with ``val_acc``).
Accuracies stay fractions in [0, 1] here; only the Markdown rendering shows percentage points.

Definitions (also in the README):

- final val acc: ``val_acc`` after the last epoch; best val acc: its maximum over epochs.
- 95% CI of a mean: Student's t interval over the runs of a schedule.
- difference from the baseline (``constant``): mean final val acc of the schedule minus the
  baseline's, with Welch's t interval (unequal variances, runs not paired).
- seed range: max minus min of the final val acc over a schedule's runs (seeds).
- best-minus-final gap: best val acc minus final val acc, averaged over runs.
- late regressions: epochs in the second half of training (epoch > E/2) whose val acc fell below
  the previous epoch's, counted per run and averaged.
- epochs to peak: the first epoch whose val acc is within ``PEAK_TOLERANCE`` of the run's best,
  averaged over runs.
- snapshot ensemble (runs with warm restarts): the accuracy of the mean softmax of the weights
  kept at the end of every cycle; its gain is ensemble minus single (final) model, paired by run,
  with Student's t interval of the mean gain. Same training; ``n_snapshots`` times the inference.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
import pandas as pd
from scipy import stats

from bench.schedules import SCHEDULE_FREE

BASELINE = "constant"
CONFIDENCE = 0.95
PEAK_TOLERANCE = 0.005  # half a point of accuracy

ACCURACY_COLUMNS = [
    "schedule",
    "n_runs",
    "n_unfinished",
    "final_val_acc_mean",
    "final_val_acc_std",
    "final_val_acc_ci_low",
    "final_val_acc_ci_high",
    "best_val_acc_mean",
    "test_acc_mean",
    "diff_vs_constant_mean",
    "diff_vs_constant_ci_low",
    "diff_vs_constant_ci_high",
]
ENSEMBLE_COLUMNS = [
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
STABILITY_COLUMNS = [
    "schedule",
    "n_runs",
    "seed_range",
    "best_minus_final_mean",
    "late_regressions_mean",
    "epochs_to_peak_mean",
]


def order(schedules: Iterable[str], preferred: Iterable[str] = ()) -> list[str]:
    """Schedules in ``preferred`` order first (the baseline leading), then the rest sorted."""
    present = set(schedules)
    first = [BASELINE, *[s for s in preferred if s != BASELINE]]
    return [s for s in first if s in present] + sorted(present - set(first))


def late_regressions(val_acc: np.ndarray, epochs: np.ndarray | None = None) -> int:
    """Validations in the second half of training (epoch > E/2, E the last epoch) whose accuracy
    fell below the previous validation's. ``epochs`` defaults to 1, 2, ..."""
    val_acc = np.asarray(val_acc, dtype=float)
    epochs = np.arange(1, len(val_acc) + 1) if epochs is None else np.asarray(epochs)
    drops = np.diff(val_acc, prepend=val_acc[:1]) < 0
    return int(np.sum(drops & (epochs > epochs[-1] / 2)))


def epochs_to_peak(
    val_acc: np.ndarray, epochs: np.ndarray | None = None, tolerance: float = PEAK_TOLERANCE
) -> int:
    """The first epoch whose accuracy is within ``tolerance`` of the best."""
    val_acc = np.asarray(val_acc, dtype=float)
    epochs = np.arange(1, len(val_acc) + 1) if epochs is None else np.asarray(epochs)
    return int(epochs[np.argmax(val_acc >= val_acc.max() - tolerance)])


def per_run(epochs: pd.DataFrame) -> pd.DataFrame:
    """One row per run: ``run_id, schedule, seed, n_epochs, final_val_acc, best_val_acc,
    best_minus_final, late_regressions, epochs_to_peak``."""
    rows = []
    for (run_id, schedule, seed), curve in epochs.sort_values("epoch").groupby(
        ["run_id", "schedule", "seed"], sort=False
    ):
        acc = curve["val_acc"].to_numpy(dtype=float)
        epoch = curve["epoch"].to_numpy()
        rows.append(
            {
                "run_id": run_id,
                "schedule": schedule,
                "seed": seed,
                "n_epochs": len(acc),
                "final_val_acc": acc[-1],
                "best_val_acc": acc.max(),
                "best_minus_final": acc.max() - acc[-1],
                "late_regressions": late_regressions(acc, epoch),
                "epochs_to_peak": epochs_to_peak(acc, epoch),
            }
        )
    return pd.DataFrame(
        rows,
        columns=[
            "run_id",
            "schedule",
            "seed",
            "n_epochs",
            "final_val_acc",
            "best_val_acc",
            "best_minus_final",
            "late_regressions",
            "epochs_to_peak",
        ],
    )


def mean_ci(x: np.ndarray, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Student's t confidence interval of the mean; NaN with fewer than two values."""
    x = np.asarray(x, dtype=float)
    if len(x) < 2:
        return math.nan, math.nan
    if np.all(x == x[0]):
        return float(x[0]), float(x[0])
    ci = stats.ttest_1samp(x, 0.0).confidence_interval(confidence)
    return float(ci.low), float(ci.high)


def diff_ci(x: np.ndarray, y: np.ndarray, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Welch's t confidence interval of ``mean(x) - mean(y)``; NaN with fewer than two of either."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if len(x) < 2 or len(y) < 2:
        return math.nan, math.nan
    if np.all(x == x[0]) and np.all(y == y[0]):
        d = float(x[0] - y[0])
        return d, d
    ci = stats.ttest_ind(x, y, equal_var=False).confidence_interval(confidence)
    return float(ci.low), float(ci.high)


def accuracy_table(
    runs: pd.DataFrame, epochs: pd.DataFrame, preferred: Iterable[str] = ()
) -> pd.DataFrame:
    """Per schedule: final/best validation accuracy with a 95% CI, test accuracy, and the
    difference of the final validation accuracy from the ``constant`` schedule with its 95% CI.

    ``runs`` lists every run with its ``status``; only finished ones are summarised, the others
    are counted in ``n_unfinished``. With a ``setting`` column (``setting_labels``) in both
    frames, one block of rows per setting, compared within it, led by a ``setting`` column.
    """
    return _per_setting(_accuracy_rows, runs, epochs, preferred)


def _per_setting(table, runs: pd.DataFrame, epochs: pd.DataFrame, preferred) -> pd.DataFrame:
    if "setting" not in runs or runs["setting"].nunique() < 2:
        return table(runs, epochs, preferred)
    blocks = [
        table(group, epochs[epochs["setting"] == setting], preferred).assign(setting=setting)
        for setting, group in runs.groupby("setting", sort=True)
    ]
    joined = pd.concat(blocks, ignore_index=True)
    return joined[["setting", *[c for c in joined.columns if c != "setting"]]]


def _accuracy_rows(
    runs: pd.DataFrame, epochs: pd.DataFrame, preferred: Iterable[str] = ()
) -> pd.DataFrame:
    finished = runs[runs["status"] == "FINISHED"]
    unfinished = runs[runs["status"] != "FINISHED"].groupby("schedule").size()
    summary = per_run(epochs[epochs["run_id"].isin(finished["run_id"])])
    summary = summary.merge(finished[["run_id", "test_acc"]], on="run_id", how="left")
    baseline = summary.loc[summary["schedule"] == BASELINE, "final_val_acc"].to_numpy()
    rows = []
    for schedule in order(set(runs["schedule"]), preferred):
        group = summary[summary["schedule"] == schedule]
        final = group["final_val_acc"].to_numpy()
        low, high = mean_ci(final)
        # The baseline's own row has no difference to show.
        has_baseline = len(baseline) > 0 and len(final) > 0 and schedule != BASELINE
        d_low, d_high = diff_ci(final, baseline) if has_baseline else (math.nan, math.nan)
        rows.append(
            {
                "schedule": schedule,
                "n_runs": len(group),
                "n_unfinished": int(unfinished.get(schedule, 0)),
                "final_val_acc_mean": final.mean() if len(final) else math.nan,
                "final_val_acc_std": final.std(ddof=1) if len(final) > 1 else math.nan,
                "final_val_acc_ci_low": low,
                "final_val_acc_ci_high": high,
                "best_val_acc_mean": group["best_val_acc"].mean(),
                "test_acc_mean": group["test_acc"].mean(),
                "diff_vs_constant_mean": final.mean() - baseline.mean()
                if has_baseline
                else math.nan,
                "diff_vs_constant_ci_low": d_low,
                "diff_vs_constant_ci_high": d_high,
            }
        )
    return pd.DataFrame(rows, columns=ACCURACY_COLUMNS)


def stability_table(epochs: pd.DataFrame, preferred: Iterable[str] = ()) -> pd.DataFrame:
    """Per schedule: seed range of the final accuracy, best-minus-final gap, late regressions and
    epochs to peak (definitions in the module docstring); per setting with a ``setting``
    column, as in ``accuracy_table``."""
    runs = epochs.drop_duplicates("run_id")
    return _per_setting(lambda _, e, p: _stability_rows(e, p), runs, epochs, preferred)


def _stability_rows(epochs: pd.DataFrame, preferred: Iterable[str] = ()) -> pd.DataFrame:
    summary = per_run(epochs)
    rows = []
    for schedule in order(set(summary["schedule"]), preferred):
        group = summary[summary["schedule"] == schedule]
        rows.append(
            {
                "schedule": schedule,
                "n_runs": len(group),
                "seed_range": group["final_val_acc"].max() - group["final_val_acc"].min(),
                "best_minus_final_mean": group["best_minus_final"].mean(),
                "late_regressions_mean": group["late_regressions"].mean(),
                "epochs_to_peak_mean": group["epochs_to_peak"].mean(),
            }
        )
    return pd.DataFrame(rows, columns=STABILITY_COLUMNS)


def ensemble_table(
    runs: pd.DataFrame, epochs: pd.DataFrame, preferred: Iterable[str] = ()
) -> pd.DataFrame:
    """Per schedule whose finished runs kept snapshots: the single (final) model against the
    snapshot ensemble on validation and test, and the gain with a 95% CI over runs (paired:
    each run is its own single model). ``runs`` needs ``val_acc_ensemble, test_acc_ensemble,
    n_snapshots`` (``bench.tracking.load_runs``); per setting as in ``accuracy_table``; empty
    when no run kept snapshots."""
    return _per_setting(_ensemble_rows, runs, epochs, preferred)


def _ensemble_rows(
    runs: pd.DataFrame, epochs: pd.DataFrame, preferred: Iterable[str] = ()
) -> pd.DataFrame:
    kept = runs[(runs["status"] == "FINISHED") & (runs["n_snapshots"] > 0)]
    summary = per_run(epochs[epochs["run_id"].isin(kept["run_id"])])
    summary = summary.merge(
        kept[["run_id", "test_acc", "val_acc_ensemble", "test_acc_ensemble", "n_snapshots"]],
        on="run_id",
    )
    rows = []
    for schedule in order(set(summary["schedule"]), preferred):
        group = summary[summary["schedule"] == schedule]
        row = {"schedule": schedule, "n_runs": len(group)}
        counts = sorted(group["n_snapshots"].unique())
        row["n_snapshots"] = counts[0] if len(counts) == 1 else math.nan
        for split, single in (("val", "final_val_acc"), ("test", "test_acc")):
            gain = (group[f"{split}_acc_ensemble"] - group[single]).to_numpy(dtype=float)
            low, high = mean_ci(gain)
            row |= {
                f"{single}_mean": group[single].mean(),
                f"{split}_acc_ensemble_mean": group[f"{split}_acc_ensemble"].mean(),
                f"ensemble_gain_{split}_mean": gain.mean(),
                f"ensemble_gain_{split}_ci_low": low,
                f"ensemble_gain_{split}_ci_high": high,
            }
        rows.append(row)
    return pd.DataFrame(rows, columns=ENSEMBLE_COLUMNS)


# Params that are expected to differ between the runs of one comparison.
_PER_RUN = ("seed", "run_name")
_NOT_SETTINGS = ("tracking.", "report.", "schedule.")
# Params a run derives from its settings (the data's sizes, the step count).
_DERIVED = (
    "total_steps",
    "steps_per_epoch",
    "num_classes",
    "in_channels",
    "image_size",
    "n_train",
    "n_val",
    "n_test",
    "n_snapshots",
)


def setting_labels(runs: pd.DataFrame) -> pd.Series:
    """For every run, the values of the settings in which the finished runs differ (other
    than the seed, the schedule and its knobs, and where the runs are recorded), as
    ``"model.width=8, optimizer.lr=0.1"``; ``""`` for all when they share one setting.

    A schedule-free optimizer stands in for a schedule (``bench.schedules.SCHEDULE_FREE``): its
    ``optimizer.*`` params are its knobs, like a schedule's, so its runs sit beside the
    schedules' instead of making a setting of their own. A param that some runs lack (one that
    a later version of bench added, say) is compared among the runs that have it.
    ``runs`` needs ``status`` and ``params`` (a dict per run)."""
    if runs.empty:
        return pd.Series("", index=runs.index, dtype=object)
    params = pd.DataFrame(list(runs["params"]), index=runs.index)
    schedule_free = params.get("optimizer._target_", pd.Series(dtype=object)).isin(SCHEDULE_FREE)
    optimizer_keys = [c for c in params if c.startswith("optimizer.")]
    params.loc[schedule_free.reindex(params.index, fill_value=False), optimizer_keys] = None
    finished = params[runs["status"] == "FINISHED"]
    differ = sorted(
        c
        for c in params
        if c not in _PER_RUN
        and c not in _DERIVED
        and not c.startswith(_NOT_SETTINGS)
        and finished[c].dropna().astype(str).nunique() > 1
    )
    if not differ:
        return pd.Series("", index=runs.index, dtype=object)
    return params[differ].apply(
        lambda row: ", ".join(f"{c}={row[c]}" for c in differ if pd.notna(row[c])), axis=1
    )


def pooling_warnings(runs: pd.DataFrame) -> list[str]:
    """What makes pooling these finished runs questionable: the same schedule, seed and settings
    run more than once (repeats count as extra samples and narrow the intervals), or runs of one
    schedule whose knobs differ. (Runs whose other settings differ are reported per setting,
    see ``setting_labels``.) ``runs`` needs ``schedule, seed, status, params`` (a dict per
    run)."""
    finished = runs[runs["status"] == "FINISHED"]
    if finished.empty:
        return []
    params = pd.DataFrame(list(finished["params"]), index=finished.index).astype(str)
    settings = params.drop(columns=[c for c in _PER_RUN if c in params], errors="ignore")
    warnings = []

    repeats = int(settings.assign(seed=finished["seed"]).duplicated().sum())
    if repeats:
        warnings.append(
            f"{repeats} run(s) repeat the schedule, seed and settings of another run; each "
            "counts as a separate sample, which narrows the intervals"
        )

    knobs = [c for c in settings if c.startswith("schedule.")]
    knobs_differ = sorted(
        {
            c
            for _, group in settings.groupby(finished["schedule"])
            for c in knobs
            if group[c].nunique(dropna=True) > 1
        }
    )
    if knobs_differ:
        warnings.append(
            "runs of one schedule with different knobs are pooled; they differ in "
            + ", ".join(knobs_differ)
        )
    return warnings
