"""bench-report: read runs back from MLflow and write the report.

A report is one folder:

- ``report.md``: what was run, the verdicts on the claims, the tables and the figures, top to
  bottom;
- tables as CSV (stable, machine-readable column names; accuracies as fractions), Markdown and
  LaTeX (booktabs; readable headers, points): ``accuracy``, ``stability``, ``claims``, and where
  they apply ``ensemble``, ``ranks`` (several settings), ``lr_sensitivity`` and ``at_best_lr``
  (a swept base LR);
- figures as PNG and SVG (and PDF on request): ``val_acc_curves``, ``val_acc_differences``,
  ``final_acc_per_seed``, ``forest``, ``stability``, ``lr_traces``, ``lr_sensitivity``; one
  set per setting when the runs differ in more than the schedule and the seed
  (``val_acc_curves-1.png``, ...).

A sweep's report goes to the sweep's own folder unless told otherwise, so trying something
never overwrites the curated copy under ``results/``; a report of one sweep is also logged to
the sweep's parent run in MLflow, with its headline numbers as metrics. The folder is written
aside and swapped in whole: a failed report never leaves a half-written one.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from bench import analysis, plots, schedules, tracking
from bench.analysis import claims as claims_mod

BASELINE_TAG = "bench.report.baseline"  # on a sweep's parent run: what diff_vs_baseline is from
HEADLINES = ("final_val_acc", "best_val_acc", "test_acc")
METRIC_NAMES = {
    "final_val_acc": "final val acc",
    "best_val_acc": "best val acc",
    "test_acc": "test acc",
}
FORMATS = ("png", "svg", "pdf")
# Settings shown first under "What was run", when the runs have them.
KEY_SETTINGS = (
    "data._target_",
    "model._target_",
    "optimizer._target_",
    "optimizer.lr",
    "optimizer.weight_decay",
    "data.batch_size",
    "trainer.max_epochs",
    "trainer.precision",
    "n_train",
    "n_val",
    "n_test",
)


@dataclass
class Options:
    """What a report compares: the ``baseline`` schedule, the ``metric`` of the headline table
    and the claims, extra ``claims`` (``report.claims`` in config), figure ``formats``."""

    baseline: str = analysis.BASELINE
    metric: str = analysis.HEADLINE
    claims: Sequence[claims_mod.Claim] = ()
    formats: Sequence[str] = ("png", "svg")
    # Seeds run in rounds until decided (``bench.sequential``): the seeds per arm at each look,
    # and why the rounds stopped; empty for a report of a fixed set of seeds.
    looks: Sequence[int] = ()
    stopping: str = ""


def options_from(config: dict) -> Options:
    """The ``report`` node of a run config (checked by ``bench.config``) as ``Options``."""
    return Options(
        baseline=config.get("baseline", analysis.BASELINE),
        metric=config.get("metric", analysis.HEADLINE),
        claims=claims_mod.parse(config.get("claims") or []),
        formats=tuple(config.get("formats") or ("png", "svg")),
    )


@dataclass
class Report:
    folder: Path
    accuracy: pd.DataFrame
    stability: pd.DataFrame
    claims: pd.DataFrame
    n_finished: int
    n_unfinished: int
    warnings: list[str]
    options: Options = field(default_factory=Options)
    ensemble: pd.DataFrame | None = None


# ---------------------------------------------------------------------------------------------
# Analysis: runs -> frames


@dataclass
class Analysed:
    runs: pd.DataFrame  # every run kept (one per cell among the finished), with ``setting``
    per_run: pd.DataFrame  # finished runs, one row each (``analysis.per_run``)
    epochs: pd.DataFrame  # their curves, with ``setting``
    accuracy: pd.DataFrame
    stability: pd.DataFrame
    ensemble: pd.DataFrame
    claims: pd.DataFrame
    ranks: pd.DataFrame | None
    sensitivity: pd.DataFrame | None
    at_best_lr: pd.DataFrame | None
    settings: list[str]
    n_repeats: int
    warnings: list[str]


def analyse(data: tracking.Runs, options: Options) -> Analysed:
    """Everything the report shows, computed from the runs (pure)."""
    preferred = list(schedules.ARMS)
    runs = data.runs.assign(setting=analysis.setting_labels(data.runs))
    runs, n_repeats = analysis.latest_per_cell(runs)
    finished = runs[runs["status"] == "FINISHED"]
    epochs = data.epochs[data.epochs["run_id"].isin(finished["run_id"])]
    epochs = epochs.merge(runs[["run_id", "setting"]], on="run_id")
    per_run = analysis.per_run(epochs, runs)
    b = options.baseline
    accuracy = analysis.accuracy_table(per_run, runs, b, preferred)
    settings = sorted(per_run["setting"].unique())
    sensitivity = best = None
    # The base LR is swept when it is one of the settings the runs differ in (a schedule-free
    # optimizer's own LR is one of its knobs, not a setting).
    without_lr = analysis.setting_labels(runs, without=("optimizer.lr",))
    if (without_lr != runs["setting"]).any():
        lrs = pd.to_numeric(finished["params"].map(lambda p: p.get("optimizer.lr")))
        swept = per_run.assign(
            setting=per_run["run_id"].map(dict(zip(runs["run_id"], without_lr, strict=True))),
            lr=per_run["run_id"].map(dict(zip(finished["run_id"], lrs, strict=True))),
        )
        sensitivity = analysis.lr_sensitivity(swept, options.metric)
        # The LR is chosen on validation, whatever the headline: never on the test set.
        choose_on = analysis.HEADLINE if options.metric == "test_acc" else options.metric
        best = analysis.at_best_lr(swept, b, preferred, choose_on=choose_on)
    warnings = analysis.pooling_warnings(runs)
    if n_repeats:
        warnings.append(
            f"{n_repeats} finished run(s) repeat a (setting, schedule, seed) already run; each "
            "of these cells counts once, by its most recent run"
        )
    missing = [
        s for s in settings if b not in set(per_run.loc[per_run["setting"] == s, "schedule"])
    ]
    if missing:
        named = [f"'{m}'" if m else "(the runs without a setting of their own)" for m in missing]
        where = "these runs" if settings == [""] else f"setting(s) {', '.join(named)}"
        warnings.append(
            f"the baseline schedule {b!r} is not among {where}: no differences are shown there "
            "(choose another with --baseline / report.baseline)"
        )
    # The built-in accuracy claims follow the headline metric; a user's claims say their own.
    claimed = [_on_metric(c, options.metric) for c in claims_mod.DEFAULT_CLAIMS]
    claimed += options.claims
    return Analysed(
        runs=runs,
        per_run=per_run,
        epochs=epochs,
        accuracy=accuracy,
        stability=analysis.stability_table(per_run, epochs, runs, preferred, b),
        ensemble=analysis.ensemble_table(per_run, runs, preferred),
        claims=claims_mod.evaluate(per_run, claimed, looks=list(options.looks) or None),
        ranks=analysis.rank_summary(accuracy, options.metric, preferred)
        if len(settings) > 1
        else None,
        sensitivity=sensitivity,
        at_best_lr=best,
        settings=settings,
        n_repeats=n_repeats,
        warnings=warnings,
    )


def _on_metric(claim: claims_mod.Claim, metric: str) -> claims_mod.Claim:
    """A default claim about final val acc, moved to the report's headline metric."""
    if claim.metric != analysis.HEADLINE:
        return claim
    return claims_mod.Claim(claim.text, claim.a, claim.b, metric, claim.low, claim.high)


