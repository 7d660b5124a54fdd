"""bench-report: read runs back from MLflow and write the tables and figures.

The report of experiment ``E`` goes to ``<results>/E/``:

- ``accuracy.csv`` / ``accuracy.md``, ``stability.csv`` / ``stability.md``
  (tables from ``bench.analysis``; CSV in fractions, Markdown in percentage points), and
  ``ensemble.csv`` / ``ensemble.md`` when runs kept warm-restart snapshots;
- ``val_acc_curves``, ``lr_traces``, ``final_acc_per_seed`` as ``.png`` and ``.svg``;
- ``README.md``: the tables and figures on one page.

Runs that differ in more than the schedule and the seed (a grid over a base LR, two models, ...)
are reported per setting: the tables get a ``setting`` column and each setting its own figures
(``val_acc_curves-1.png``, ...).

The folder is written aside and swapped in whole: a failed report never leaves a half-written one.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from bench import analysis, plots, schedules, tracking

ACC_LIKE = ("_acc_", "diff_vs", "seed_range", "best_minus_final", "ensemble_gain")


@dataclass
class Report:
    folder: Path
    accuracy: pd.DataFrame
    stability: pd.DataFrame
    n_finished: int
    n_unfinished: int
    warnings: list[str]
    ensemble: pd.DataFrame | None = None


def to_markdown(table: pd.DataFrame) -> str:
    """A Markdown table; accuracy-like columns in percentage points with two decimals."""
    shown = table.copy()
    for column in shown.columns:
        if any(key in column for key in ACC_LIKE):
            shown[column] = shown[column] * 100
    shown = shown.astype(object).where(shown.notna(), None)  # tabulate shows None as missingval
    return shown.to_markdown(index=False, floatfmt=".2f", missingval="–") + "\n"


FIGURES = (
    ("val_acc_curves", "Validation accuracy per epoch"),
    ("final_acc_per_seed", "Final validation accuracy per seed"),
    ("lr_traces", "Learning rate per optimizer step"),
)


def _figures(settings: list[str]) -> str:
    """The README's figure section: one block per setting when there are several."""
    if len(settings) < 2:
        return "\n".join(f"![{title}]({stem}.png)\n" for stem, title in FIGURES)
    return "\n".join(
        f"### Setting {i}: {setting}\n\n"
        + "\n".join(f"![{title}]({stem}-{i}.png)\n" for stem, title in FIGURES)
        for i, setting in enumerate(settings, 1)
    )


def _readme(
    data: tracking.Runs,
    sweep: str | None,
    acc: pd.DataFrame,
    stab: pd.DataFrame,
    command: str | None,
    settings: list[str],
    ens: pd.DataFrame,
) -> str:
    n_finished = len(data.finished)
    scope = f"sweep `{sweep}`" if sweep else "all sweeps"
    made_by = f" (made by `{command}`)" if command else ""
    warnings = "".join(f"\n> **Warning:** {w}.\n" for w in analysis.pooling_warnings(data.runs))
    if len(settings) > 1:
        warnings += (
            f"\nThe runs differ in more than the schedule and the seed: they are reported per "
            f"setting ({len(settings)} settings, the `setting` column), and each schedule is "
            "compared with `constant` within its setting.\n"
        )
    return f"""# Report: {data.experiment}

MLflow experiment `{data.experiment}`, {scope}{made_by}: {n_finished} finished runs,
{len(data.runs) - n_finished} not finished (failed, killed or still running; left out below).
{warnings}
Accuracies are in percentage points; the CSV files hold the same tables as fractions.
Column definitions are in the project README under "The report".

## Accuracy

{to_markdown(acc)}
## Stability

{to_markdown(stab)}{_ensemble_section(ens)}
## Figures

{_figures(settings)}"""


def _ensemble_section(ens: pd.DataFrame) -> str:
    if ens.empty:
        return ""
    return f"""
## Snapshot ensembles

The weights at the end of every warm-restart cycle, averaged (mean softmax), against the final
model alone: the same training, `n_snapshots` times the inference. Gains are ensemble minus single
model, paired by run.

{to_markdown(ens)}"""


