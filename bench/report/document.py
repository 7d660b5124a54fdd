"""report.md, the table files, and the parent run's description and numbers (pure but for
writing the files into a folder it is given)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from bench import analysis, schedules, tracking
from bench.analysis import claims as claims_mod
from bench.report.analyse import Analysed
from bench.report.options import METRIC_NAMES, Options, Report
from bench.report.views import other_metrics_view, to_latex, to_markdown

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
    if {"trained_from", "end_time"} <= set(finished):
        # A branched run's own training only: its history before the branch is its source's.
        spent = (finished["end_time"] - finished["trained_from"]).sum()
        span = finished["end_time"].max() - finished["trained_from"].min()
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
            "but it moves a run's last bits: the same value on the same kind of device, below, "
            "reproduces the same numbers; another CPU or GPU model does not)."
            if values
            else f"- **Execution**: `{key}` not recorded by these runs."
        )
    tags = finished["tags"] if "tags" in finished else pd.Series([{}] * len(finished))
    for tag, label in (
        ("bench.host", "Machine"),
        ("bench.device", "Device"),
        ("bench.versions", "Versions"),
        ("bench.weights", "Starting weights"),
    ):
        values = sorted({t.get(tag) for t in tags if t.get(tag)})
        if values:
            lines.append(f"- **{label}**: " + "; ".join(f"`{v}`" for v in values))
        elif tag != "bench.weights":  # most studies start from no weights file
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
        text += "\n![The good base LRs of each schedule](lr_robustness.png)\n"
    return text


def report_md(
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
        f"\n{options.made}\n" if options.made else "",
        warnings,
        "## Verdicts\n",
        _verdicts_intro(name, options, a.claims),
        _verdict_summary(a.claims),
        md["claims"] if len(a.claims) else "",
        _sources(a.claims),
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
        md["stability"],
        "\nThe columns:\n\n" + analysis.tables.stability_glossary("report"),
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
            "\nThe claims with every arm at its own best base LR (chosen on validation "
            "accuracy; the accuracy claims judged on test accuracy), as the Verdicts judge them "
            "at each base LR. This is the form of a claim that one schedule matches a tuned "
            "one.\n",
            _verdict_summary(a.claims_at_best_lr),
            md["claims_at_best_lr"] if len(a.claims_at_best_lr) else "",
            "\nHow wide each schedule's good base LR is: the LRs next to its best, without a "
            "gap, whose mean is within 1 point of the best's; the wider range whose 95% CI "
            "reaches that far, which this grid cannot tell from good; and the lowest LR at "
            "which a run diverged. A wider range is a schedule that forgives a badly chosen "
            "LR (warmup's main benefit, Kalra & Barkeshli, NeurIPS 2024: where warmup is a "
            "setting, compare its rows).\n",
            md["lr_robustness"],
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
        "\nThe runs, validation curves and LR traces this report was drawn from are in `data/` "
        "(`runs.json`, `epochs.csv`, `lr.csv`, `report.json`): `bench-report --from FOLDER` "
        "draws the report again from them, without the MLflow store.\n",
        f"\nThe figures are drawn {options.width:g} in wide, to be printed at that width (fonts "
        "of 7-9 pt); `bench-report --from FOLDER --width 3.3 --pdf --out DIR` draws them for "
        "one column of a two-column paper, `--width 6.5` for a paper's text width.\n",
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


def _sources(claims: pd.DataFrame) -> str:
    """Where each claim tested comes from."""
    if claims.empty or "source" not in claims:
        return ""
    seen = claims.drop_duplicates("claim")
    lines = [f"- {r.claim}: {r.source}" for r in seen.itertuples() if r.source]
    return "\nWhere each claim comes from:\n\n" + "\n".join(lines) + "\n" if lines else ""


def _verdict_summary(claims: pd.DataFrame) -> str:
    if claims.empty:
        return "No claim could be tested: none has both of its schedules in these runs.\n"
    counts = claims["verdict"].value_counts()
    parts = [f"{counts.get(v, 0)} {v}" for v in ("held", "refuted", "inconclusive")]
    return f"**{len(claims)} claims tested: {', '.join(parts)}.**\n"


def write_tables(tables: dict[str, tuple[pd.DataFrame, pd.DataFrame]], folder: Path) -> None:
    for name, (frame, view) in tables.items():
        frame.to_csv(folder / f"{name}.csv", index=False)
        (folder / f"{name}.md").write_text(to_markdown(view))
        (folder / f"{name}.tex").write_text(to_latex(view))


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
    with its interval, and the claims' verdicts (also with every arm at its own best base LR,
    where it is swept). Pure."""
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
    for title, claims in (
        ("Claims", report.claims),
        ("Claims with every arm at its own best base LR", report.claims_at_best_lr),
    ):
        if claims is None or claims.empty:
            continue
        decided = claims[claims["verdict"].isin(["held", "refuted"])]
        counts = claims["verdict"].value_counts()
        text.append(
            f"{title}: {counts.get('held', 0)} held, {counts.get('refuted', 0)} refuted, "
            f"{len(claims) - len(decided)} inconclusive"
            + (
                ": " + "; ".join(f"{c.claim} ({c.verdict})" for c in decided.itertuples()) + "."
                if len(decided)
                else "."
            )
        )
    text.append("Tables and figures: report.md among this run's artifacts.")
    return " ".join(text)