# ---------------------------------------------------------------------------------------------
# Rendering: frames -> tables for readers


def _pt(value: float, signed: bool = False) -> str:
    if pd.isna(value):
        return "–"
    value = round(value * 100, 2) + 0.0  # no "-0.00"
    return f"{value:+.2f}" if signed else f"{value:.2f}"


def _interval(mean: float, low: float, high: float, signed: bool = False) -> str:
    """``97.92 [97.05, 98.78]`` in points; ``–`` where undefined."""
    if pd.isna(mean):
        return "–"
    text = _pt(mean, signed)
    if not pd.isna(low):
        text += f" [{_pt(low, signed)}, {_pt(high, signed)}]"
    return text


def _p(value: float) -> str:
    if pd.isna(value):
        return "–"
    return "<0.001" if value < 0.001 else f"{value:.3f}"


def _num(value: float, digits: int = 2) -> str:
    return "–" if pd.isna(value) else f"{value:.{digits}f}"


def _with_setting(table: pd.DataFrame, shown: dict) -> pd.DataFrame:
    frame = pd.DataFrame(shown)
    if "setting" in table and table["setting"].nunique() > 1:
        frame.insert(0, "setting", table["setting"].to_numpy())
    return frame


def accuracy_view(accuracy: pd.DataFrame, metric: str, baseline: str) -> pd.DataFrame:
    """The headline metric's table for readers: headers in words, values in points."""
    t = analysis.headline(accuracy, metric)
    name = METRIC_NAMES[metric]
    return _with_setting(
        t,
        {
            "schedule": t["schedule"],
            "runs": t["n_runs"].astype(str),
            f"{name} % [95% CI]": [_interval(r.mean, r.ci_low, r.ci_high) for r in t.itertuples()],
            "sd (pt)": [_pt(v) for v in t["std"]],
            "median %": [_pt(v) for v in t["median"]],
            f"Δ vs {baseline} (pt) [95% CI]": [
                _interval(r.diff_mean, r.diff_ci_low, r.diff_ci_high, signed=True)
                for r in t.itertuples()
            ],
            "p (t)": [_p(v) for v in t["p_t"]],
            "p (Wilcoxon)": [_p(v) for v in t["p_wilcoxon"]],
            "p (Holm)": [_p(v) for v in t["p_holm"]],
            "d_z": [_num(v) for v in t["effect_size"]],
            f"wins vs {baseline}": [_num(v) for v in t["win_rate"]],
            "mean rank": [_num(v) for v in t["rank_mean"]],
        },
    )


def other_metrics_view(accuracy: pd.DataFrame, metric: str, baseline: str) -> pd.DataFrame:
    """The accuracies other than the headline: mean [CI] and paired Δ [CI] for each."""
    others = [m for m in HEADLINES if m != metric]
    first = analysis.headline(accuracy, others[0])
    shown: dict = {"schedule": first["schedule"]}
    for m in others:
        t = analysis.headline(accuracy, m)
        shown[f"{METRIC_NAMES[m]} % [95% CI]"] = [
            _interval(r.mean, r.ci_low, r.ci_high) for r in t.itertuples()
        ]
        shown[f"Δ {METRIC_NAMES[m]} vs {baseline} (pt)"] = [
            _interval(r.diff_mean, r.diff_ci_low, r.diff_ci_high, signed=True)
            for r in t.itertuples()
        ]
    return _with_setting(first, shown)


