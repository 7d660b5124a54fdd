"""The report's figures, drawn from the analysed frames (``bench.plots`` draws each one)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from bench import analysis, plots, schedules
from bench.report.analyse import Analysed
from bench.report.options import METRIC_NAMES, Options


def write_figures(a: Analysed, options: Options, folder: Path, lr: pd.DataFrame) -> None:
    """Every figure of the report into ``folder``: one set per setting. ``lr`` (``run_id,
    step, lr``) holds the LR traces of the runs ``trace_runs`` names (empty: the LR panels are
    left blank)."""
    preferred = schedules.ARMS
    b, m, w = options.baseline, options.metric, options.width
    formats = tuple(options.formats)
    for i, setting in enumerate(a.settings, 1):
        suffix = f"-{i}" if len(a.settings) > 1 else ""
        per_run = a.per_run[a.per_run["setting"] == setting]
        epochs = a.epochs[a.epochs["setting"] == setting]
        order = analysis.order(set(per_run["schedule"]), preferred, b)
        acc = analysis.headline(a.accuracy, m)
        acc = acc[acc["setting"] == setting]
        plots.save(
            plots.val_acc_curves(epochs, order, b, width=w),
            folder,
            f"val_acc_curves{suffix}",
            formats,
        )
        plots.save(
            plots.val_acc_differences(
                analysis.curves.paired_differences(epochs, b), order, b, width=w
            ),
            folder,
            f"val_acc_differences{suffix}",
            formats,
        )
        summary = acc[["schedule", "mean", "ci_low", "ci_high"]]
        plots.save(
            plots.final_acc_per_seed(
                per_run.assign(final_val_acc=per_run[m]), order, summary=summary, width=w
            ),
            folder,
            f"final_acc_per_seed{suffix}",
            formats,
        )
        diffs = acc[acc["schedule"] != b][
            ["schedule", "diff_mean", "diff_ci_low", "diff_ci_high", "p_holm"]
        ]
        diffs = diffs.rename(
            columns={"diff_mean": "mean", "diff_ci_low": "ci_low", "diff_ci_high": "ci_high"}
        )
        plots.save(
            plots.forest(diffs, b, METRIC_NAMES[m], width=w),
            folder,
            f"forest{suffix}",
            formats,
        )
        stab = analysis.stability_runs(per_run, epochs)
        plots.save(plots.stability(stab, order, w), folder, f"stability{suffix}", formats)
        traces = lr.merge(per_run[["run_id", "schedule"]], on="run_id")
        plots.save(plots.lr_traces(traces, order, w), folder, f"lr_traces{suffix}", formats)
    if a.sensitivity is not None:
        order = analysis.order(set(a.sensitivity["schedule"]), preferred, b)
        sensitivity = plots.lr_sensitivity(a.sensitivity, order, w)
        plots.save(sensitivity, folder, "lr_sensitivity", formats)
        plots.save(plots.lr_robustness(a.robustness, order, w), folder, "lr_robustness", formats)
