"""The report's figures: one fixed colour per schedule, figures drawn from small hand-made frames
without crashing on missing pieces, and the same input saved as the same bytes."""

import itertools
from pathlib import Path

import matplotlib as mpl
import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import LineCollection, PathCollection
from matplotlib.colors import to_hex, to_rgb

from bench import plots
from bench.analysis.curves import paired_differences
from bench.schedules import SCHEDULE_FREE, SCHEDULES

SCHEDS = ["constant", "cosine", "step"]
RESULTS = Path(__file__).resolve().parent.parent / "results"


def hexes(colours) -> set[str]:
    """Colours (one colour, or an array of RGBA rows) as lowercase hex without alpha."""
    rows = [colours] if isinstance(colours, str) else np.atleast_2d(colours)
    return {to_hex(c, keep_alpha=False) for c in rows}


def want(schedule: str) -> str:
    """The colour a schedule must be drawn in, as ``hexes`` writes it."""
    return to_hex(plots.COLOURS[schedule])


@pytest.fixture
def epochs() -> pd.DataFrame:
    """3 schedules x 3 seeds x 5 epochs of validation accuracy (fractions)."""
    rows = []
    for k, s in enumerate(SCHEDS):
        for seed in range(3):
            for e in range(1, 6):
                acc = 0.5 + 0.08 * e + 0.01 * k + 0.004 * seed * (-1) ** e
                rows.append((f"{s}-{seed}", s, seed, e, acc))
    return pd.DataFrame(rows, columns=["run_id", "schedule", "seed", "epoch", "val_acc"])


@pytest.fixture
def per_run(epochs) -> pd.DataFrame:
    last = epochs[epochs["epoch"] == epochs["epoch"].max()]
    return last.rename(columns={"val_acc": "final_val_acc"})[["schedule", "seed", "final_val_acc"]]


@pytest.fixture
def summary() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "schedule": SCHEDS,
            "mean": [0.90, 0.91, 0.92],
            "ci_low": [0.88, 0.90, 0.915],
            "ci_high": [0.92, 0.92, 0.925],
        }
    )


@pytest.fixture
def lr() -> pd.DataFrame:
    steps = np.arange(0, 50, 5)
    traces = {"constant": 0.1 + 0 * steps, "cosine": 0.05 * (1 + np.cos(np.pi * steps / 50))}
    traces["step"] = np.where(steps < 25, 0.1, 0.01)
    return pd.concat(
        pd.DataFrame({"run_id": f"{s}-0", "schedule": s, "step": steps, "lr": v})
        for s, v in traces.items()
    )


@pytest.fixture
def diffs() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "schedule": ["cosine", "step"],
            "mean": [0.01, -0.002],
            "ci_low": [0.004, -0.01],
            "ci_high": [0.016, 0.006],
            "p_holm": [0.02, 0.6],
        }
    )


@pytest.fixture
def stab() -> pd.DataFrame:
    """Per run (``bench.analysis.stability_runs``): 3 schedules x 3 seeds; constant never
    reaches the target, cosine has no late regression at all, step reaches it in 2 of 3."""
    rows = []
    for s, best_minus_final, regressions, to_target in (
        ("constant", [0.008, 0.010, 0.012], [1, 2, 3], [np.nan] * 3),
        ("cosine", [0.001, 0.002, 0.003], [0, 0, 0], [3, 3, 4]),
        ("step", [0.003, 0.004, 0.005], [1, 1, 1], [4, 5, np.nan]),
    ):
        for seed in range(3):
            rows.append(
                {
                    "schedule": s,
                    "seed": seed,
                    "best_minus_final": best_minus_final[seed],
                    "late_regressions": regressions[seed],
                    "oscillation": 0.001 * (seed + 1),
                    "epochs_to_target": to_target[seed],
                    "target": 0.8514,
                }
            )
    return pd.DataFrame(rows)


