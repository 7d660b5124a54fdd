"""The analysis pipeline: the runs as loaded -> every frame the report shows (pure)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import pandas as pd

from bench import analysis, schedules, tracking
from bench.analysis import claims as claims_mod
from bench.report.options import Options


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
    robustness: pd.DataFrame | None
    at_best_lr: pd.DataFrame | None
    claims_at_best_lr: pd.DataFrame | None  # the claims, each arm at its own best base LR
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
    sensitivity = best = robustness = tuned_claims = None
    # The base LR is swept when it is one of the settings the runs differ in (a schedule-free
    # optimizer's LR is a setting only where the schedules' runs sweep it: analysis.pooling).
    without_lr = analysis.setting_labels(runs, without=("optimizer.lr",))
    if (without_lr != runs["setting"]).any():
        lrs = pd.to_numeric(finished["params"].map(lambda p: p.get("optimizer.lr")))
        swept = per_run.assign(
            setting=per_run["run_id"].map(dict(zip(runs["run_id"], without_lr, strict=True))),
            lr=per_run["run_id"].map(dict(zip(finished["run_id"], lrs, strict=True))),
        )
        sensitivity = analysis.lr_sensitivity(swept, options.metric)
        robustness = analysis.lr_robustness(swept, options.metric)
        # The LR is chosen on validation, whatever the headline: never on the test set.
        choose_on = analysis.HEADLINE if options.metric == "test_acc" else options.metric
        best = analysis.at_best_lr(swept, b, preferred, choose_on=choose_on)
        # "Matches a tuned schedule" is about each arm at its best LR: chosen on validation,
        # the accuracy claims judged on test accuracy, like the fair comparison.
        tuned_claims = claims_mod.evaluate(
            analysis.runs_at_best_lr(swept, choose_on),
            [_on_test(c) for c in (*claims_mod.DEFAULT_CLAIMS, *options.claims)],
            looks=list(options.looks) or None,
        )
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
        robustness=robustness,
        at_best_lr=best,
        claims_at_best_lr=tuned_claims,
        settings=settings,
        n_repeats=n_repeats,
        warnings=warnings,
    )


def _on_test(claim: claims_mod.Claim) -> claims_mod.Claim:
    """A claim about a validation accuracy, moved to test accuracy: where the LR was chosen on
    validation, validation no longer judges it."""
    if claim.metric not in ("final_val_acc", "best_val_acc"):
        return claim
    return dataclasses.replace(claim, metric="test_acc")


def _on_metric(claim: claims_mod.Claim, metric: str) -> claims_mod.Claim:
    """A claim about final val acc, moved to ``metric``."""
    if claim.metric != analysis.HEADLINE:
        return claim
    return dataclasses.replace(claim, metric=metric)


def trace_runs(a: Analysed) -> list[str]:
    """The runs whose LR trace the report draws: per setting and schedule, the finished run of
    the lowest seed (pure)."""
    first = (
        a.per_run.sort_values(["seed", "run_id"])
        .groupby(["setting", "schedule"], sort=False)["run_id"]
        .first()
    )
    return list(first)