def write(
    data: tracking.Runs, folder: Path, sweep: str | None = None, command: str | None = None
) -> Report:
    """Write the report of ``data`` into ``folder`` (replaced whole); ``sweep`` and the
    ``command`` that made it are named in its README."""
    if data.finished.empty:
        raise LookupError(
            f"experiment {data.experiment!r} has no finished runs to report "
            f"({len(data.runs)} runs in all)"
        )
    preferred = list(schedules.SCHEDULES)
    runs = data.runs.assign(setting=analysis.setting_labels(data.runs))
    finished_epochs = data.epochs[data.epochs["run_id"].isin(data.finished["run_id"])]
    finished_epochs = finished_epochs.merge(runs[["run_id", "setting"]], on="run_id")
    acc = analysis.accuracy_table(runs, finished_epochs, preferred)
    stab = analysis.stability_table(finished_epochs, preferred)
    ens = analysis.ensemble_table(runs, finished_epochs, preferred)
    settings = sorted(finished_epochs["setting"].unique())

    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        acc.to_csv(staging / "accuracy.csv", index=False)
        stab.to_csv(staging / "stability.csv", index=False)
        (staging / "accuracy.md").write_text(to_markdown(acc))
        (staging / "stability.md").write_text(to_markdown(stab))
        if not ens.empty:
            ens.to_csv(staging / "ensemble.csv", index=False)
            (staging / "ensemble.md").write_text(to_markdown(ens))
        for i, setting in enumerate(settings, 1):
            suffix = f"-{i}" if len(settings) > 1 else ""
            epochs = finished_epochs[finished_epochs["setting"] == setting]
            lr = data.lr[data.lr["run_id"].isin(epochs["run_id"])]
            order = analysis.order(set(epochs["schedule"]), preferred)
            plots.save(plots.val_acc_curves(epochs, order), staging, f"val_acc_curves{suffix}")
            plots.save(plots.lr_traces(lr, order), staging, f"lr_traces{suffix}")
            plots.save(
                plots.final_acc_per_seed(analysis.per_run(epochs), order),
                staging,
                f"final_acc_per_seed{suffix}",
            )
        (staging / "README.md").write_text(_readme(data, sweep, acc, stab, command, settings, ens))
        umask = os.umask(0)
        os.umask(umask)
        staging.chmod(0o777 & ~umask)  # mkdtemp makes it private; the report is not
        if folder.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{folder.name}.old.", dir=folder.parent))
            folder.rename(old / folder.name)
            staging.rename(folder)
            shutil.rmtree(old)
        else:
            staging.rename(folder)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    n_finished = len(data.finished)
    warnings = analysis.pooling_warnings(data.runs)
    return Report(folder, acc, stab, n_finished, len(data.runs) - n_finished, warnings, ens)


def _interval(mean: float, low: float, high: float, signed: bool = False) -> str:
    """``97.92 [97.05, 98.78]`` in percentage points; ``–`` where undefined."""
    if pd.isna(mean):
        return "–"
    fmt = "{:+.2f}" if signed else "{:.2f}"
    text = fmt.format(mean * 100)
    if not pd.isna(low):
        text += f" [{fmt.format(low * 100)}, {fmt.format(high * 100)}]"
    return text