@pytest.fixture
def sensitivity() -> pd.DataFrame:
    rows = [
        (s, lr, 0.85 + 0.01 * k - abs(np.log10(lr / 0.1)) / 20)
        for k, s in enumerate(SCHEDS)
        for lr in (0.01, 0.1, 1.0)
    ]
    frame = pd.DataFrame(rows, columns=["schedule", "lr", "mean"])
    return frame.assign(ci_low=frame["mean"] - 0.01, ci_high=frame["mean"] + 0.01)


@pytest.fixture
def robustness() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "setting": ["", "", "warmup 0.05", ""],
            "schedule": ["constant", "cosine", "cosine", "step"],
            "best_lr": [0.1, 0.1, 0.3, 0.1],
            "good_low": [0.1, 0.03, 0.03, 0.1],
            "good_high": [0.1, 0.3, 1.0, 0.1],
            "plausible_low": [0.03, 0.03, 0.03, 0.1],
            "plausible_high": [0.3, 0.3, 1.0, 0.1],
            "diverged_from": [1.0, np.nan, np.nan, 3.0],
        }
    )


@pytest.fixture
def figures(epochs, per_run, summary, lr, diffs, stab, sensitivity, robustness):
    """Every figure, by name, as a function that draws it afresh."""
    return {
        "val_acc_curves": lambda: plots.val_acc_curves(epochs, SCHEDS, baseline="constant"),
        "val_acc_differences": lambda: plots.val_acc_differences(
            paired_differences(epochs, "constant"), SCHEDS, "constant"
        ),
        "lr_traces": lambda: plots.lr_traces(lr, SCHEDS),
        "final_acc_per_seed": lambda: plots.final_acc_per_seed(per_run, SCHEDS, summary=summary),
        "forest": lambda: plots.forest(diffs, "constant", "final val acc", band=(-0.005, 0.005)),
        "stability": lambda: plots.stability(stab, SCHEDS),
        "lr_sensitivity": lambda: plots.lr_sensitivity(sensitivity, SCHEDS),
        "lr_robustness": lambda: plots.lr_robustness(robustness, SCHEDS),
    }


# Palette


def test_every_schedule_and_arm_has_its_own_colour():
    arms = [name for name, _ in SCHEDULE_FREE.values()]
    assert set(SCHEDULES) | set(arms) <= set(plots.COLOURS)
    assert len(set(plots.COLOURS.values())) == len(plots.COLOURS)
    # Farther apart than the two oranges of seaborn's "colorblind" palette that this replaces.
    too_close = np.linalg.norm(np.subtract(to_rgb("#DE8F05"), to_rgb("#D55E00")))
    for a, b in itertools.combinations(plots.COLOURS.values(), 2):
        assert np.linalg.norm(np.subtract(to_rgb(a), to_rgb(b))) > too_close, (a, b)


def test_a_schedules_colour_does_not_depend_on_the_others(lr):
    """The same schedule gets the same colour in a figure of all schedules and of one."""
    alone = plots.lr_traces(lr[lr["schedule"] == "step"], ["step"])
    together = plots.lr_traces(lr, SCHEDS)

    def colour_of(fig, i):
        return {to_hex(line.get_color()) for line in fig.get_axes()[i].get_lines()}

    assert colour_of(alone, 0) == colour_of(together, SCHEDS.index("step")) == {want("step")}


def test_unknown_names_get_a_fixed_spare_colour():
    assert plots.colour("my_schedule") in plots.SPARE_COLOURS
    assert plots.colour("my_schedule") not in plots.COLOURS.values()


# Colours drawn


def test_val_acc_curves_draw_each_panel_in_its_schedules_colour(figures):
    fig = figures["val_acc_curves"]()
    axes = fig.get_axes()
    assert len(axes) == len(SCHEDS)
    for ax, s in zip(axes, SCHEDS, strict=True):
        assert ax.get_title().startswith(s)
        lines = {to_hex(line.get_color()) for line in ax.get_lines()}
        reference = {to_hex(plots.REFERENCE)} if s != "constant" else set()
        assert lines == {want(s)} | reference
        seeds, band = ax.collections  # the faint seeds, then the CI band
        assert hexes(seeds.get_color()) == {want(s)} and len(seeds.get_paths()) == 3
        assert hexes(band.get_facecolor()) == {want(s)}


