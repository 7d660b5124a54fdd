"""The report: runs read back from MLflow -> pure analysis -> views -> report.md and figures.

A report is one folder:

- ``report.md``: what was run, the verdicts on the claims, the tables and the figures, top to
  bottom;
- tables as CSV (stable, machine-readable column names; accuracies as fractions), Markdown and
  LaTeX (booktabs; readable headers, points): ``accuracy``, ``stability``, ``claims``, and where
  they apply ``ensemble``, ``ranks`` (several settings), ``lr_sensitivity``, ``at_best_lr``,
  ``claims_at_best_lr`` and ``lr_robustness`` (a swept base LR);
- ``data/``: the runs, curves and LR traces it was drawn from (``data``), from which
  ``bench-report --from FOLDER`` draws it again without the MLflow store (``redraw``);
- figures as PNG and SVG (and PDF on request): ``val_acc_curves``, ``val_acc_differences``,
  ``final_acc_per_seed``, ``forest``, ``stability``, ``lr_traces``, ``lr_sensitivity`` and
  ``lr_robustness`` (a swept base LR); one
  set per setting when the runs differ in more than the schedule and the seed
  (``val_acc_curves-1.png``, ...).

A sweep's report goes to the sweep's own folder unless told otherwise, so trying something
never overwrites the curated copy under ``results/``; a report of one sweep is also logged to
the sweep's parent run in MLflow, with its headline numbers as metrics. The folder is written
aside and swapped in whole: a failed report never leaves a half-written one.

One job per module, in the order the data flows: ``options`` (what a report compares, and
``Report``, what it found), ``analyse`` (the runs as loaded -> every frame shown; pure),
``views`` (frames -> tables for readers), ``document`` (report.md, the table files, the parent
run's description), ``figures`` (the figures), ``data`` (what the report was drawn from, kept
beside it), ``publish`` (the one edge: the runs and LR traces loaded from MLflow once, or from a
report's data, the folder swapped in, the parent run updated), ``cli`` (``bench-report``).
"""

from bench.report.analyse import Analysed, analyse, trace_runs
from bench.report.cli import main, parser, print_tables
from bench.report.document import description, headline_metrics
from bench.report.options import FORMATS, HEADLINES, METRIC_NAMES, Options, Report, options_from
from bench.report.publish import BASELINE_TAG, NOTE_TAG, make, redraw, write
from bench.report.views import (
    accuracy_view,
    claims_view,
    ensemble_view,
    stability_view,
    to_latex,
    to_markdown,
)

__all__ = [
    "BASELINE_TAG",
    "FORMATS",
    "HEADLINES",
    "METRIC_NAMES",
    "NOTE_TAG",
    "Analysed",
    "Options",
    "Report",
    "accuracy_view",
    "analyse",
    "claims_view",
    "description",
    "ensemble_view",
    "headline_metrics",
    "main",
    "make",
    "options_from",
    "parser",
    "print_tables",
    "redraw",
    "stability_view",
    "to_latex",
    "to_markdown",
    "trace_runs",
    "write",
]