def terminal_tables(report: Report) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The two tables narrowed for a terminal: means with their 95% CI in brackets."""
    acc = report.accuracy
    compact = pd.DataFrame(
        {
            **({"setting": acc["setting"]} if "setting" in acc else {}),
            "schedule": acc["schedule"],
            "runs": acc["n_runs"],
            "final val acc % [95% CI]": [
                _interval(r.final_val_acc_mean, r.final_val_acc_ci_low, r.final_val_acc_ci_high)
                for r in acc.itertuples()
            ],
            "best val acc %": [_interval(v, None, None) for v in acc["best_val_acc_mean"]],
            "test acc %": [_interval(v, None, None) for v in acc["test_acc_mean"]],
            "vs constant, points [95% CI]": [
                _interval(
                    r.diff_vs_constant_mean,
                    r.diff_vs_constant_ci_low,
                    r.diff_vs_constant_ci_high,
                    signed=True,
                )
                for r in acc.itertuples()
            ],
        }
    )
    stab = report.stability.rename(
        columns={
            "n_runs": "runs",
            "seed_range": "seed range (points)",
            "best_minus_final_mean": "best - final (points)",
            "late_regressions_mean": "late regressions",
            "epochs_to_peak_mean": "epochs to peak",
        }
    )
    for column in ("seed range (points)", "best - final (points)"):
        stab[column] = stab[column] * 100
    return compact, stab


def ensemble_terminal(ens: pd.DataFrame) -> pd.DataFrame:
    """The snapshot-ensemble table narrowed for a terminal."""
    return pd.DataFrame(
        {
            **({"setting": ens["setting"]} if "setting" in ens else {}),
            "schedule": ens["schedule"],
            "runs": ens["n_runs"],
            "snapshots": ens["n_snapshots"],
            "val: single -> ensemble %": [
                f"{_interval(r.final_val_acc_mean, None, None)} -> "
                f"{_interval(r.val_acc_ensemble_mean, None, None)}"
                for r in ens.itertuples()
            ],
            "val gain": [
                _interval(
                    r.ensemble_gain_val_mean,
                    r.ensemble_gain_val_ci_low,
                    r.ensemble_gain_val_ci_high,
                    signed=True,
                )
                for r in ens.itertuples()
            ],
            "test gain": [
                _interval(
                    r.ensemble_gain_test_mean,
                    r.ensemble_gain_test_ci_low,
                    r.ensemble_gain_test_ci_high,
                    signed=True,
                )
                for r in ens.itertuples()
            ],
        }
    )


def print_tables(report: Report, file=None) -> None:
    file = file or sys.stdout
    acc, stab = terminal_tables(report)
    unfinished = f", {report.n_unfinished} not finished" if report.n_unfinished else ""
    print(f"\nValidation accuracy ({report.n_finished} finished runs{unfinished})", file=file)
    print(acc.to_markdown(index=False, tablefmt="simple", disable_numparse=True), file=file)
    print("\nStability", file=file)
    print(stab.to_markdown(index=False, tablefmt="simple", floatfmt=".2f"), file=file)
    ens = report.ensemble
    if ens is not None and not ens.empty:
        print("\nSnapshot ensembles (ensemble minus final model, points [95% CI])", file=file)
        print(ensemble_terminal(ens).to_markdown(index=False, tablefmt="simple"), file=file)
    for warning in report.warnings:
        print(f"\nWarning: {warning}.", file=file)
    print(f"\nReport written to {report.folder}", file=file)


def make(
    uri: str, experiment: str, results: str | Path = "results", sweep: str | None = None
) -> Report:
    """Load ``experiment`` (or one ``sweep`` of it) from MLflow and write its report to
    ``<results>/<experiment>/``; a sweep's report is also logged to the sweep's parent run."""
    data = tracking.load_runs(uri, experiment, sweep=sweep)
    command = tracking.run_params(uri, sweep).get("command") if sweep else None
    report = write(data, Path(results) / experiment, sweep=sweep, command=command)
    if sweep:
        tracking.log_artifacts(uri, sweep, report.folder)
    return report


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="bench-report",
        description="Regenerate the accuracy and stability tables and the figures of an "
        "experiment from the MLflow store.",
        epilog="Writes <results>/<experiment>/: accuracy.csv/.md, stability.csv/.md, "
        "val_acc_curves, lr_traces and final_acc_per_seed as .png and .svg, and a README.md "
        "that shows them together. A sweep's report is also logged to the sweep's parent run "
        "in MLflow.",
    )
    p.add_argument(
        "--experiment", default="digits", help="MLflow experiment to report (default: digits)"
    )
    scope = p.add_mutually_exclusive_group()
    scope.add_argument(
        "--sweep",
        default="latest",
        metavar="RUN_ID|latest",
        help="the sweep to report: its parent run id, or 'latest' (the default)",
    )
    scope.add_argument(
        "--all",
        action="store_true",
        help="pool every run of the experiment, from all its sweeps and single runs",
    )
    p.add_argument(
        "--results",
        default="results",
        metavar="DIR",
        help="folder that receives <experiment>/ (default: ./results)",
    )
    p.add_argument(
        "--tracking-uri",
        default=None,
        metavar="URI",
        help="MLflow store (default: $MLFLOW_TRACKING_URI, else sqlite:///./mlflow.db)",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    uri = tracking.resolve_uri(args.tracking_uri)
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).exists():
        print(f"bench-report: no MLflow store at {uri}; run `bench` here first", file=sys.stderr)
        return 2
    try:
        if args.all:
            sweep = None
        elif args.sweep == "latest":
            sweep = tracking.latest_sweep(uri, args.experiment)
        else:
            sweep = tracking.check_sweep(uri, args.experiment, args.sweep)
        report = make(uri, args.experiment, args.results, sweep=sweep)
    except LookupError as e:
        print(f"bench-report: {e.args[0]}", file=sys.stderr)
        return 2
    print_tables(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