def stability_view(stability: pd.DataFrame) -> pd.DataFrame:
    s = stability
    target = s["target"].iloc[0] if len(s) else np.nan
    return _with_setting(
        s,
        {
            "schedule": s["schedule"],
            "runs": s["n_runs"].astype(str),
            "failed": s["n_failed"].astype(str),
            "diverged": s["n_diverged"].astype(str),
            "sd over seeds (pt)": [_pt(v) for v in s["final_std"]],
            "seed range (pt)": [_pt(v) for v in s["seed_range"]],
            "best − final (pt)": [_pt(v) for v in s["best_minus_final_mean"]],
            "late regressions": [_num(v) for v in s["late_regressions_mean"]],
            "oscillation (pt)": [_pt(v) for v in s["oscillation_mean"]],
            "epochs to peak": [_num(v, 1) for v in s["epochs_to_peak_mean"]],
            "reached target" + ("" if s["setting"].nunique() > 1 else f" ({_pt(target)}%)"): [
                f"{r.n_reached}/{r.n_runs}" for r in s.itertuples()
            ],
            "epochs to target": [_num(v, 1) for v in s["epochs_to_target_mean"]],
            "seconds to target": [_num(v, 1) for v in s["seconds_to_target_mean"]],
        },
    )


def claims_view(claims: pd.DataFrame) -> pd.DataFrame:
    c = claims

    def measured(r) -> str:
        unit = claims_mod.METRICS[r.metric]
        if pd.isna(r.diff_mean):
            return "–"
        text = f"{r.diff_mean:+.2f}"
        if np.isfinite(r.diff_ci_low) and np.isfinite(r.diff_ci_high):
            text += f" [{r.diff_ci_low:+.2f}, {r.diff_ci_high:+.2f}]"
        elif not pd.isna(r.diff_ci_low):
            text += " [not bounded yet]"
        return f"{text} {unit}"

    def verdict(r) -> str:
        if r.verdict != "inconclusive":
            return f"**{r.verdict}**"
        need = r.seeds_needed
        if pd.isna(need):
            more = "the spread is unknown"
        elif np.isinf(need):
            more = f"more than {analysis.stats.MAX_SEEDS} seeds would be needed"
        else:
            more = f"about {int(need)} seeds would decide"
        return f"inconclusive at n={r.n_pairs} ({more})"

    sequential = len(c) and (c["interval"] == claims_mod.SEQUENCE).any()
    interval = "confidence sequence" if sequential else "95% CI"
    columns = {
        "claim": c["claim"],
        "compared": [f"{r.a} − {r.b}" for r in c.itertuples()],
        "expected": c["expected"],
        f"measured [{interval}]": [measured(r) for r in c.itertuples()],
    }
    if not sequential:
        columns["p (Holm)"] = [_p(v) for v in c["p_holm"]]
    columns["verdict"] = [verdict(r) for r in c.itertuples()]
    return _with_setting(c, columns)


def ensemble_view(ens: pd.DataFrame) -> pd.DataFrame:
    return _with_setting(
        ens,
        {
            "schedule": ens["schedule"],
            "runs": ens["n_runs"].astype(str),
            "snapshots": [_num(v, 0) for v in ens["n_snapshots"]],
            "val: final → ensemble %": [
                f"{_pt(r.final_val_acc_mean)} → {_pt(r.val_acc_ensemble_mean)}"
                for r in ens.itertuples()
            ],
            "val gain (pt) [95% CI]": [
                _interval(
                    r.ensemble_gain_val_mean,
                    r.ensemble_gain_val_ci_low,
                    r.ensemble_gain_val_ci_high,
                    signed=True,
                )
                for r in ens.itertuples()
            ],
            "test: final → ensemble %": [
                f"{_pt(r.test_acc_mean)} → {_pt(r.test_acc_ensemble_mean)}"
                for r in ens.itertuples()
            ],
            "test gain (pt) [95% CI]": [
                _interval(
                    r.ensemble_gain_test_mean,
                    r.ensemble_gain_test_ci_low,
                    r.ensemble_gain_test_ci_high,
                    signed=True,
                )
                for r in ens.itertuples()
            ],
        },
    )


def ranks_view(ranks: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "schedule": ranks["schedule"],
            "settings": ranks["n_settings"].astype(str),
            "mean rank": [_num(v) for v in ranks["rank_mean"]],
            "best in": ranks["n_best"].astype(str),
        }
    )


def sensitivity_view(sens: pd.DataFrame, metric: str) -> pd.DataFrame:
    return _with_setting(
        sens,
        {
            "schedule": sens["schedule"],
            "base LR": [f"{v:g}" for v in sens["lr"]],
            "runs": sens["n_runs"].astype(str),
            f"{METRIC_NAMES[metric]} % [95% CI]": [
                _interval(r.mean, r.ci_low, r.ci_high) for r in sens.itertuples()
            ],
            "within 1 pt of its best": ["yes" if v else "" for v in sens["near_best"]],
        },
    )


def to_markdown(view: pd.DataFrame) -> str:
    return view.to_markdown(index=False, disable_numparse=True) + "\n"


_LATEX = {
    "<": "$<$",
    ">": "$>$",
    "Δ": r"$\Delta$",
    "−": "-",
    "–": "--",
    "→": r"$\to$",
    "±": r"$\pm$",
    "**": "",
}