def test_val_acc_curves_band_is_a_t_interval_and_y_is_in_points(epochs):
    fig = plots.val_acc_curves(epochs, ["cosine"])
    ax = fig.get_axes()[0]
    last = epochs[(epochs["schedule"] == "cosine") & (epochs["epoch"] == 5)]["val_acc"] * 100
    mean, low, high = plots.t_interval(last)
    half = 4.302653 * last.std(ddof=1) / np.sqrt(3)  # t(0.975, 2)
    assert (low, high) == pytest.approx((mean - half, mean + half))
    band = ax.collections[1].get_paths()[0].vertices
    assert band[:, 1].max() == pytest.approx(high)
    assert ax.get_ylim()[1] <= 100


def test_val_acc_curves_keep_every_epoch_and_band_inside_the_axes(epochs):
    # a first epoch far below the rest, and one seed far above: both stay in view
    wide = epochs.copy()
    wide.loc[wide["epoch"] == 1, "val_acc"] = 0.10
    wide.loc[(wide["seed"] == 0) & (wide["epoch"] == 5), "val_acc"] = 0.999
    fig = plots.val_acc_curves(wide, SCHEDS, baseline="constant")
    for ax in fig.get_axes():
        low, high = ax.get_ylim()
        for artist in [*ax.collections, *ax.get_lines()]:
            paths = artist.get_paths() if hasattr(artist, "get_paths") else []
            ys = [p.vertices[:, 1] for p in paths] or [np.asarray(artist.get_ydata())]
            for y in ys:
                assert low <= np.nanmin(y) and np.nanmax(y) <= high
        assert low <= 10 and high <= 100


def test_val_acc_curves_draw_at_most_max_seed_lines_per_panel(epochs):
    copies = [
        epochs.assign(run_id=epochs["run_id"] + f"-{k}", seed=epochs["seed"] + 10 * k)
        for k in range(10)
    ]
    many = pd.concat(copies, ignore_index=True)
    fig = plots.val_acc_curves(many, ["cosine"])
    seeds = fig.get_axes()[0].collections[0]
    assert len(seeds.get_paths()) == plots.MAX_SEED_LINES < many["run_id"].nunique() / 3


def test_lr_traces_one_panel_per_schedule_in_its_colour(figures):
    fig = figures["lr_traces"]()
    for ax, s in zip(fig.get_axes(), SCHEDS, strict=True):
        assert ax.get_title() == s
        assert {to_hex(line.get_color()) for line in ax.get_lines()} == {want(s)}


def test_lr_traces_keep_a_schedule_free_trace_at_ten_times_the_lr_inside_its_panel():
    steps = np.arange(50)
    lr = pd.DataFrame(
        {
            "run_id": ["a"] * 50 + ["b"] * 50,
            "schedule": ["cosine"] * 50 + ["sgd_schedulefree"] * 50,
            "step": np.concatenate([steps, steps]),
            "lr": np.concatenate([0.2 * (1 + np.cos(np.pi * steps / 50)) / 2, np.full(50, 2.0)]),
        }
    )
    fig = plots.lr_traces(lr, ["cosine", "sgd_schedulefree"])
    for ax in fig.get_axes():
        bottom, top = ax.get_ylim()
        [line] = ax.get_lines()
        assert bottom <= min(line.get_ydata()) and max(line.get_ydata()) <= top, ax.get_title()
    cosine_top = fig.get_axes()[0].get_ylim()[1]
    assert cosine_top < 0.5  # cosine keeps a scale of its own, not squashed under 2.0


