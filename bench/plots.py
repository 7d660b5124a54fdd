"""The report's seaborn figures, sized for a paper and saved byte for byte reproducibly as PNG,
SVG and, on request, PDF. Every figure is drawn at the width it will be printed at, fonts of 7-9
pt at 100%: ``WIDTH`` (6.5 in, a paper's text width) by default, or ``COLUMN`` (3.3 in, one
column of a two-column paper) or any width ``bench.rules.FIGURE_WIDTH`` allows (3.25 in and up),
passed as ``width=``. Below ``NARROW`` the panels wrap into fewer columns and the legends into
more rows, so that nothing shrinks or collides.

Every schedule (or schedule-free arm) has one colour in every figure: ``COLOURS``, colour-blind
safe (Okabe-Ito, then Paul Tol's muted scheme). Accuracies come in as fractions in [0, 1] and are
drawn in percentage points. Confidence intervals are Student-t intervals over seeds, computed
here (no bootstrap), so the same input always draws the same figure.

The style lives in ``_RC`` and is applied inside each function (``with _style():``) and again
while saving, never to the global rcParams.
"""

from __future__ import annotations

import math
import re
import zlib
from collections.abc import Iterable, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, never a window

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.collections import LineCollection  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402
from matplotlib.transforms import blended_transform_factory  # noqa: E402

from bench.analysis.stats import mean_ci  # noqa: E402

# One colour per schedule, whichever others are drawn beside it. Okabe-Ito for the classic
# schedules (black for the usual baseline), then Paul Tol's muted scheme.
COLOURS: dict[str, str] = {
    "constant": "#000000",  # black
    "cosine": "#0072B2",  # blue
    "step": "#E69F00",  # orange
    "cosine_restarts": "#009E73",  # bluish green
    "polynomial": "#CC79A7",  # reddish purple
    "linear": "#56B4E9",  # sky blue
    "exponential": "#D55E00",  # vermillion
    "one_cycle": "#882255",  # wine
    "wsd": "#999933",  # olive
    "cyclic": "#44AA99",  # teal
    "sgd_schedulefree": "#AA4499",  # purple
    "adamw_schedulefree": "#332288",  # indigo
    "inverse_time": "#CC6677",  # rose
    "cosine_floor": "#117733",  # green
    "wsd_linear": "#DDCC77",  # sand
}
# Names not in COLOURS: a muted grey-ish colour chosen from the name alone.
SPARE_COLOURS: tuple[str, ...] = ("#777777", "#A5A5A5", "#4D4D4D", "#8C7B6B", "#6B7B8C")
REFERENCE = "#808080"  # the baseline's mean curve drawn in the other panels

WIDTH = 6.5  # inches: a paper's full text width
COLUMN = 3.3  # inches: one column of a two-column paper (ICML, CVPR, IEEE: 3.25-3.5)
NARROW = 6.0  # inches: below this, panels two to a row and legends in two columns
_RC = {
    **sns.axes_style("whitegrid"),
    "font.size": 9,
    "axes.titlesize": 9,
    "axes.labelsize": 9,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "legend.fontsize": 8,
    "legend.title_fontsize": 8,
    "figure.titlesize": 9,
    "axes.edgecolor": ".35",
    "axes.linewidth": 0.7,
    "grid.color": ".9",
    "grid.linewidth": 0.6,
    "lines.linewidth": 1.4,
    "xtick.major.size": 0,
    "ytick.major.size": 0,
    "xtick.major.pad": 2.5,
    "ytick.major.pad": 2.5,
    "legend.frameon": False,
    "figure.dpi": 100,
    "pdf.fonttype": 42,  # TrueType, so that text in the PDF stays text
    "svg.hashsalt": "bench",  # same input, same SVG ids
}
# Same input, same bytes: no timestamps or version strings in the files.
_METADATA = {
    "png": {"Software": None},
    "svg": {"Date": None, "Creator": None},
    "pdf": {"CreationDate": None, "ModDate": None, "Creator": None, "Producer": None},
}
_DPI = 200
MAX_SEED_LINES = 20  # faint per-seed lines per panel; the mean and its band use every seed


def _style():
    """The figures' rc settings, for a ``with`` block."""
    return plt.rc_context(_RC)


def colour(name: str) -> str:
    """The colour of a schedule or arm: its own in ``COLOURS``, else a spare one picked by a
    checksum of the name (the same in every run and whatever else is drawn)."""
    if name in COLOURS:
        return COLOURS[name]
    return SPARE_COLOURS[zlib.crc32(name.encode()) % len(SPARE_COLOURS)]


