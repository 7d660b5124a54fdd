"""Frames -> tables for readers: numbers in points with their intervals, Markdown and LaTeX."""

from __future__ import annotations

import numpy as np
import pandas as pd

from bench import analysis
from bench.analysis import claims as claims_mod
from bench.report.analyse import Analysed
from bench.report.options import HEADLINES, METRIC_NAMES, Options


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


def robustness_view(table: pd.DataFrame, metric: str) -> pd.DataFrame:
    def lrs(low: float, high: float, decades: float) -> str:
        return f"{low:g}" if low == high else f"{low:g}–{high:g} ({decades:.2g} decades)"

    return _with_setting(
        table,
        {
            "schedule": table["schedule"],
            "LRs tried": table["n_lrs"].astype(str),
            "best base LR": [f"{v:g}" for v in table["best_lr"]],
            f"its {METRIC_NAMES[metric]} % [95% CI]": [
                _interval(r.best_mean, r.best_ci_low, r.best_ci_high) for r in table.itertuples()
            ],
            "within 1 pt of it": [
                lrs(r.good_low, r.good_high, r.good_decades)
                + (" (reaches the grid's end)" if r.open else "")
                for r in table.itertuples()
            ],
            "cannot be told from those": [
                lrs(r.plausible_low, r.plausible_high, r.plausible_decades)
                for r in table.itertuples()
            ],
            "diverged from": ["–" if pd.isna(v) else f"{v:g}" for v in table["diverged_from"]],
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


def _at_best_view(table: pd.DataFrame, baseline: str) -> pd.DataFrame:
    view = accuracy_view(table, "test_acc", baseline)
    view.insert(1, "best base LR", [f"{v:g}" for v in table["lr"]])
    view.insert(2, "LRs within 1 pt", table["near_best_lrs"].to_numpy())
    return view


def tables(a: Analysed, options: Options) -> dict[str, tuple[pd.DataFrame, pd.DataFrame]]:
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
        tables["claims_at_best_lr"] = (a.claims_at_best_lr, claims_view(a.claims_at_best_lr))
        tables["lr_robustness"] = (a.robustness, robustness_view(a.robustness, m))
    return tables