def test_final_acc_per_seed_dots_and_means_in_the_schedules_colour(figures, per_run, summary):
    fig = figures["final_acc_per_seed"]()
    ax = fig.get_axes()[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == SCHEDS
    dots = [c for c in ax.collections if isinstance(c, PathCollection)]
    for k, (s, c) in enumerate(zip(SCHEDS, dots, strict=True)):
        assert hexes(c.get_facecolor()) == {want(s)}
        xy = np.asarray(c.get_offsets())
        assert len(xy) == 3 and np.all(np.abs(xy[:, 0] - k) < 0.5)
        expected = per_run[per_run["schedule"] == s].sort_values("seed")["final_val_acc"] * 100
        assert xy[:, 1] == pytest.approx(expected.to_numpy())
    means = [line for line in ax.get_lines() if line.get_marker() == "D"]
    assert [to_hex(m.get_color()) for m in means] == [want(s) for s in SCHEDS]
    assert [m.get_ydata()[0] for m in means] == pytest.approx(summary["mean"] * 100)
    # The pairing: one line per seed through that seed's dot in every schedule.
    [pairs] = [c for c in ax.collections if c.get_gid() == "same-seed"]
    assert isinstance(pairs, LineCollection)
    dots_xy = [np.asarray(c.get_offsets()) for c in dots]
    for k, path in enumerate(pairs.get_segments()):  # seeds in order
        assert path == pytest.approx(np.array([xy[k] for xy in dots_xy]))


def test_final_acc_per_seed_without_summary_uses_t_intervals(per_run):
    fig = plots.final_acc_per_seed(per_run, SCHEDS)
    means = [line for line in fig.get_axes()[0].get_lines() if line.get_marker() == "D"]
    expected = per_run.groupby("schedule")["final_val_acc"].mean().loc[SCHEDS] * 100
    assert [m.get_ydata()[0] for m in means] == pytest.approx(expected.to_numpy())


def test_forest_rows_in_order_coloured_and_in_points(diffs):
    fig = plots.forest(diffs, "constant", "final val acc", schedules=["step", "cosine"])
    ax = fig.get_axes()[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["step", "cosine"]
    assert ax.get_ylim()[0] > ax.get_ylim()[1]  # first row on top
    points = [line for line in ax.get_lines() if line.get_marker() == "o"]
    assert [to_hex(p.get_color()) for p in points] == [want(s) for s in ("step", "cosine")]
    assert [p.get_xdata()[0] for p in points] == pytest.approx([-0.2, 1.0])
    assert "vs constant (points, 95% CI)" in ax.get_xlabel()
    texts = {t.get_text() for t in ax.texts}
    assert {"0.020", "0.600"} <= texts


def test_forest_leaves_out_the_baseline_and_needs_no_p_values(diffs):
    with_baseline = diffs.drop(columns="p_holm").assign(schedule=["constant", "step"])
    fig = plots.forest(with_baseline, "constant", "best val acc")
    ax = fig.get_axes()[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["step"]
    assert len(ax.texts) == 0


def test_stability_shows_each_mean_with_its_interval_and_names_the_target(figures, stab):
    fig = figures["stability"]()
    axes = fig.get_axes()
    titles = [ax.get_title() for ax in axes]
    assert titles[:3] == [m[1] for m in plots.STABILITY_MEASURES[:3]]
    assert titles[3] == "epochs to val acc\n≥ 85.1%"  # the target, in the figure
    first = axes[0]  # best − final, in points: a dot at the mean, a bar for its 95% t interval
    dots = [line for line in first.get_lines() if line.get_marker() == "o"]
    assert [to_hex(d.get_color()) for d in dots] == [want(s) for s in SCHEDS]
    assert [d.get_xdata()[0] for d in dots] == pytest.approx([1.0, 0.2, 0.4])
    bars = [
        line
        for line in first.get_lines()
        if line.get_marker() != "o"
        and len(line.get_xdata()) == 2
        and line.get_ydata()[0] == line.get_ydata()[1]
    ]
    half = 4.302653 * 0.2 / np.sqrt(3)  # t(0.975, 2) x sd 0.2 points / sqrt(3)
    assert list(bars[0].get_xdata()) == pytest.approx([1.0 - half, 1.0 + half])
    # a zero is a dot on 0 (cosine's late regressions), not an empty place
    regressions = [line for line in axes[1].get_lines() if line.get_marker() == "o"]
    assert regressions[1].get_xdata()[0] == 0
    # epochs to target: constant never reached it; step did in 2 of its 3 runs
    texts = [t.get_text().strip() for t in axes[3].texts]
    assert texts == ["never reached", "2/3"]


def test_stability_skips_measures_that_are_all_nan_or_missing(stab):
    fig = plots.stability(stab.assign(oscillation=np.nan).drop(columns="late_regressions"), SCHEDS)
    assert [ax.get_title() for ax in fig.get_axes()] == [
        "best − final (pt)",
        "epochs to val acc\n≥ 85.1%",
    ]
    empty = plots.stability(stab[["schedule"]], SCHEDS)
    assert empty.get_axes() == []


def test_lr_sensitivity_one_line_per_schedule(figures):
    fig = figures["lr_sensitivity"]()
    ax = fig.get_axes()[0]
    assert ax.get_xscale() == "log"
    lines = {bars.get_label(): bars.lines[0] for bars in ax.containers}
    assert list(lines) == SCHEDS
    for s, line in lines.items():
        assert to_hex(line.get_color()) == want(s)
        assert np.max(line.get_ydata()) > 1  # points, not fractions
    legend = fig.legends[0]
    assert [t.get_text() for t in legend.get_texts()] == SCHEDS


def test_lr_sensitivity_draws_one_panel_per_other_setting(sensitivity):
    """With warmup as a second axis, each schedule's line stays within one warmup value: a
    panel per setting, never one line zig-zagging between them at each LR."""
    both = pd.concat(
        [
            sensitivity.assign(setting="schedule.warmup_fraction=0"),
            sensitivity.assign(
                setting="schedule.warmup_fraction=0.2", mean=0.5, ci_low=0.49, ci_high=0.51
            ),
        ]
    )
    fig = plots.lr_sensitivity(both, SCHEDS)
    axes = fig.get_axes()
    assert [ax.get_title() for ax in axes] == [
        "schedule.warmup_fraction=0",
        "schedule.warmup_fraction=0.2",
    ]
    for ax, level in zip(axes, (None, 50.0), strict=True):
        for bars in ax.containers:
            y = bars.lines[0].get_ydata()
            assert len(y) == 3  # one point per LR: the setting's own
            if level is not None:
                assert np.allclose(y, level)
    assert [t.get_text() for t in fig.legends[0].get_texts()] == SCHEDS  # once, not per panel


# Missing pieces


def test_val_acc_curves_without_a_baseline_or_with_an_absent_one(epochs):
    for baseline in (None, "wsd"):
        fig = plots.val_acc_curves(epochs, ["cosine", "step"], baseline)
        for ax in fig.get_axes():
            drawn = {to_hex(line.get_color()) for line in ax.get_lines()}
            assert to_hex(plots.REFERENCE) not in drawn


def test_schedules_without_data_are_left_out(epochs, lr):
    fig = plots.val_acc_curves(epochs, ["wsd", "cosine"], "constant")
    assert [ax.get_title().split()[0] for ax in fig.get_axes()] == ["cosine"]
    assert [ax.get_title() for ax in plots.lr_traces(lr, ["wsd", "step"]).get_axes()] == ["step"]


def test_a_single_seed_draws_no_band_and_does_not_crash(epochs, tmp_path):
    one = epochs[epochs["seed"] == 0]
    fig = plots.val_acc_curves(one, SCHEDS, "constant")
    for ax in fig.get_axes():
        band = ax.collections[1].get_paths()
        assert len(band) == 0 or np.isnan(band[0].vertices).all()
    (path,) = plots.save(fig, tmp_path, "one", ("png",))
    assert path.stat().st_size > 0


# Saving


def test_save_writes_every_figure_in_every_format_and_keeps_rcparams(figures, tmp_path):
    before = dict(mpl.rcParams)
    for name, draw in figures.items():
        formats = ("png", "svg", "pdf") if name == "forest" else ("png", "svg")
        paths = plots.save(draw(), tmp_path, name, formats)
        assert paths == [tmp_path / f"{name}.{fmt}" for fmt in formats]
        assert all(p.stat().st_size > 0 for p in paths)
    assert dict(mpl.rcParams) == before  # the style stays inside the functions


def test_saving_one_figure_twice_gives_the_same_bytes(figures, tmp_path):
    fig = figures["val_acc_curves"]()
    first = plots.save(fig, tmp_path, "first")
    again = plots.save(fig, tmp_path, "again")
    for a, b in zip(first, again, strict=True):
        assert a.read_bytes() == b.read_bytes(), a.suffix


def test_the_same_input_gives_the_same_bytes(figures, tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    for folder in ("a", "b"):
        plots.save(figures["forest"](), tmp_path / folder, "forest", ("svg", "pdf"))
    for fmt in ("svg", "pdf"):
        name = f"forest.{fmt}"
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), fmt


def test_save_closes_the_figure(tmp_path):
    import matplotlib.pyplot as plt

    fig = plots.lr_range_test(
        pd.DataFrame({"lr": [1e-4, 1e-3, 1e-2], "loss": [2.0, 1.5, 3.0]}), 1e-3, 1e-3
    )
    assert plt.fignum_exists(fig.number)
    plots.save(fig, tmp_path, "lr_find", ("png",))
    assert not plt.fignum_exists(fig.number)
    assert (tmp_path / "lr_find.png").stat().st_size > 0


def test_val_acc_differences_keep_every_band_inside_the_axes(epochs):
    diffs = paired_differences(epochs, "constant")
    fig = plots.val_acc_differences(diffs, SCHEDS, "constant")
    ax = fig.get_axes()[0]
    lines = [line for line in ax.get_lines() if line.get_linestyle() == "-"]
    assert [to_hex(line.get_color()) for line in lines] == [want(s) for s in SCHEDS[1:]]
    for line, s in zip(lines, SCHEDS[1:], strict=True):
        d = diffs[diffs["schedule"] == s].sort_values("epoch")
        assert line.get_ydata() == pytest.approx(d["mean"].to_numpy())
    low, high = ax.get_ylim()
    assert low <= diffs["ci_low"].min() and diffs["ci_high"].max() <= high and low < 0 < high
    assert any(
        line.get_linestyle() == "--" and set(line.get_ydata()) == {0} for line in ax.get_lines()
    )


def test_lr_robustness_draws_each_range_in_its_schedules_colour(figures):
    ax = figures["lr_robustness"]().get_axes()[0]
    assert ax.get_xscale() == "log"
    assert [t.get_text() for t in ax.get_yticklabels()] == [
        "constant",
        "cosine",
        "cosine (warmup 0.05)",
        "step",
    ]
    solid = [
        line for line in ax.get_lines() if line.get_linewidth() == 7 and line.get_alpha() is None
    ]
    assert [tuple(line.get_xdata()) for line in solid] == [
        (0.1, 0.1),
        (0.03, 0.3),
        (0.03, 1.0),
        (0.1, 0.1),
    ]
    assert [to_hex(line.get_color()) for line in solid] == [
        want(s) for s in ("constant", "cosine", "cosine", "step")
    ]
    crosses = [line for line in ax.get_lines() if line.get_marker() == "x"]
    assert [line.get_xdata()[0] for line in crosses] == [1.0, 3.0]


def test_epoch_axes_tick_whole_epochs_only(epochs):
    """5 epochs would get ticks at 1.5, 2.5, ... by default: an epoch axis ticks integers."""
    diffs = paired_differences(epochs, "constant")
    figures = {
        "val_acc_differences": plots.val_acc_differences(diffs, SCHEDS, "constant"),
        "val_acc_curves": plots.val_acc_curves(epochs, SCHEDS, "constant"),
    }
    for name, fig in figures.items():
        fig.canvas.draw()
        for ax in fig.get_axes():
            low, high = ax.get_xlim()
            ticks = [t for t in ax.get_xticks() if low <= t <= high]
            assert len(ticks) >= 2, name
            assert all(float(t).is_integer() for t in ticks), (name, ticks)


# Readable at the width it is printed at

FIVE = ["constant", "step", "cosine", "cosine_restarts", "polynomial"]
# Eight arms with the longest built-in names, three settings of two knobs each, a dense LR grid.
CROWDED = [
    "constant",
    "cosine",
    "adamw_schedulefree",
    "sgd_schedulefree",
    "inverse_time",
    "cosine_restarts",
    "wsd_linear",
    "one_cycle",
]
KNOBS = [
    f"schedule.warmup_fraction={w}, optimizer.weight_decay={d}"
    for w, d in ((0, 0.0005), (0.2, 0.0005), (0.2, 0.005))
]
DENSE = [1e-4, 3e-4, 1e-3, 3e-3, 0.01, 0.03, 0.1, 0.3, 1.0]
SCENARIOS = {  # names, epochs, settings, LRs
    "five": (FIVE, 20, ["schedule.warmup_fraction=0", "schedule.warmup_fraction=0.2"], DENSE[4:8]),
    "crowded": (CROWDED, 30, KNOBS, DENSE),
    "one_epoch": (FIVE[:3], 1, [""], [0.1]),
}
FIGURES = [
    "val_acc_curves",
    "val_acc_differences",
    "lr_traces",
    "final_acc_per_seed",
    "forest",
    "stability",
    "lr_sensitivity",
    "lr_robustness",
]


def scenario(names: list[str], n_epochs: int, settings: list[str], lrs: list[float]) -> dict:
    """Every figure, by name, as a function of its width, drawn from runs of ``names`` (5 seeds,
    ``n_epochs`` epochs) and an LR grid of ``lrs`` in each of ``settings``."""
    rng = np.random.default_rng(0)
    rows = [
        (f"{s}-{seed}", s, seed, e, min(0.99, 0.4 + 0.02 * e + 0.01 * k + rng.normal(0, 0.01)))
        for k, s in enumerate(names)
        for seed in range(5)
        for e in range(1, n_epochs + 1)
    ]
    ep = pd.DataFrame(rows, columns=["run_id", "schedule", "seed", "epoch", "val_acc"])
    last = ep[ep["epoch"] == n_epochs].rename(columns={"val_acc": "final_val_acc"})
    stab = last.assign(
        best_minus_final=0.004,
        late_regressions=last["seed"] % 3,
        oscillation=0.003,
        epochs_to_target=np.where(last["schedule"] == names[0], np.nan, 15.0),
        target=0.8,
    ).assign(epochs_to_target=lambda f: f["epochs_to_target"].where(f["seed"] != 4))  # k/n
    steps = np.arange(0, 400, 10)
    lr = pd.concat(
        pd.DataFrame({"run_id": f"{s}-0", "schedule": s, "step": steps, "lr": 0.1 / (1 + k)})
        for k, s in enumerate(names)
    )
    others = names[1:]
    diffs = pd.DataFrame(
        {"schedule": others, "mean": np.linspace(-0.01, 0.025, len(others)), "p_holm": 0.01}
    ).assign(ci_low=lambda d: d["mean"] - 0.01, ci_high=lambda d: d["mean"] + 0.01)
    grid = [
        (setting, s, lr_, 0.5 + 0.01 * k)
        for setting in settings
        for k, s in enumerate(names[:3])
        for lr_ in lrs
    ]
    sens = pd.DataFrame(grid, columns=["setting", "schedule", "lr", "mean"])
    sens = sens.assign(ci_low=sens["mean"] - 0.01, ci_high=sens["mean"] + 0.01)
    robust = pd.DataFrame(
        [
            (setting, s, lrs[len(lrs) // 2], lrs[0], lrs[-1], lrs[0], lrs[-1], np.nan)
            for setting in settings
            for s in names[:3]
        ],
        columns=[
            "setting",
            "schedule",
            "best_lr",
            "good_low",
            "good_high",
            "plausible_low",
            "plausible_high",
            "diverged_from",
        ],
    )
    return {
        "val_acc_curves": lambda w: plots.val_acc_curves(ep, names, names[0], width=w),
        "val_acc_differences": lambda w: plots.val_acc_differences(
            paired_differences(ep, names[0]), names, names[0], width=w
        ),
        "lr_traces": lambda w: plots.lr_traces(lr, names, width=w),
        "final_acc_per_seed": lambda w: plots.final_acc_per_seed(last, names, width=w),
        "forest": lambda w: plots.forest(diffs, names[0], "final val acc", width=w),
        "stability": lambda w: plots.stability(stab, names, width=w),
        "lr_sensitivity": lambda w: plots.lr_sensitivity(sens, names, width=w),
        "lr_robustness": lambda w: plots.lr_robustness(robust, names, width=w),
    }


def _outline(text, renderer):
    """The rectangle a text's glyphs fill, rotated with it, shrunk by 5% (``Path``, pixels): the
    box that ``get_window_extent`` gives a slanted label is far larger than the label."""
    from matplotlib.path import Path as Outline

    angle = np.deg2rad(text.get_rotation())
    if angle:
        text.set_rotation(0)
        box = text.get_window_extent(renderer)
        text.set_rotation(np.rad2deg(angle))
        pivot = np.asarray(text.get_transform().transform(text.get_unitless_position()))
    else:
        box = text.get_window_extent(renderer)
        pivot = np.zeros(2)
    corners = box.shrunk(0.95, 0.9).corners()[[0, 1, 3, 2]] - pivot
    turn = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    return Outline(corners @ turn.T + pivot, closed=False)


def _texts(fig):
    """Every text the figure draws (not the tick labels it keeps out of view): ``[(text, font
    size, pixel box, outline)]``."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.text import Text

    renderer = FigureCanvasAgg(fig).get_renderer()
    drawn, draw = [], Text.draw

    def recorded(text, *args, **kwargs):
        if text.get_visible() and text.get_text().strip():
            drawn.append(text)
        return draw(text, *args, **kwargs)

    Text.draw = recorded
    try:
        fig.draw(renderer)
    finally:
        Text.draw = draw
    return [
        (t.get_text(), t.get_fontsize(), t.get_window_extent(renderer), _outline(t, renderer))
        for t in drawn
    ]


@pytest.mark.parametrize("width", [plots.WIDTH, 5.5, 5.0, plots.COLUMN, 3.25])
@pytest.mark.parametrize("case", SCENARIOS)
def test_every_figure_is_readable_at_its_print_width(case, width):
    """From a paper's text width (6.5 in) and NeurIPS's (5.5) down to one column of a two-column
    paper (3.25-3.3), for the five default schedules, eight long-named arms in three settings on
    a dense LR grid, and a run of one epoch: every figure is that wide, no text is smaller than
    7 pt or falls off the figure, and no two texts overlap."""
    figures = scenario(*SCENARIOS[case])
    for name in FIGURES:
        fig = figures[name](width)
        try:
            _readable(fig, width)
        except AssertionError as e:
            raise AssertionError(f"{name}: {e}") from e


def _readable(fig, width: float) -> None:
    texts = _texts(fig)
    assert fig.get_figwidth() == pytest.approx(width)
    canvas = fig.bbox
    assert texts
    for text, size, box, _ in texts:
        assert size >= 7, (text, size)
        assert box.x0 >= canvas.x0 - 1 and box.x1 <= canvas.x1 + 1, (text, box, canvas)
        assert box.y0 >= canvas.y0 - 1 and box.y1 <= canvas.y1 + 1, (text, box, canvas)
    for (a, _, _, outline_a), (b, _, _, outline_b) in itertools.combinations(texts, 2):
        assert not outline_a.intersects_path(outline_b, filled=True), (a, b)


KEPT = sorted(p.parent.parent.name for p in RESULTS.glob("*/data/report.json"))


@pytest.mark.parametrize("width", [plots.WIDTH, plots.COLUMN])
@pytest.mark.parametrize("name", KEPT)
def test_the_committed_reports_figures_are_readable_at_both_widths(
    name, width, tmp_path, monkeypatch
):
    """The committed reports that keep their data, drawn again at a paper's text width and at
    one column: every figure passes the checks above on real runs and real schedule names."""
    from bench import report

    save, seen = plots.save, []

    def check_then_save(fig, folder, stem, formats=("png", "svg")):
        _readable(fig, width)
        seen.append(stem)
        return save(fig, folder, stem, ("png",))

    monkeypatch.setattr(plots, "save", check_then_save)
    report.redraw(RESULTS / name, tmp_path / name, width=width)
    assert {"val_acc_curves", "forest", "stability"} <= {s.split("-")[0] for s in seen}