def to_latex(view: pd.DataFrame) -> str:
    """A booktabs table (``\\usepackage{booktabs}``) of a view."""
    styled = view.style.hide(axis="index").format(escape="latex")
    text = styled.format_index(escape="latex", axis=1).to_latex(
        hrules=True, column_format="l" * view.shape[1]
    )
    for old, new in _LATEX.items():
        text = text.replace(old, new)
    return text


# ---------------------------------------------------------------------------------------------
# The folder


def _provenance(data: tracking.Runs, a: Analysed, scope: str, commands: list[str]) -> str:
    finished = a.runs[a.runs["status"] == "FINISHED"]
    n_unfinished = int((a.runs["status"] != "FINISHED").sum())
    lines = [
        f"- **Runs**: MLflow experiment `{data.experiment}`, {scope}: {len(finished)} finished "
        f"runs reported, {n_unfinished} not finished (failed, killed or still running; counted, "
        f"not reported)."
    ]
    if commands:
        lines.append("- **Command**: " + "; ".join(f"`{c}`" for c in commands))
    arms = analysis.order(set(finished["schedule"]), schedules.ARMS)
    seeds = sorted(set(finished["seed"]))
    lines.append(f"- **Schedules** ({len(arms)}): {', '.join(arms)}; **seeds**: {seeds}.")
    if len(a.settings) > 1:
        lines.append(
            f"- **Settings** that vary ({len(a.settings)}): "
            + "; ".join(f"`{s}`" for s in a.settings)
        )
    fixed = _fixed(a)
    key = [f"`{c}={fixed[c]}`" for c in KEY_SETTINGS if c in fixed]
    if key:
        lines.append("- **Fixed**: " + ", ".join(key) + " (all of them at the end).")
    if {"start_time", "end_time"} <= set(finished):
        spent = (finished["end_time"] - finished["start_time"]).sum()
        span = finished["end_time"].max() - finished["start_time"].min()
        if np.isfinite(spent):
            lines.append(
                f"- **Wall time**: {spent / 60:.1f} min of training over the reported runs, "
                f"{span / 60:.1f} min from the first start to the last end."
            )
    params = analysis.pooling.params_of(finished)
    for key in analysis.pooling.EXECUTION:
        values = sorted(set(params[key].dropna().astype(str))) if key in params else []
        lines.append(
            f"- **Execution**: `{key}` = {', '.join(f'`{v}`' for v in values)} (not a setting, "
            "but it moves a run's last bits: the same value reproduces the same numbers)."
            if values
            else f"- **Execution**: `{key}` not recorded by these runs."
        )
    tags = finished["tags"] if "tags" in finished else pd.Series([{}] * len(finished))
    for tag, label in (
        ("bench.host", "Machine"),
        ("bench.device", "Device"),
        ("bench.versions", "Versions"),
    ):
        values = sorted({t.get(tag) for t in tags if t.get(tag)})
        if values:
            lines.append(f"- **{label}**: " + "; ".join(f"`{v}`" for v in values))
        else:
            lines.append(f"- **{label}**: not recorded by these runs.")
    return "\n".join(lines) + "\n"


def _fixed(a: Analysed) -> dict[str, str]:
    """The settings every reported run shares, with their value ("–" where a run lacks one)."""
    finished = a.runs[a.runs["status"] == "FINISHED"]
    params = analysis.pooling.params_of(finished).fillna("–").astype(str)
    return {
        c: params[c].iloc[0]
        for c in params
        if analysis.pooling.is_setting(c) and params[c].nunique() == 1
    }


def _fixed_settings(a: Analysed) -> str:
    """The appendix: every setting the reported runs share."""
    fixed = _fixed(a)
    rows = "\n".join(f"| `{c}` | `{v}` |" for c, v in sorted(fixed.items()))
    return f"| setting | value |\n| --- | --- |\n{rows}\n"


FIGURES = (
    ("val_acc_curves", "Validation accuracy per epoch (mean and 95% CI over seeds)"),
    ("val_acc_differences", "Validation accuracy minus the baseline's per epoch, paired by seed"),
    ("final_acc_per_seed", "Final accuracy per seed, with the mean and its 95% CI"),
    ("forest", "Paired differences from the baseline (95% CI)"),
    ("stability", "Stability measures per schedule (mean and 95% CI over runs)"),
    ("lr_traces", "Learning rate per optimizer step (one run per schedule)"),
)


def _figure_section(settings: list[str], has_sensitivity: bool) -> str:
    def block(suffix: str) -> str:
        return "\n".join(f"![{title}]({stem}{suffix}.png)\n" for stem, title in FIGURES)

    text = (
        block("")
        if len(settings) < 2
        else "\n".join(
            f"### Setting {i}: {s}\n\n{block(f'-{i}')}" for i, s in enumerate(settings, 1)
        )
    )
    if has_sensitivity:
        text += "\n![Accuracy against the base LR](lr_sensitivity.png)\n"
    return text