def save(
    fig: Figure, folder: Path | str, stem: str, formats: Sequence[str] = ("png", "svg")
) -> list[Path]:
    """Write ``fig`` as ``folder/stem.<fmt>`` for each format (png, svg, pdf), then close it."""
    paths = []
    try:
        with _style():
            for fmt in formats:
                path = Path(folder) / f"{stem}.{fmt}"
                fig.savefig(path, format=fmt, dpi=_DPI, metadata=_METADATA[fmt])
                paths.append(path)
    finally:
        plt.close(fig)
    return paths


def t_interval(values: Iterable[float], level: float = 0.95) -> tuple[float, float, float]:
    """``(mean, low, high)``: Student's t interval of the finite values (``bench.analysis.stats``)
    of an accuracy in %, clipped to [0, 100]; NaN bounds with fewer than two."""
    ci = mean_ci(list(values), confidence=level, bounds=(0.0, 100.0))  # accuracies, in %
    return (ci.mean, ci.low, ci.high)


def _mean_ci(frame: pd.DataFrame, by: str, value: str) -> pd.DataFrame:
    """Columns ``by, mean, ci_low, ci_high, n``: the t interval of ``value`` per ``by``."""
    rows = [
        (key, *t_interval(group[value]), int(group[value].notna().sum()))
        for key, group in frame.groupby(by, sort=True)
    ]
    return pd.DataFrame(rows, columns=[by, "mean", "ci_low", "ci_high", "n"])


def _narrow(width: float) -> bool:
    return width < NARROW


_EM = 0.55  # a glyph's mean width in ems (DejaVu Sans)


def _inches(text: str, points: float = 8) -> float:
    """About how wide the longest line of ``text`` is at ``points``."""
    return max((len(line) for line in str(text).split("\n")), default=0) * _EM * points / 72


# Where a word too long for a line may break: after "=" or after a "." that a name follows
# ("schedule.warmup_fraction=0.2" -> "schedule." "warmup_fraction=" "0.2"), never in a number.
_BREAKS = re.compile(r".*?(?:=|\.(?=[A-Za-z_]))|.+$")


def _wrap(text: str, inches: float, points: float = 9) -> str:
    """``text`` broken into lines no wider than ``inches`` at ``points``: at spaces, and inside
    a word too long for a line after "=" or before a name's "."; its own line breaks kept."""
    limit = max(6, int(inches * 72 / (_EM * points)))
    lines = []
    for paragraph in str(text).split("\n"):
        line = ""
        for word in paragraph.split(" "):
            pieces = _BREAKS.findall(word) if len(word) > limit else [word]
            for k, piece in enumerate(p for p in pieces if p):
                glue = "" if k or not line else " "
                if line and len(line) + len(glue) + len(piece) > limit:
                    lines.append(line)
                    line = piece
                else:
                    line += glue + piece
        lines.append(line)
    return "\n".join(lines)


def _panel_inches(width: float, ncols: int, labels: float = 0.45) -> float:
    """The drawable width of one of ``ncols`` panels side by side, ``labels`` inches of y tick
    labels and axis label taken off the figure's width."""
    return (width - labels) / ncols - 0.12


def _log_ticks(ax: Axes, values, inches: float) -> None:
    """Ticks of a log axis at ``values`` (an LR grid), written plainly ("0.05"); on an axis
    ``inches`` wide where every label would not fit, every second (third, ...) one is written."""
    values = np.sort(np.unique(np.asarray(values, dtype=float)))
    values = values[np.isfinite(values) & (values > 0)]
    labels = [f"{x:g}" for x in values]
    if len(values) > 1:
        span = math.log10(values[-1] / values[0]) * 1.1  # the data and the axis's margins
        at = inches * np.log10(values / values[0]) / span
        for step in range(1, len(values)):
            kept = range(0, len(values), step)
            if all(
                at[j] - at[i] >= (_inches(labels[i]) + _inches(labels[j])) / 2 + 0.08
                for i, j in zip(kept, list(kept)[1:], strict=False)
            ):
                break
        labels = [label if k % step == 0 else "" for k, label in enumerate(labels)]
    ax.set_xticks(values, labels)
    ax.minorticks_off()


def _columns(n: int, col_wrap: int, width: float) -> int:
    """How many of ``n`` panels go side by side: ``col_wrap``, two on a narrow figure."""
    return max(1, min(2 if _narrow(width) else col_wrap, n))


