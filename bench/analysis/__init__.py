"""From tidy frames of runs to the report's tables and verdicts. Pure functions, no I/O.

- ``stats``: intervals, paired differences, Holm's correction, seeds needed (``scipy.stats``);
- ``curves``: what one run's validation curve says, and the per-run frame;
- ``pooling``: settings, cells counted once, what makes pooling questionable;
- ``tables``: the accuracy, stability, ensemble, rank and LR-sensitivity tables;
- ``claims``: the claims about schedules and their verdicts.

Inputs are the frames ``bench.tracking.load_runs`` returns. Accuracies stay fractions in
[0, 1]; only the rendering (``bench.report``) shows percentage points.
"""

from bench.analysis import claims, curves, pooling, stats, tables
from bench.analysis.curves import per_run
from bench.analysis.pooling import latest_per_cell, pooling_warnings, setting_labels
from bench.analysis.tables import (
    BASELINE,
    HEADLINE,
    accuracy_table,
    at_best_lr,
    ensemble_table,
    headline,
    lr_robustness,
    lr_sensitivity,
    order,
    rank_summary,
    runs_at_best_lr,
    stability_runs,
    stability_table,
)

__all__ = [
    "BASELINE",
    "HEADLINE",
    "accuracy_table",
    "at_best_lr",
    "claims",
    "curves",
    "ensemble_table",
    "headline",
    "latest_per_cell",
    "lr_robustness",
    "lr_sensitivity",
    "order",
    "per_run",
    "pooling",
    "pooling_warnings",
    "rank_summary",
    "runs_at_best_lr",
    "setting_labels",
    "stability_runs",
    "stability_table",
    "stats",
    "tables",
]