def _report_md(
    data: tracking.Runs,
    a: Analysed,
    options: Options,
    scope: str,
    commands: list[str],
    tables: dict[str, tuple[pd.DataFrame, pd.DataFrame]],
) -> str:
    b, m = options.baseline, options.metric
    md = {table: to_markdown(view) for table, (_, view) in tables.items()}
    name = METRIC_NAMES[m]
    warnings = "".join(f"\n> **Warning:** {w}.\n" for w in a.warnings)
    clipped = bool(a.accuracy["ci_clipped"].any())
    sections = [
        f"# Report: {data.experiment}\n",
        "## What was run\n",
        _provenance(data, a, scope, commands),
        warnings,
        "## Verdicts\n",
        _verdicts_intro(name, options, a.claims),
        _verdict_summary(a.claims),
        md["claims"] if len(a.claims) else "",
        _what_would_decide(a.claims, sequential=bool(options.looks)),
        "## Accuracy\n",
        f"Headline: **{name}** (`report.metric`), in %; differences are from **{b}** "
        f"(`report.baseline`), paired by seed, in points. p-values are two-sided; Wilcoxon's is "
        "ranked on the evaluation's grid (whole images) and shown only from 6 pairs, the fewest "
        "with which it can go below 5%; Holm's "
        f"correction is over the schedules compared with {b} in a setting; d_z is the mean "
        f"difference over its standard deviation; wins is the share of seeds where the "
        f"schedule beat {b} (a tie counts a half); rank 1 is the best. The intervals are each "
        "comparison's own; only p (Holm) accounts for the number of comparisons.\n",
        md["accuracy"],
        "\nThe other accuracies, the same way:\n",
        to_markdown(other_metrics_view(a.accuracy, m, b)),
    ]
    if clipped:
        sections.append(
            "\nSome intervals ran past [0, 100] % and are clipped to it (`ci_clipped` in "
            "accuracy.csv).\n"
        )
    sections += [
        "\n## Stability\n",
        'Definitions in bench\'s `bench/analysis/README.md` ("Stability columns"). The target is '
        f"{analysis.tables.TARGET_FRACTION:.0%} of the best schedule's mean final val acc; "
        "runs that never reach it count in 'reached target' only.\n",
        md["stability"],
    ]
    if "ensemble" in tables:
        sections += [
            "\n## Snapshot ensembles\n",
            "The weights at the end of every warm-restart cycle, averaged (mean softmax), "
            "against the final model alone: the same training, `n_snapshots` times the "
            "inference. Gains are ensemble minus final model, paired by run.\n",
            md["ensemble"],
        ]
    if "ranks" in tables:
        sections += [
            "\n## Across settings\n",
            f"Each schedule's rank among the schedules of a setting, by mean {name}.\n",
            md["ranks"],
        ]
    if "lr_sensitivity" in tables:
        sections += [
            "\n## Base LR\n",
            f"{name} against the base LR (`optimizer.lr`) per schedule:\n",
            md["lr_sensitivity"],
            "\nThe fair comparison: each schedule at its own best base LR (chosen on "
            "validation accuracy), compared on test accuracy, paired by seed with "
            f"{b} at its best LR:\n",
            md["at_best_lr"],
        ]
    sections += [
        "\n## Figures\n",
        _figure_section(a.settings, a.sensitivity is not None),
        "\n## All fixed settings\n",
        'What every reported run shares (the settings that vary are under "What was run").\n',
        _fixed_settings(a),
        "\n## Files\n",
        "Each table is also here as CSV (machine-readable names; accuracies as fractions) and "
        "LaTeX (booktabs): "
        + ", ".join(f"`{t}.csv`/`.tex`" for t in tables)
        + ". Column definitions are in bench's `bench/analysis/README.md`.\n",
    ]
    return "\n".join(sections)


def _verdicts_intro(name: str, options: Options, claims: pd.DataFrame) -> str:
    m = claims.groupby("setting").size().max() if len(claims) else 0
    text = (
        "Each claim about schedules, tested on these runs: the measured difference (paired by "
        f"seed, on {name} unless the claim names another metric) with an interval, and whether "
        "the interval lies inside the claimed range (**held**), outside it (**refuted**) or "
        "across an edge of it (inconclusive). Claims whose schedules were not run are left "
        'out. Where the other arm is "the best", it is chosen for each seed on the other '
        "seeds, never on the seed it is compared on. "
    )
    if options.looks:
        looks = ", ".join(str(n) for n in options.looks)
        return text + (
            f"\n\n**Seeds until decided.** The seeds were run in rounds and the claims looked "
            f"at after each: after {looks} seeds per arm. {options.stopping} So that looking "
            "after every round cannot manufacture a verdict, each interval is a confidence "
            "sequence (the normal-mixture t sequence), valid at every look at once, at level "
            f"1 − 5%/{m} for the {m} claims (Bonferroni): the verdicts are family-wise at 5% "
            "whatever the number of looks. The interval shown is the sequence's at the last "
            "look (the intersection of all its looks).\n"
        )
    return text + (
        f"The verdicts are family-wise at 5% over the {m} claims tested: a claim is decided "
        "when the p-value of the test that decides it (the level at which its interval just "
        "clears the range's edges), adjusted by Holm's step-down method over the claims, is at "
        "most 5% (`p (Holm)`); the interval shown is the claim's own 95% CI, so a CI that clears "
        "an edge can still be inconclusive once the family is accounted for.\n"
    )