def _panels(n: int, col_wrap: int, panel_height: float, sharey: bool = True, width: float = WIDTH):
    """A figure ``width`` inches wide of ``n`` panels in rows of ``_columns`` (spare slots
    removed), shared axes, tick labels on every panel's outer edges: ``(fig, list of axes)``."""
    ncols = _columns(n, col_wrap, width)
    nrows = max(1, -(-n // ncols))
    fig = Figure(figsize=(width, panel_height * nrows + 0.5), layout="constrained")
    grid = fig.subplots(nrows, ncols, sharex=True, sharey=sharey, squeeze=False)
    axes = list(grid.flat)
    for ax in axes[n:]:
        ax.remove()
    for i, ax in enumerate(axes[:n]):
        # Bottom of its column: the last row, or above a removed slot.
        ax.tick_params(labelbottom=i + ncols >= n)
        ax.tick_params(labelleft=not sharey or i % ncols == 0)
    return fig, axes[:n]


def _category_axis(ax: Axes, names: Sequence[str], axis: str = "x") -> None:
    """Schedule names as category tick labels at 0, 1, ...; slanted where they would collide."""
    ticks = np.arange(len(names))
    if axis == "y":
        ax.set_yticks(ticks, names)
        ax.set_ylim(len(names) - 0.5, -0.5)  # first schedule on top
        return
    ax.set_xticks(ticks, names)
    ax.set_xlim(-0.5, len(names) - 0.5)
    width = (ax.figure.get_figwidth() - 0.8) / max(1, len(names))  # inches per category
    if max((_inches(n) for n in names), default=0) > 0.9 * width:
        # Slanted labels need a line's height over sin(30°) side by side; upright ones, one.
        upright = width < 2.2 * 8 / 72
        ax.tick_params(axis="x", labelrotation=90 if upright else 30)
        for label in ax.get_xticklabels():
            label.set_horizontalalignment("center" if upright else "right")
            label.set_rotation_mode("default" if upright else "anchor")


def val_acc_curves(
    epochs: pd.DataFrame,
    schedules: Sequence[str],
    baseline: str | None = None,
    width: float = WIDTH,
) -> Figure:
    """Validation accuracy per epoch, one panel per schedule: each seed as a faint line (up to
    ``MAX_SEED_LINES`` of them, the lowest seeds), the mean over seeds with its 95% t interval
    as a band, and the baseline's mean as a grey dashed reference in the other panels; the y
    range holds all of it, first epoch included. What differs between schedules is
    ``val_acc_differences``' to show.

    ``epochs``: columns run_id, schedule, seed, epoch, val_acc (fraction).
    """
    data = epochs[epochs["schedule"].isin(schedules)].assign(val_acc=epochs["val_acc"] * 100)
    schedules = [s for s in schedules if s in set(data["schedule"])]
    curves = {
        s: _mean_ci(data[data["schedule"] == s], "epoch", "val_acc").sort_values("epoch")
        for s in schedules
    }
    reference = curves.get(baseline) if baseline is not None else None
    with _style():
        fig, axes = _panels(len(schedules), col_wrap=3, panel_height=1.55, width=width)
        room = _panel_inches(width, _columns(len(schedules), 3, width))  # for a title
        for ax, s in zip(axes, schedules, strict=True):
            c, runs = colour(s), data[data["schedule"] == s]
            # The faint seeds as one artist, the first MAX_SEED_LINES of them (by seed).
            first = runs.drop_duplicates("run_id").sort_values(["seed", "run_id"])["run_id"]
            shown = runs[runs["run_id"].isin(first[:MAX_SEED_LINES])].sort_values("epoch")
            lines = [
                run[["epoch", "val_acc"]].to_numpy()
                for _, run in shown.groupby("run_id", sort=True)
            ]
            ax.add_collection(LineCollection(lines, colors=c, lw=0.6, alpha=0.35, zorder=2))
            if reference is not None and s != baseline:
                ax.plot(reference["epoch"], reference["mean"], color=REFERENCE, ls="--", lw=1)
            curve = curves[s]
            ax.fill_between(
                curve["epoch"], curve["ci_low"], curve["ci_high"], color=c, alpha=0.25, lw=0
            )
            ax.plot(curve["epoch"], curve["mean"], color=c, lw=1.6, zorder=3)
            ax.set_title(_wrap(f"{s} (n={runs['run_id'].nunique()})", room), pad=3)
        if schedules:
            axes[0].set_ylim(*_zoom(curves, data))
            # Whole epochs, shared by every panel (min_n_ticks=1: one epoch gets "1", not 0.96).
            axes[0].xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
        fig.supxlabel("epoch", fontsize=9)
        fig.supylabel("validation accuracy (%)", fontsize=9)
        handles = [
            Line2D([], [], color=".2", lw=1.6, label="mean over seeds"),
            Patch(color=".2", alpha=0.25, lw=0, label="95% CI (t)"),
            Line2D([], [], color=".2", lw=0.6, alpha=0.5, label="one seed"),
        ]
        if reference is not None:
            handles.append(Line2D([], [], color=REFERENCE, ls="--", lw=1, label=f"{baseline} mean"))
        ncols = 2 if _narrow(width) else len(handles)
        fig.legend(handles=handles, loc="outside upper center", ncols=ncols)
    return fig


def val_acc_differences(
    diffs: pd.DataFrame, schedules: Sequence[str], baseline: str, width: float = WIDTH
) -> Figure:
    """What the curves figure cannot show at a glance: each schedule's validation accuracy
    minus the ``baseline``'s, paired by seed, per epoch, with its 95% t band, on one axis whose
    range holds every band; zero dashed.

    ``diffs``: ``bench.analysis.curves.paired_differences`` (points).
    """
    schedules = [s for s in schedules if s in set(diffs["schedule"])]
    ncols = min(len(schedules), 2 if _narrow(width) else 5) or 1
    legend_rows = -(-len(schedules) // ncols)
    with _style():
        fig = Figure(figsize=(width, 3.0 + 0.17 * max(0, legend_rows - 1)), layout="constrained")
        ax = fig.subplots()
        ax.axhline(0, color=REFERENCE, ls="--", lw=1, zorder=1)
        for s in schedules:
            d = diffs[diffs["schedule"] == s].sort_values("epoch")
            c = colour(s)
            ax.fill_between(d["epoch"], d["ci_low"], d["ci_high"], color=c, alpha=0.18, lw=0)
            ax.plot(d["epoch"], d["mean"], color=c, lw=1.6, label=s, zorder=3)
        values = diffs.loc[diffs["schedule"].isin(schedules), ["mean", "ci_low", "ci_high"]]
        finite = values.to_numpy(dtype=float)
        finite = finite[np.isfinite(finite)]
        if finite.size:
            low, high = min(finite.min(), 0.0), max(finite.max(), 0.0)
            pad = 0.05 * (high - low) or 1.0
            ax.set_ylim(low - pad, high + pad)
        # Epochs are whole: no 2.5, and one epoch gets "1", not 0.96.
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
        ax.set_xlabel("epoch")
        ax.set_ylabel(f"val acc − {baseline} (points)")
        if schedules:
            ax.legend(loc="lower right", bbox_to_anchor=(1, 1), ncols=ncols)
    return fig


def _zoom(curves: dict[str, pd.DataFrame], data: pd.DataFrame) -> tuple[float, float]:
    """A y range for accuracy curves that holds everything drawn: every seed's line, every mean
    and every band, from the first epoch to the last, with a little room, within [0, 100]."""
    drawn = [data["val_acc"].to_numpy(dtype=float)]
    drawn += [c[k].to_numpy(dtype=float) for c in curves.values() for k in ("ci_low", "ci_high")]
    values = np.concatenate(drawn)
    values = values[np.isfinite(values)]
    if not values.size:
        return 0.0, 100.0
    low, high = float(values.min()), float(values.max())
    pad = max(0.5, 0.04 * (high - low))
    return max(0.0, low - pad), min(100.0, high + pad)


def lr_traces(lr: pd.DataFrame, schedules: Sequence[str], width: float = WIDTH) -> Figure:
    """The logged learning rate at every optimizer step, one small panel per schedule in its
    colour (one run per schedule: the first run_id, of the lowest seed where there is one). The
    panels share their y axis unless the peaks differ more than twofold (schedule-free SGD runs
    at 10x the schedules' LR): then each panel has its own, so every trace stays inside it.

    ``lr``: columns run_id, schedule, step, lr (and optionally seed).
    """
    data = lr[lr["schedule"].isin(schedules)]
    if "seed" in data:
        data = data[data["seed"] == data.groupby("schedule")["seed"].transform("min")]
    data = data[data["run_id"] == data.groupby("schedule")["run_id"].transform("min")]
    schedules = [s for s in schedules if s in set(data["schedule"])]
    peaks = data.groupby("schedule")["lr"].max()
    shared = len(peaks) == 0 or peaks.max() <= 2 * peaks.min()
    with _style():
        fig, axes = _panels(
            len(schedules), col_wrap=3, panel_height=1.2, sharey=bool(shared), width=width
        )
        for ax, s in zip(axes, schedules, strict=True):
            trace = data[data["schedule"] == s].sort_values("step")
            ax.plot(trace["step"], trace["lr"], color=colour(s), lw=1.3)
            ax.set_title(s, pad=3)
            ax.set_ylim(bottom=0)
            ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
        fig.supxlabel("optimizer step", fontsize=9)
        fig.supylabel("learning rate", fontsize=9)
    return fig


def final_acc_per_seed(
    per_run: pd.DataFrame,
    schedules: Sequence[str],
    summary: pd.DataFrame | None = None,
    width: float = WIDTH,
) -> Figure:
    """Final validation accuracy per schedule: one dot per seed (spread side by side in seed
    order, no random jitter, each seed at the same offset in every schedule) and, beside them,
    the mean with its 95% CI. Thin grey lines join each seed's dots across the schedules: the
    pairing the analysis relies on (a seed that is high under one schedule is often high under
    the next).

    ``per_run``: columns schedule, seed, final_val_acc (fraction). ``summary``: columns schedule,
    mean, ci_low, ci_high (fractions); by default the t interval of ``per_run`` per schedule.
    """
    if isinstance(schedules, pd.DataFrame):
        raise TypeError("final_acc_per_seed(per_run, schedules, summary=...): pass summary by name")
    schedules = list(schedules)
    if summary is None:
        summary = _mean_ci(per_run, "schedule", "final_val_acc")
    summary = summary.set_index("schedule")
    seeds = sorted(per_run.loc[per_run["schedule"].isin(schedules), "seed"].unique())
    offsets = np.linspace(-0.1, 0.1, len(seeds)) if len(seeds) > 1 else np.zeros(len(seeds))
    offset = dict(zip(seeds, offsets, strict=True))
    with _style():
        fig = Figure(figsize=(width, 3.0), layout="constrained")
        ax = fig.subplots()
        # One polyline per seed through the schedules that ran it, in the axis's order.
        table = per_run.pivot_table(index="seed", columns="schedule", values="final_val_acc")
        table = table.reindex(index=seeds, columns=schedules)
        position = np.arange(len(schedules)) - 0.13
        pairs = []
        for seed, row in table.iterrows():
            ran = row.notna().to_numpy()
            pairs.append(np.column_stack([position[ran] + offset[seed], row[ran] * 100]))
        joined = LineCollection(pairs, colors=".55", lw=0.45, alpha=0.35, zorder=2)
        joined.set_gid("same-seed")  # (the id of its group in the SVG)
        ax.add_collection(joined)
        for i, s in enumerate(schedules):
            runs = per_run[per_run["schedule"] == s].sort_values("seed")
            spread = runs["seed"].map(offset).to_numpy()
            ax.scatter(
                i - 0.13 + spread,
                runs["final_val_acc"] * 100,
                s=16,
                color=colour(s),
                alpha=0.75,
                lw=0,
                zorder=3,
            )
            if s in summary.index:
                row = summary.loc[s]
                mean = row["mean"] * 100
                err = [[mean - row["ci_low"] * 100], [row["ci_high"] * 100 - mean]]
                ax.errorbar(
                    i + 0.17,
                    mean,
                    yerr=err,
                    color=colour(s),
                    fmt="D",
                    ms=4.5,
                    capsize=2.5,
                    elinewidth=1.2,
                    capthick=1.2,
                    zorder=4,
                )
        _category_axis(ax, schedules)
        ax.grid(axis="x", visible=False)
        ax.set_ylabel("final validation accuracy (%)")
        handles = [
            Line2D([], [], color=".3", marker="o", ls="none", ms=4, alpha=0.75, label="one seed"),
            Line2D([], [], color=".55", lw=0.8, alpha=0.6, label="the same seed"),
            Line2D([], [], color=".3", marker="D", ms=4.5, lw=1.2, label="mean, 95% CI"),
        ]
        ncols = 2 if _narrow(width) else 3
        ax.legend(handles=handles, loc="lower right", bbox_to_anchor=(1, 1), ncols=ncols)
    return fig


def forest(
    diffs: pd.DataFrame,
    baseline: str,
    metric_label: str = "final val acc",
    band: tuple[float, float] | None = None,
    band_label: str = "claim band",
    schedules: Sequence[str] | None = None,
    width: float = WIDTH,
) -> Figure:
    """Differences from the baseline, one row per schedule (top to bottom in the order of
    ``schedules``, else of ``diffs``): the mean difference with its 95% CI, a line at zero, and
    the Holm-adjusted p value at the right where ``diffs`` has ``p_holm``. ``band=(low, high)``
    (fractions) shades a region, such as the margin a claim is tested against.

    ``diffs``: columns schedule, mean, ci_low, ci_high (differences of fractions), optional
    p_holm. ``schedules``, where given, picks and orders the rows. A row for the baseline itself
    is left out.
    """
    rows = diffs[diffs["schedule"] != baseline]
    if schedules is not None:
        rank = {s: k for k, s in enumerate(schedules)}
        rows = rows[rows["schedule"].isin(rank)].sort_values("schedule", key=lambda c: c.map(rank))
    rows = rows.reset_index(drop=True)
    names = list(rows["schedule"])
    with _style():
        fig = Figure(figsize=(width, 0.28 * max(1, len(names)) + 0.85), layout="constrained")
        ax = fig.subplots()
        if band is not None:
            ax.axvspan(band[0] * 100, band[1] * 100, color="0.88", lw=0, zorder=0, label=band_label)
        ax.axvline(0, color=".3", lw=0.9, zorder=1)
        for i, row in rows.iterrows():
            mean = row["mean"] * 100
            err = [[mean - row["ci_low"] * 100], [row["ci_high"] * 100 - mean]]
            c = colour(row["schedule"])
            ax.errorbar(
                mean, i, xerr=err, color=c, fmt="o", ms=5, capsize=2.5, elinewidth=1.3, zorder=3
            )
        _category_axis(ax, names, axis="y")
        ax.grid(axis="y", visible=False)
        room = width - max((_inches(n) for n in names), default=0) - 0.7  # less the p column
        ax.set_xlabel(_wrap(f"Δ {metric_label} vs {baseline} (points, 95% CI)", room))
        if "p_holm" in rows:
            right = blended_transform_factory(ax.transAxes, ax.transData)
            ax.text(1.02, -0.5, "p (Holm)", transform=right, ha="left", va="bottom", fontsize=8)
            for i, p in enumerate(rows["p_holm"]):
                ax.text(1.02, i, _p_text(p), transform=right, ha="left", va="center", fontsize=8)
        if band is not None:
            ax.legend(loc="lower left", bbox_to_anchor=(0, 1), fontsize=8)
    return fig


def _p_text(p: float) -> str:
    if pd.isna(p):
        return "–"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


# Stability measures: per-run column, panel title, factor (fractions -> points).
STABILITY_MEASURES: tuple[tuple[str, str, float], ...] = (
    ("best_minus_final", "best − final (pt)", 100.0),
    ("late_regressions", "late regressions\nper run", 1.0),
    ("oscillation", "oscillation,\nlast quarter (pt)", 100.0),
    ("epochs_to_target", "epochs to target", 1.0),
)


def stability(runs: pd.DataFrame, schedules: Sequence[str], width: float = WIDTH) -> Figure:
    """One panel per stability measure: per schedule (top to bottom, in its colour) the mean
    over runs as a dot and its 95% t interval as a bar (``bench.analysis.stats.mean_ci``), so
    that a zero (a dot on 0) differs from a missing value ("n/a"). "epochs to target" names the
    target in its title, counts only the runs that reached it and says how many did ("k/n";
    "never reached" where none did). A measure missing or all NaN has no panel.

    ``runs``: ``bench.analysis.stability_runs`` (one row per run, one setting).
    """
    schedules = list(schedules)
    present = [m for m in STABILITY_MEASURES if m[0] in runs and runs[m[0]].notna().any()]
    with _style():
        ncols = max(1, min(2 if _narrow(width) else 4, len(present)))
        nrows = max(1, -(-len(present) // ncols))
        height = nrows * (0.24 * max(1, len(schedules)) + 0.6) + 0.25
        labels = max((_inches(s) for s in schedules), default=0) + 0.1
        room = _panel_inches(width, ncols, labels)
        fig = Figure(figsize=(width, height), layout="constrained")
        if not present:
            fig.text(0.5, 0.5, "no stability measures to show", ha="center", va="center")
            return fig
        grid = fig.subplots(nrows, ncols, sharey=True, squeeze=False)
        for ax in grid.flat[len(present) :]:
            ax.remove()
        axes = grid.flat[: len(present)]
        for ax, (column, title, factor) in zip(axes, present, strict=True):
            ax.axvline(0, color=REFERENCE, lw=0.8, zorder=1)
            right, noted = 0.0, False  # the rightmost value drawn; whether a "k/n" follows one
            for i, s in enumerate(schedules):
                values = runs.loc[runs["schedule"] == s, column].astype(float) * factor
                ci = mean_ci(values.to_numpy(), bounds=(0.0, math.inf))
                n, reached = int((runs["schedule"] == s).sum()), int(values.notna().sum())
                if reached == 0:
                    missing = "never reached" if column == "epochs_to_target" else "n/a"
                    ax.text(0, i, f" {missing}", va="center", ha="left", fontsize=7, color=".4")
                    continue
                if np.isfinite(ci.low):
                    ax.plot([ci.low, ci.high], [i, i], color=colour(s), lw=2.2, alpha=0.45)
                ax.plot(ci.mean, i, "o", color=colour(s), ms=4.5, zorder=3, clip_on=False)
                end = ci.high if np.isfinite(ci.high) else ci.mean
                right = max(right, end)
                if column == "epochs_to_target" and reached < n:
                    noted = True
                    ax.annotate(
                        f"{reached}/{n}",
                        (end, i),
                        xytext=(3, 0),
                        textcoords="offset points",
                        va="center",
                        fontsize=7,
                        color=".35",
                    )
            if column == "epochs_to_target" and "target" in runs:
                title = f"epochs to val acc\n≥ {runs['target'].max() * 100:.1f}%"
            ax.set_title(_wrap(title, room), pad=3)
            ax.grid(axis="y", visible=False)
            ax.set_xlim(0, (right or 1.0) * (1.35 if noted else 1.12))  # room for a "k/n" note
        _category_axis(axes[0], schedules, axis="y")  # shared by every panel
    return fig


def lr_sensitivity(frame: pd.DataFrame, schedules: Sequence[str], width: float = WIDTH) -> Figure:
    """Validation accuracy against the base learning rate (log scale), one line per schedule:
    the mean with its 95% CI at every LR tried; one panel per setting where the runs differ in
    more than the LR (such as warmup), the panels sharing their axes, side by side (one above
    the other on a narrow figure). Points of different schedules at one LR are spread slightly
    apart so that their error bars do not hide each other.

    ``frame``: columns schedule, lr, mean, ci_low, ci_high (fractions), and ``setting`` (the
    rest of the setting, "" where the LR is all that varies).
    """
    schedules = [s for s in schedules if s in set(frame["schedule"])]
    settings = sorted(set(frame["setting"])) if "setting" in frame else [""]
    with _style():
        stacked = _narrow(width) and len(settings) > 1
        # A panel's width: the figure's, less the legend at the right of a wide one.
        beside = 1 if stacked else len(settings)
        room = _panel_inches(width if _narrow(width) else width - 1.4, beside, 0.5)
        height = 2.0 * len(settings) + 0.6 if stacked else 3.0
        fig = Figure(figsize=(width, height), layout="constrained")
        shape = (len(settings), 1) if stacked else (1, len(settings))
        axes = list(fig.subplots(*shape, sharex=True, sharey=True, squeeze=False).flat)
        for ax, setting in zip(axes, settings, strict=True):
            mine = frame[frame["setting"] == setting] if "setting" in frame else frame
            for k, s in enumerate(schedules):
                rows = mine[mine["schedule"] == s].sort_values("lr")
                dodge = 10 ** (0.012 * (k - (len(schedules) - 1) / 2))
                mean = rows["mean"] * 100
                err = [mean - rows["ci_low"] * 100, rows["ci_high"] * 100 - mean]
                ax.errorbar(
                    rows["lr"] * dodge,
                    mean,
                    yerr=err,
                    color=colour(s),
                    marker="o",
                    ms=4,
                    lw=1.3,
                    capsize=2,
                    elinewidth=1,
                    label=s if ax is axes[0] else None,
                )
            if setting:
                ax.set_title(_wrap(setting.replace(", ", "\n"), room))
            ax.set_xscale("log")
            _log_ticks(ax, frame["lr"].unique(), room)
            if not stacked or ax is axes[-1]:
                ax.set_xlabel("base learning rate")
        if stacked:
            fig.supylabel("validation accuracy (%)", fontsize=9)
        else:
            axes[0].set_ylabel("validation accuracy (%)")
        if _narrow(width):
            fig.legend(loc="outside upper center", ncols=min(len(schedules), 2))
        else:
            fig.legend(loc="outside right upper")
    return fig


def lr_robustness(table: pd.DataFrame, schedules: Sequence[str], width: float = WIDTH) -> Figure:
    """How wide each schedule's good base LR is (``bench.analysis.lr_robustness``): one row per
    schedule (and setting, where the runs differ in more than the LR, such as warmup), on a log
    LR axis: the LRs within a point of its best as a solid bar, the wider range the grid cannot
    tell from those as a light bar, the best LR as a dot, and the lowest LR at which a run
    diverged as a cross.

    ``table``: columns setting, schedule, best_lr, good_low, good_high, plausible_low,
    plausible_high, diverged_from.
    """
    order = {s: i for i, s in enumerate(schedules)}
    rows = table[table["schedule"].isin(order)].copy()
    rows = rows.assign(_o=rows["schedule"].map(order)).sort_values(["_o", "setting"])
    # On a narrow figure the setting goes under the schedule's name, one knob a line.
    if _narrow(width):
        named = [
            "\n".join([r.schedule, *r.setting.split(", ")]) if r.setting else r.schedule
            for r in rows.itertuples()
        ]
    else:
        named = [
            f"{r.schedule} ({r.setting})" if r.setting else r.schedule for r in rows.itertuples()
        ]
    labels = [_wrap(label, 0.45 * width, 8) for label in named]
    with _style():
        lines = max((label.count("\n") + 1 for label in labels), default=1)
        height = (0.3 + 0.12 * (lines - 1)) * max(1, len(rows)) + 0.9
        fig = Figure(figsize=(width, height), layout="constrained")
        ax = fig.subplots()
        for i, r in enumerate(rows.itertuples()):
            c = colour(r.schedule)
            ax.plot([r.plausible_low, r.plausible_high], [i, i], color=c, lw=7, alpha=0.25)
            ax.plot([r.good_low, r.good_high], [i, i], color=c, lw=7, solid_capstyle="butt")
            ax.plot(r.best_lr, i, "o", color="white", mec=c, mew=1.5, ms=6, zorder=3)
            if not pd.isna(r.diverged_from):
                ax.plot(r.diverged_from, i, "x", color=c, ms=7, mew=2, zorder=3)
        ax.set_xscale("log")
        # Ticks at the LRs drawn (each end, best and divergence is one of the grid's LRs).
        ends = ["best_lr", "good_low", "good_high", "plausible_low", "plausible_high"]
        drawn = rows[[*ends, "diverged_from"]].to_numpy(dtype=float).ravel()
        longest = max((_inches(label) for label in labels), default=0)
        _log_ticks(ax, drawn, width - longest - 0.3)
        ax.set_yticks(range(len(rows)), labels)
        ax.set_ylim(len(rows) - 0.5, -0.5)
        ax.grid(axis="y", visible=False)
        ax.set_xlabel("base learning rate")
        handles = [
            Line2D([], [], color=".3", lw=7, label="within 1 pt of its best"),
            Line2D([], [], color=".3", lw=7, alpha=0.25, label="cannot be told from those"),
            Line2D([], [], ls="", marker="o", color="white", mec=".3", mew=1.5, label="best LR"),
            Line2D([], [], ls="", marker="x", color=".3", mew=2, label="a run diverged"),
        ]
        ncols = 2 if _narrow(width) else 4
        fig.legend(handles=handles, loc="outside upper center", ncols=ncols, fontsize=7)
    return fig


def lr_range_test(curve: pd.DataFrame, steepest: float, min_loss: float) -> plt.Figure:
    """The LR range test: smoothed training loss against the LR (log scale), with the LR of the
    steepest descent and of the lowest loss marked."""
    with _style():
        fig, ax = plt.subplots(figsize=(5.5, 3.5), constrained_layout=True)
        ax.plot(curve["lr"], curve["loss"], color="0.2")
        for lr, label, c in ((steepest, "steepest", "#0072B2"), (min_loss, "min loss", "#D55E00")):
            ax.axvline(lr, color=c, linestyle="--", label=f"{label}: {lr:.3g}")
        ax.set_xscale("log")
        ax.set_xlabel("learning rate")
        ax.set_ylabel("training loss (smoothed)")
        ax.legend(frameon=False)
    return fig
