"""The report's one edge to the outside: the runs loaded from MLflow once, the folder written
aside and swapped in whole, the report of one sweep logged to its parent run and saved as a
view of MLflow's UI."""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from bench import analysis, tracking
from bench.report import data as saved_data
from bench.report.analyse import Analysed, analyse, trace_runs
from bench.report.document import description, headline_metrics, report_md, write_tables
from bench.report.figures import write_figures
from bench.report.options import Options, Report
from bench.report.views import tables

BASELINE_TAG = "bench.report.baseline"  # on a sweep's parent run: what diff_vs_baseline is from


NOTE_TAG = "mlflow.note.content"  # the description MLflow's UI shows on a run's page


def write(
    data: tracking.Runs,
    folder: Path,
    options: Options | None = None,
    scope: str = "all its runs",
    commands: Sequence[str] = (),
    lr: pd.DataFrame | None = None,
    analysed: Analysed | None = None,
) -> Report:
    """Write the report of ``data`` into ``folder`` (replaced whole), from ``analysed`` (or
    analysed here). ``scope`` and the ``commands`` that made the runs are named under "What was
    run"; ``lr`` holds the LR traces of the runs ``trace_runs`` names (none: the LR panels are
    left blank). Reads nothing: ``make`` loads what it writes. Keeps all of these in the
    folder's ``data/`` (``bench.report.data``), from which ``redraw`` writes it again."""
    options = options or Options()
    if data.finished.empty:
        raise LookupError(
            f"experiment {data.experiment!r} has no finished runs to report "
            f"({len(data.runs)} runs in all)"
        )
    a = analysed or analyse(data, options)
    if lr is None:
        lr = pd.DataFrame(columns=["run_id", "step", "lr"])
    folder = Path(folder)
    target = folder.resolve()  # "." or "..": a folder of its own name, beside its parent's
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        shown = tables(a, options)
        write_tables(shown, staging)
        write_figures(a, options, staging, lr)
        saved = saved_data.Saved(data, lr, scope, list(commands), options)
        saved_data.save(staging / saved_data.FOLDER, saved)
        (staging / "report.md").write_text(
            report_md(data, a, options, scope, list(commands), shown)
        )
        umask = os.umask(0)
        os.umask(umask)
        staging.chmod(0o777 & ~umask)  # mkdtemp makes it private; the report is not
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old.", dir=target.parent))
            target.rename(old / target.name)
            staging.rename(target)
            shutil.rmtree(old)
        else:
            staging.rename(target)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    finished = a.runs[a.runs["status"] == "FINISHED"]
    return Report(
        folder=folder,
        accuracy=a.accuracy,
        stability=a.stability,
        claims=a.claims,
        claims_at_best_lr=a.claims_at_best_lr,
        n_finished=len(finished),
        n_unfinished=len(a.runs) - len(finished),
        warnings=a.warnings,
        options=options,
        ensemble=a.ensemble,
    )


def redraw(
    source: Path,
    folder: Path | None = None,
    baseline: str = "",
    metric: str = "",
    formats: Sequence[str] = (),
    width: float | None = None,
) -> Report:
    """Write the report kept in ``source`` (a report's folder, or its ``data/``) again, from its
    data alone (``bench.report.data``), to ``folder`` (default: that report's folder): no MLflow
    store is read or updated. ``baseline``, ``metric``, ``formats`` and ``width`` replace the
    report's own where given."""
    data_folder, report_folder = saved_data.locate(source)
    folder = Path(folder) if folder is not None else report_folder
    saved = saved_data.load(data_folder)
    options = dataclasses.replace(
        saved.options,
        baseline=baseline or saved.options.baseline,
        metric=metric or saved.options.metric,
        formats=tuple(formats) or saved.options.formats,
        width=width or saved.options.width,
    )
    return write(saved.data, folder, options, saved.scope, saved.commands, saved.lr)


def make(
    uri: str,
    experiment: str,
    folder: str | Path,
    sweeps: Sequence[str] = (),
    options: Options | None = None,
    tags: dict[str, str] | None = None,
    params: dict[str, str] | None = None,
) -> Report:
    """Load ``experiment`` (its runs nested under ``sweeps``, or all of them) from MLflow,
    filtered by exact ``tags`` and ``params``, and write its report to ``folder``; the report of
    one sweep is also logged to the sweep's parent run, with its headline numbers as metrics, and
    saved as a view of MLflow's runs page (``Report.view``, its key).
    Runs left RUNNING by a process that died are first marked KILLED."""
    tracking.close_stale(uri, tracking.experiment_id(uri, experiment))
    data = tracking.load_runs(
        uri, experiment, sweeps=list(sweeps) or None, tags=tags, params=params
    )
    # The commands of the sweeps these runs came from (in the order they started).
    parents = list(sweeps) or [s for s in dict.fromkeys(data.runs["sweep"]) if s]
    commands = list(dict.fromkeys(tracking.sweep_info(uri, s).get("command", "") for s in parents))
    scope = (
        f"sweep `{sweeps[0]}`"
        if len(sweeps) == 1
        else f"sweeps {', '.join(f'`{s}`' for s in sweeps)}"
        if sweeps
        else "all its runs"
    )
    filters = [f"tag {k}={v}" for k, v in (tags or {}).items()]
    filters += [f"{k}={v}" for k, v in (params or {}).items()]
    if filters:
        scope += " where " + ", ".join(filters)
    options = options or Options()
    a = analyse(data, options) if not data.finished.empty else None
    lr = tracking.load_lr(uri, trace_runs(a)) if a is not None else None
    report = write(data, Path(folder), options, scope, [c for c in commands if c], lr, a)
    if len(sweeps) == 1 and not filters:  # a subset of a sweep is not the sweep's report
        tracking.log_artifacts(uri, sweeps[0], report.folder)
        tracking.log_metrics(uri, sweeps[0], headline_metrics(report))
        tracking.set_tags(
            uri, sweeps[0], {BASELINE_TAG: report.options.baseline, NOTE_TAG: description(report)}
        )
        report = dataclasses.replace(report, view=save_view(uri, data, sweeps[0]))
    return report


def save_view(uri: str, data: tracking.Runs, sweep: str) -> str:
    """Save the sweep's comparison as a view of MLflow's runs page (``bench.tracking.views``):
    its runs, grouped by schedule and by each setting that varies; returns the view's key."""
    runs = data.runs
    return tracking.write_view(
        uri,
        tracking.experiment_id(uri, data.experiment),
        sweep,
        tracking.sweep_info(uri, sweep)["run_name"],
        tracking.run_filter(sweep, list(runs["run_id"]), list(runs["sweep"])),
        ["schedule", *analysis.pooling.setting_keys(runs)],
        tracking.accuracy_range(list(data.epochs["val_acc"])),
    )
