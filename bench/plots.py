"""The report's seaborn figures, each saved as PNG and SVG."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, never a window

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

# Same input, same bytes: no timestamps in the files and a fixed SVG id salt.
plt.rcParams["svg.hashsalt"] = "bench"
_METADATA = {"png": {"Software": None}, "svg": {"Date": None, "Creator": None}}


def palette(schedules: list[str]) -> dict[str, tuple]:
    return dict(zip(schedules, sns.color_palette("colorblind", len(schedules)), strict=True))


def save(fig: plt.Figure, folder: Path, stem: str) -> list[Path]:
    paths = []
    for fmt in ("png", "svg"):
        path = folder / f"{stem}.{fmt}"
        fig.savefig(path, dpi=150, bbox_inches="tight", metadata=_METADATA[fmt])
        paths.append(path)
    plt.close(fig)
    return paths


def val_acc_curves(epochs: pd.DataFrame, schedules: list[str]) -> plt.Figure:
    """Validation accuracy per epoch: mean over seeds with a +-1 sd band, per schedule."""
    data = epochs.assign(val_acc=epochs["val_acc"] * 100)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    sns.lineplot(
        data=data,
        x="epoch",
        y="val_acc",
        hue="schedule",
        hue_order=schedules,
        palette=palette(schedules),
        errorbar="sd",
        ax=ax,
    )
    ax.set(xlabel="epoch", ylabel="validation accuracy (%)")
    ax.set_title("Validation accuracy per epoch (mean and ±1 sd over seeds)")
    low = data.groupby("epoch")["val_acc"].mean().iloc[len(data["epoch"].unique()) // 3 :].min()
    ax.set_ylim(bottom=max(0.0, low - 5), top=100.5)
    return fig


def lr_traces(lr: pd.DataFrame, schedules: list[str]) -> plt.Figure:
    """The logged learning rate at every optimizer step, one panel per schedule (lowest seed)."""
    first = lr[lr["seed"] == lr.groupby("schedule")["seed"].transform("min")]
    first = first[first["run_id"] == first.groupby("schedule")["run_id"].transform("first")]
    grid = sns.relplot(
        data=first,
        x="step",
        y="lr",
        hue="schedule",
        hue_order=schedules,
        palette=palette(schedules),
        col="schedule",
        col_order=schedules,
        col_wrap=min(3, len(schedules)),
        kind="line",
        height=2.4,
        aspect=1.4,
        legend=False,
    )
    grid.set_titles("{col_name}")
    grid.set_axis_labels("optimizer step", "learning rate")
    grid.figure.suptitle("Logged learning rate per optimizer step", y=1.03)
    return grid.figure


def final_acc_per_seed(per_run: pd.DataFrame, schedules: list[str]) -> plt.Figure:
    """Final validation accuracy of every run (one dot per seed) and the schedule's mean (bar)."""
    data = per_run.assign(
        final_val_acc=per_run["final_val_acc"] * 100, seed=per_run["seed"].astype(str)
    )
    fig, ax = plt.subplots(figsize=(7, 4.5))
    # Seeds side by side (dodge) rather than randomly jittered, so the figure is reproducible.
    sns.stripplot(
        data=data,
        x="schedule",
        y="final_val_acc",
        hue="seed",
        order=schedules,
        dodge=True,
        jitter=False,
        size=7,
        ax=ax,
    )
    sns.pointplot(
        data=data,
        x="schedule",
        y="final_val_acc",
        order=schedules,
        errorbar=None,
        color="black",
        markers="_",
        markersize=25,
        linestyle="none",
        ax=ax,
    )
    ax.set(xlabel="schedule", ylabel="final validation accuracy (%)")
    ax.set_title("Final validation accuracy per seed (bar: mean)")
    ax.legend(title="seed", loc="upper left", bbox_to_anchor=(1.01, 1))
    return fig


def lr_range_test(curve: pd.DataFrame, steepest: float, min_loss: float) -> plt.Figure:
    """The LR range test: smoothed training loss against the LR (log scale), with the LR of the
    steepest descent and of the lowest loss marked."""
    fig, ax = plt.subplots(figsize=(5.5, 3.5), constrained_layout=True)
    ax.plot(curve["lr"], curve["loss"], color="0.2")
    for lr, label, colour in ((steepest, "steepest", "#0072B2"), (min_loss, "min loss", "#D55E00")):
        ax.axvline(lr, color=colour, linestyle="--", label=f"{label}: {lr:.3g}")
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("training loss (smoothed)")
    ax.legend(frameon=False)
    return fig