def _what_would_decide(claims: pd.DataFrame, sequential: bool) -> str:
    """One sentence per undecided claim: the effect against the noise, and the seeds that would
    decide it."""
    undecided = claims[claims["verdict"] == "inconclusive"]
    if undecided.empty:
        return ""
    lines = []
    for r in undecided.itertuples():
        unit = claims_mod.METRICS[r.metric]
        where = f" ({r.setting})" if r.setting else ""
        if r.n_pairs < 2 or pd.isna(r.diff_sd):
            lines.append(f"- **{r.claim}**{where}: fewer than two seeds pair up; run more seeds.")
            continue
        low, high = (None if pd.isna(e) else e for e in (r.low, r.high))
        gap = min(claims_mod.distances(r.diff_mean, low, high))
        head = (
            f"- **{r.claim}**{where}: {r.diff_mean:+.2f} {unit} measured, {gap:.2f} {unit} "
            f"from the nearest edge of the claimed range ({r.expected}), against a seed-to-seed "
            f"sd of the difference of {r.diff_sd:.2f} {unit}: "
        )
        if gap <= 0 or np.isinf(r.seeds_needed):
            lines.append(
                head + "the measured difference sits (almost) on the edge; no sane number of "
                "seeds decides it unless the true difference lies away from it."
            )
        elif sequential:
            lines.append(
                head + f"the confidence sequence would clear it at about {int(r.seeds_needed)} "
                "seeds if the difference and spread stay as measured."
            )
        else:
            spread = ""
            if np.isfinite(r.seeds_needed_low):
                high = (
                    f"{int(r.seeds_needed_high)}"
                    if np.isfinite(r.seeds_needed_high)
                    else f"over {analysis.stats.MAX_SEEDS}"
                )
                spread = (
                    f" ({int(r.seeds_needed_low)} to {high} across the sd's 95% interval: "
                    "an sd from a few seeds is itself uncertain)"
                )
            lines.append(
                head + f"about {int(r.seeds_needed)} seeds would decide it with 80% power"
                f"{spread}, if the true difference is the measured one."
            )
    return "\nWhat would decide the undecided claims:\n\n" + "\n".join(lines) + "\n"


def _verdict_summary(claims: pd.DataFrame) -> str:
    if claims.empty:
        return "No claim could be tested: none has both of its schedules in these runs.\n"
    counts = claims["verdict"].value_counts()
    parts = [f"{counts.get(v, 0)} {v}" for v in ("held", "refuted", "inconclusive")]
    return f"**{len(claims)} claims tested: {', '.join(parts)}.**\n"


def _at_best_view(table: pd.DataFrame, baseline: str) -> pd.DataFrame:
    view = accuracy_view(table, "test_acc", baseline)
    view.insert(1, "best base LR", [f"{v:g}" for v in table["lr"]])
    view.insert(2, "LRs within 1 pt", table["near_best_lrs"].to_numpy())
    return view


def _tables(a: Analysed, options: Options) -> dict[str, tuple[pd.DataFrame, pd.DataFrame]]:
    """name -> (the CSV frame, the reader's view of it)."""
    b, m = options.baseline, options.metric
    tables = {
        "accuracy": (a.accuracy, accuracy_view(a.accuracy, m, b)),
        "stability": (a.stability, stability_view(a.stability)),
        "claims": (a.claims, claims_view(a.claims)),
    }
    if len(a.ensemble):
        tables["ensemble"] = (a.ensemble, ensemble_view(a.ensemble))
    if a.ranks is not None:
        tables["ranks"] = (a.ranks, ranks_view(a.ranks))
    if a.sensitivity is not None:
        tables["lr_sensitivity"] = (a.sensitivity, sensitivity_view(a.sensitivity, m))
        tables["at_best_lr"] = (a.at_best_lr, _at_best_view(a.at_best_lr, b))
    return tables


def _write_tables(tables: dict[str, tuple[pd.DataFrame, pd.DataFrame]], folder: Path) -> None:
    for name, (frame, view) in tables.items():
        frame.to_csv(folder / f"{name}.csv", index=False)
        (folder / f"{name}.md").write_text(to_markdown(view))
        (folder / f"{name}.tex").write_text(to_latex(view))


