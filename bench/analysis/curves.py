"""What one run's validation curve says: final and best accuracy, regressions, oscillation,
when it peaks and when it reaches a target. Pure functions of arrays, and ``per_run``, which
turns the tidy frames of many runs into one row per run.

Definitions (also in ``bench/analysis/README.md``):

- **final** val acc: after the last epoch; **best**: the highest over the epochs.
- **late regressions**: validations in the second half of training (epoch > E/2, E the last
  epoch) whose accuracy is more than ``REGRESSION_THRESHOLD`` below the best seen so far.
- **oscillation**: the standard deviation of the epoch-to-epoch change of val acc over the last
  quarter of training (the changes into epochs > 3E/4).
- **epochs to peak**: the first epoch within ``PEAK_TOLERANCE`` of the run's best.
- **epochs / seconds to target**: the first epoch (and the wall time from the run's start to its
  validation) whose val acc reaches a target; NaN when the run never does.
- **diverged**: the run was stopped or tagged as diverged, or a loss or accuracy is NaN/inf.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

REGRESSION_THRESHOLD = 0.005  # half a point of accuracy
PEAK_TOLERANCE = 0.005  # half a point of accuracy


def _epochs(acc: np.ndarray, epochs) -> np.ndarray:
    return np.arange(1, len(acc) + 1) if epochs is None else np.asarray(epochs)


def late_regressions(acc, epochs=None, threshold: float = REGRESSION_THRESHOLD) -> int:
    """Validations in the second half of training more than ``threshold`` below the running
    best. ``epochs`` (the epoch of each value) defaults to 1, 2, ..."""
    acc = np.asarray(acc, dtype=float)
    if len(acc) == 0:
        return 0
    epochs = _epochs(acc, epochs)
    below = acc < np.maximum.accumulate(acc) - threshold
    return int(np.sum(below & (epochs > epochs[-1] / 2)))


def oscillation(acc, epochs=None) -> float:
    """Standard deviation of the epoch-to-epoch changes into the last quarter (epoch > 3E/4);
    NaN with fewer than two such changes."""
    acc = np.asarray(acc, dtype=float)
    if len(acc) < 3:
        return math.nan
    epochs = _epochs(acc, epochs)
    changes = np.diff(acc)[epochs[1:] > 0.75 * epochs[-1]]
    return float(np.std(changes, ddof=1)) if len(changes) >= 2 else math.nan


def epochs_to_peak(acc, epochs=None, tolerance: float = PEAK_TOLERANCE) -> int:
    """The first epoch whose accuracy is within ``tolerance`` of the run's best."""
    acc = np.asarray(acc, dtype=float)
    return int(_epochs(acc, epochs)[np.argmax(acc >= np.nanmax(acc) - tolerance)])


PER_RUN_COLUMNS = [
    "run_id",
    "setting",
    "schedule",
    "seed",
    "n_epochs",
    "final_val_acc",
    "best_val_acc",
    "test_acc",
    "best_minus_final",
    "late_regressions",
    "oscillation",
    "epochs_to_peak",
    "diverged",
    "n_val",
    "n_test",
]


def per_run(
    epochs: pd.DataFrame,
    runs: pd.DataFrame | None = None,
    threshold: float = REGRESSION_THRESHOLD,
) -> pd.DataFrame:
    """One row per run of ``epochs`` (``run_id, schedule, seed, epoch, val_acc``, optionally
    ``val_loss, train_loss, setting``), with the measures in the module docstring
    (``PER_RUN_COLUMNS``). ``runs`` (one row per run) adds ``test_acc``, ``diverged`` and the
    evaluation sets' sizes ``n_val``/``n_test`` (from its ``params``), where it has them."""
    rows = []
    for run_id, curve in epochs.sort_values(["run_id", "epoch"]).groupby("run_id", sort=False):
        acc = curve["val_acc"].to_numpy(dtype=float)
        epoch = curve["epoch"].to_numpy()
        first = curve.iloc[0]
        seen = np.isfinite(acc).any()
        best = np.nanmax(acc) if seen else math.nan
        rows.append(
            {
                "run_id": run_id,
                "setting": first.get("setting", ""),
                "schedule": first["schedule"],
                "seed": first["seed"],
                "n_epochs": len(acc),
                "final_val_acc": acc[-1],
                "best_val_acc": best,
                "best_minus_final": best - acc[-1],
                "late_regressions": late_regressions(acc, epoch, threshold),
                "oscillation": oscillation(acc, epoch),
                "epochs_to_peak": epochs_to_peak(acc, epoch) if seen else math.nan,
                "diverged": not np.isfinite(acc).all(),
            }
        )
    table = pd.DataFrame(rows, columns=PER_RUN_COLUMNS[:13])
    extra = _run_facts(runs)
    table = table.merge(extra, on="run_id", how="left", suffixes=("", "_run"))
    if "diverged_run" in table:
        table["diverged"] = table["diverged"] | table.pop("diverged_run").fillna(False).astype(bool)
    if "test_acc_run" in table:
        table["test_acc"] = table.pop("test_acc_run")
    return table[PER_RUN_COLUMNS]


def _run_facts(runs: pd.DataFrame | None) -> pd.DataFrame:
    """``run_id, test_acc, diverged, n_val, n_test`` from the runs frame, NaN where unknown."""
    columns = ["run_id", "test_acc", "diverged", "n_val", "n_test"]
    if runs is None or runs.empty:
        return pd.DataFrame(columns=columns).astype({"run_id": object})
    params = runs["params"] if "params" in runs else pd.Series([{}] * len(runs), index=runs.index)
    return pd.DataFrame(
        {
            "run_id": runs["run_id"],
            "test_acc": runs.get("test_acc", math.nan),
            "diverged": runs.get("diverged", False),
            "n_val": [float(p.get("n_val", math.nan)) for p in params],
            "n_test": [float(p.get("n_test", math.nan)) for p in params],
        }
    )


def paired_differences(epochs: pd.DataFrame, baseline: str) -> pd.DataFrame:
    """Per schedule and epoch, the validation accuracy minus the ``baseline``'s, paired by seed,
    in points: columns ``schedule, epoch, n, mean, ci_low, ci_high`` (Student's t, 95%; NaN
    bounds with one pair). ``epochs``: columns schedule, seed, epoch, val_acc (fraction). Seeds
    the baseline did not run, and epochs one side lacks, are left out. Pure."""
    from bench.analysis.stats import mean_ci

    columns = ["schedule", "epoch", "n", "mean", "ci_low", "ci_high"]
    wide = epochs.pivot_table(index=["seed", "epoch"], columns="schedule", values="val_acc")
    if baseline not in wide.columns:
        return pd.DataFrame(columns=columns)
    rows = []
    for schedule in [c for c in wide.columns if c != baseline]:
        diff = (wide[schedule] - wide[baseline]).dropna() * 100
        for epoch, values in diff.groupby(level="epoch"):
            ci = mean_ci(values.to_numpy())
            rows.append((schedule, int(epoch), ci.n, ci.mean, ci.low, ci.high))
    return pd.DataFrame(rows, columns=columns)