def _write_figures(uri: str | None, a: Analysed, options: Options, folder: Path) -> None:
    preferred = schedules.ARMS
    b, m = options.baseline, options.metric
    formats = tuple(options.formats)
    for i, setting in enumerate(a.settings, 1):
        suffix = f"-{i}" if len(a.settings) > 1 else ""
        per_run = a.per_run[a.per_run["setting"] == setting]
        epochs = a.epochs[a.epochs["setting"] == setting]
        order = analysis.order(set(per_run["schedule"]), preferred, b)
        acc = analysis.headline(a.accuracy, m)
        acc = acc[acc["setting"] == setting]
        plots.save(
            plots.val_acc_curves(epochs, order, b), folder, f"val_acc_curves{suffix}", formats
        )
        plots.save(
            plots.val_acc_differences(analysis.curves.paired_differences(epochs, b), order, b),
            folder,
            f"val_acc_differences{suffix}",
            formats,
        )
        summary = acc[["schedule", "mean", "ci_low", "ci_high"]]
        plots.save(
            plots.final_acc_per_seed(
                per_run.assign(final_val_acc=per_run[m]), order, summary=summary
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
            plots.forest(diffs, b, METRIC_NAMES[m]),
            folder,
            f"forest{suffix}",
            formats,
        )
        stab = analysis.stability_runs(per_run, epochs)
        plots.save(plots.stability(stab, order), folder, f"stability{suffix}", formats)
        first = (
            per_run.sort_values(["seed", "run_id"])
            .groupby("schedule", sort=False)["run_id"]
            .first()
        )
        lr = (
            tracking.load_lr(uri, list(first))
            if uri
            else pd.DataFrame(columns=["run_id", "step", "lr"])
        )
        lr = lr.merge(per_run[["run_id", "schedule"]], on="run_id")
        plots.save(plots.lr_traces(lr, order), folder, f"lr_traces{suffix}", formats)
    if a.sensitivity is not None:
        order = analysis.order(set(a.sensitivity["schedule"]), preferred, b)
        plots.save(plots.lr_sensitivity(a.sensitivity, order), folder, "lr_sensitivity", formats)


def write(
    data: tracking.Runs,
    folder: Path,
    options: Options | None = None,
    scope: str = "all its runs",
    commands: Sequence[str] = (),
    uri: str | None = None,
) -> Report:
    """Write the report of ``data`` into ``folder`` (replaced whole). ``scope`` and the
    ``commands`` that made the runs are named under "What was run"; ``uri`` (the store) is
    read for the LR traces."""
    options = options or Options()
    if data.finished.empty:
        raise LookupError(
            f"experiment {data.experiment!r} has no finished runs to report "
            f"({len(data.runs)} runs in all)"
        )
    a = analyse(data, options)
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        tables = _tables(a, options)
        _write_tables(tables, staging)
        _write_figures(uri, a, options, staging)
        (staging / "report.md").write_text(
            _report_md(data, a, options, scope, list(commands), tables)
        )
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
    finished = a.runs[a.runs["status"] == "FINISHED"]
    return Report(
        folder=folder,
        accuracy=a.accuracy,
        stability=a.stability,
        claims=a.claims,
        n_finished=len(finished),
        n_unfinished=len(a.runs) - len(finished),
        warnings=a.warnings,
        options=options,
        ensemble=a.ensemble,
    )


NOTE_TAG = "mlflow.note.content"  # the description MLflow's UI shows on a run's page


def headline_metrics(report: Report) -> dict[str, float]:
    """The numbers a sweep's parent run carries, so its row in the MLflow UI answers the
    question: per schedule, the mean headline metric in % (``<schedule>.<metric>_pct``) and its
    paired difference from the baseline in points (``<schedule>.diff_vs_baseline_pt``), as the
    report gives them: rounded to 0.01, finer than any evaluation's resolution up to 10,000
    images, so no float noise shows. Prefixed ``s<i>.`` per setting when there are several."""
    rows = analysis.headline(report.accuracy, report.options.metric)
    settings = sorted(rows["setting"].unique())
    metrics = {}
    for r in rows.itertuples():
        prefix = f"s{settings.index(r.setting) + 1}." if len(settings) > 1 else ""
        metrics[f"{prefix}{r.schedule}.{r.metric}_pct"] = 100 * r.mean
        if not pd.isna(r.diff_mean):
            metrics[f"{prefix}{r.schedule}.diff_vs_baseline_pt"] = 100 * r.diff_mean
    return {k: round(float(v), 2) for k, v in metrics.items() if not pd.isna(v)}


def description(report: Report) -> str:
    """One paragraph for the sweep's parent run (MLflow shows it as the run's description):
    the schedules by their headline, best first, the best one's difference from the baseline
    with its interval, and the claims' verdicts. Pure."""
    options = report.options
    rows = analysis.headline(report.accuracy, options.metric)
    if rows.empty:
        return f"No finished runs to compare ({report.n_unfinished} not finished)."
    label = options.metric.replace("_", " ")
    best_first = rows.sort_values("mean", ascending=False)
    ranking = ", ".join(f"{r.schedule} {100 * r.mean:.2f}%" for r in best_first.itertuples())
    text = [f"{report.n_finished} finished runs. {label.capitalize()}, mean over seeds: {ranking}."]
    best = next((r for r in best_first.itertuples() if r.schedule != options.baseline), None)
    if best is not None and not pd.isna(best.diff_mean):
        interval = (
            f"95% CI {100 * best.diff_ci_low:+.2f} to {100 * best.diff_ci_high:+.2f}, "
            if not pd.isna(best.diff_ci_low)
            else ""
        )
        text.append(
            f"{best.schedule} vs {options.baseline}: {100 * best.diff_mean:+.2f} pt "
            f"({interval}paired over {int(best.n_pairs)} seed{'s' * (best.n_pairs != 1)})."
        )
    claims = report.claims
    if claims is not None and not claims.empty:
        decided = claims[claims["verdict"].isin(["held", "refuted"])]
        counts = claims["verdict"].value_counts()
        text.append(
            f"Claims: {counts.get('held', 0)} held, {counts.get('refuted', 0)} refuted, "
            f"{len(claims) - len(decided)} inconclusive"
            + (
                ": " + "; ".join(f"{c.claim} ({c.verdict})" for c in decided.itertuples()) + "."
                if len(decided)
                else "."
            )
        )
    text.append("Tables and figures: report.md among this run's artifacts.")
    return " ".join(text)


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
    one sweep is also logged to the sweep's parent run, with its headline numbers as metrics.
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
    report = write(data, Path(folder), options, scope, [c for c in commands if c], uri)
    if len(sweeps) == 1 and not filters:  # a subset of a sweep is not the sweep's report
        tracking.log_artifacts(uri, sweeps[0], report.folder)
        tracking.log_metrics(uri, sweeps[0], headline_metrics(report))
        tracking.set_tags(
            uri, sweeps[0], {BASELINE_TAG: report.options.baseline, NOTE_TAG: description(report)}
        )
    return report


# ---------------------------------------------------------------------------------------------
# The terminal


def print_tables(report: Report, file=None) -> None:
    file = file or sys.stdout
    o = report.options
    unfinished = f", {report.n_unfinished} not finished" if report.n_unfinished else ""
    acc = accuracy_view(report.accuracy, o.metric, o.baseline)
    keep = [c for c in acc.columns if not c.startswith(("p (t", "p (W", "d_z", "median", "sd"))]
    print(f"\n{METRIC_NAMES[o.metric]} ({report.n_finished} finished runs{unfinished})", file=file)
    print(acc[keep].to_markdown(index=False, tablefmt="simple", disable_numparse=True), file=file)
    stab = stability_view(report.stability)
    stab = stab.drop(
        columns=[c for c in stab if c.startswith(("sd ", "seed ", "oscill", "seconds"))]
    )
    print("\nStability", file=file)
    print(stab.to_markdown(index=False, tablefmt="simple", disable_numparse=True), file=file)
    if report.ensemble is not None and not report.ensemble.empty:
        print("\nSnapshot ensembles", file=file)
        view = ensemble_view(report.ensemble)
        print(view.to_markdown(index=False, tablefmt="simple", disable_numparse=True), file=file)
    if len(report.claims):
        print("\nVerdicts", file=file)
        view = claims_view(report.claims).drop(columns=["expected"])
        view["verdict"] = view["verdict"].str.replace("**", "", regex=False)
        print(view.to_markdown(index=False, tablefmt="simple", disable_numparse=True), file=file)
    for warning in report.warnings:
        print(f"\nWarning: {warning}.", file=file)
    print(f"\nReport written to {report.folder / 'report.md'}", file=file)


# ---------------------------------------------------------------------------------------------
# The command


def _pairs(values: list[str], option: str) -> dict[str, str]:
    pairs = {}
    for value in values:
        key, sep, v = value.partition("=")
        if not sep or not key:
            raise SystemExit(f"bench-report: {option} {value!r}: expected KEY=VALUE")
        pairs[key] = v
    return pairs


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="bench-report",
        description="Regenerate a report (tables, verdicts on claims, figures) from the MLflow "
        "store: of the latest sweep by default, of chosen sweeps merged, or of every run.",
        epilog="Writes OUT/report.md with the tables as .csv/.md/.tex and the figures as "
        ".png/.svg (--pdf: also .pdf). A report of one sweep is also logged to the sweep's "
        "parent run in MLflow. Repeated (setting, schedule, seed) cells count once. "
        "Example: bench-report --all --out results/digits (the curated copy).",
    )
    p.add_argument(
        "--experiment", default="digits", help="MLflow experiment to report (default: digits)"
    )
    scope = p.add_mutually_exclusive_group()
    scope.add_argument(
        "--sweep",
        action="append",
        metavar="RUN_ID|latest",
        help="a sweep to report: its parent run id, or 'latest' (the default); repeat to merge "
        "several sweeps of one grid (more seeds later)",
    )
    scope.add_argument(
        "--all",
        action="store_true",
        help="every run of the experiment, from all its sweeps and single runs",
    )
    p.add_argument(
        "--tag",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="only runs with this MLflow tag (repeatable), e.g. --tag schedule=cosine",
    )
    p.add_argument(
        "--where",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="only runs with this config value (an MLflow param; repeatable), e.g. "
        "--where optimizer.lr=0.1",
    )
    p.add_argument(
        "--baseline",
        default=analysis.BASELINE,
        metavar="SCHEDULE",
        help=f"the schedule the others are compared with (default: {analysis.BASELINE})",
    )
    p.add_argument(
        "--metric",
        default=analysis.HEADLINE,
        choices=HEADLINES,
        help=f"the headline accuracy (default: {analysis.HEADLINE})",
    )
    p.add_argument(
        "--out",
        default=None,
        metavar="DIR",
        help="the report's folder (default: reports/<experiment>)",
    )
    p.add_argument("--pdf", action="store_true", help="also write the figures as PDF")
    p.add_argument(
        "--tracking-uri",
        default=None,
        metavar="URI",
        help="MLflow store (default: $MLFLOW_TRACKING_URI, else sqlite:///./mlflow.db)",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if argv is None:  # the command, not a call from Python
        tracking.exit_quickly()
        tracking.send_pending()
    uri = tracking.resolve_uri(args.tracking_uri)
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).exists():
        print(f"bench-report: no MLflow store at {uri}; run `bench` here first", file=sys.stderr)
        return 2
    if args.baseline not in schedules.ARMS:
        print(
            f"bench-report: --baseline {args.baseline!r}: allowed: {', '.join(schedules.ARMS)}",
            file=sys.stderr,
        )
        return 2
    options = Options(
        baseline=args.baseline,
        metric=args.metric,
        formats=("png", "svg", "pdf") if args.pdf else ("png", "svg"),
    )
    folder = Path(args.out) if args.out else Path("reports") / args.experiment
    try:
        if args.all:
            sweeps: list[str] = []
        else:
            sweeps = [
                tracking.latest_sweep(uri, args.experiment)
                if s == "latest"
                else tracking.check_sweep(uri, args.experiment, s)
                for s in dict.fromkeys(args.sweep or ["latest"])
            ]
        report = make(
            uri,
            args.experiment,
            folder,
            sweeps,
            options,
            tags=_pairs(args.tag, "--tag"),
            params=_pairs(args.where, "--where"),
        )
    except (LookupError, tracking.StoreError) as e:
        print(f"bench-report: {e.args[0]}", file=sys.stderr)
        return 2
    print_tables(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
