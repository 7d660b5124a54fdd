"""Which runs are compared with which: settings, repeated runs, and what makes pooling
questionable. Pure functions of the runs frame (``bench.tracking.load_runs``: one row per run
with ``run_id, schedule, seed, status, params``, and ``start_time`` where known).

- A **setting** is what the runs differ in besides the schedule (and its knobs) and the seed:
  a base LR, a model, a dataset. Schedules are compared within a setting.
- A **cell** is one (setting, schedule, seed). A cell counts once: when it was run more than
  once (a sweep re-run, two sweeps merged), the most recent finished run stands for it and the
  others are left out, so repeats never pose as extra seeds.
"""

from __future__ import annotations

import pandas as pd

from bench.resume import IGNORED, devices
from bench.schedules import SCHEDULE_FREE

# Params that are expected to differ between the runs of one comparison.
_PER_RUN = ("seed", "run_name", "schedule")
# The schedule's knobs (they belong to the schedule) and Hydra's own keys.
_NOT_SETTINGS = ("schedule.", "hydra.")
# But warmup, which goes on any schedule alike: runs that differ in it are settings apart (an
# axis of its own, as in "does warmup widen the good LR range?"), not one schedule pooled.
_ORTHOGONAL = ("schedule.warmup_fraction",)
# How a run was executed, which no study compares (it may move the last bits of the numbers).
EXECUTION = ("trainer.num_threads",)
# What a run keeps for others, which changes none of its numbers (its identity still tells a
# run that kept its checkpoints from one that did not: only the first can be branched from).
_KEEPS = ("trainer.keep_epochs",)
# Params a run derives from its settings (the data's sizes, the step count).
_DERIVED = (
    "total_steps",
    "steps_per_epoch",
    "num_classes",
    "in_channels",
    "image_size",
    "n_train",
    "n_val",
    "n_test",
    "n_snapshots",
)


def params_of(runs: pd.DataFrame) -> pd.DataFrame:
    """The runs' params, one column each; ``trainer.devices`` as a count (``"[3]"``, the GPU a
    launcher gave a run, is one device like ``"1"``: runs of one setting on several GPUs stay
    one setting)."""
    params = pd.DataFrame(list(runs["params"]), index=runs.index)
    if "trainer.devices" in params:
        params["trainer.devices"] = params["trainer.devices"].map(devices)
    return params


def is_setting(column: str) -> bool:
    """Whether a param is part of what runs compare: not the seed, the schedule and its knobs
    (warmup aside), a derived size, how the run was executed, or a key that cannot change a
    run's numbers (``bench.resume.IGNORED``: where it was recorded, how it was displayed,
    ...)."""
    return (
        column not in _PER_RUN
        and column not in _DERIVED
        and column not in EXECUTION
        and column not in _KEEPS
        and (column in _ORTHOGONAL or not column.startswith(_NOT_SETTINGS))
        and not any(column == key or column.startswith(f"{key}.") for key in IGNORED)
    )


def setting_labels(runs: pd.DataFrame, without: tuple[str, ...] = ()) -> pd.Series:
    """For every run, the values of the settings in which the finished runs differ (other
    than the seed, the schedule and its knobs, and where the runs are recorded), as
    ``"model.width=8, optimizer.lr=0.1"``; ``""`` for all when they share one setting.

    A schedule-free optimizer stands in for a schedule (``bench.schedules.SCHEDULE_FREE``): its
    ``optimizer.*`` params are its knobs, like a schedule's, so its runs sit beside the
    schedules' instead of making a setting of their own; but where the schedules' runs sweep
    the base LR (or there are none), its ``optimizer.lr`` is a setting as theirs is, so each of
    its runs sits beside the schedules at the same base LR. A param that some runs lack (one that
    a later version of bench added, say) is compared among the runs that have it. Params in
    ``without`` are left out of the labels (``optimizer.lr``, when it is an axis of its own)."""
    if runs.empty:
        return pd.Series("", index=runs.index, dtype=object)
    params = _setting_params(runs)
    differ = setting_keys(runs, without)
    if not differ:
        return pd.Series("", index=runs.index, dtype=object)
    return params[differ].apply(
        lambda row: ", ".join(f"{c}={row[c]}" for c in differ if pd.notna(row[c])), axis=1
    )


def _setting_params(runs: pd.DataFrame) -> pd.DataFrame:
    """The runs' params, a schedule-free optimizer's ``optimizer.*`` blanked (they are knobs),
    its base LR aside where the schedules sweep it (``_knob_columns``)."""
    params = params_of(runs)
    free = _schedule_free(params)
    params.loc[free, _knob_columns(runs, params, free)] = None
    return params


def _schedule_free(params: pd.DataFrame) -> pd.Series:
    """Which runs train with a schedule-free optimizer."""
    target = params.get("optimizer._target_", pd.Series(index=params.index, dtype=object))
    return target.isin(SCHEDULE_FREE)


def _knob_columns(runs: pd.DataFrame, params: pd.DataFrame, free: pd.Series) -> list[str]:
    """A schedule-free optimizer's knobs: its ``optimizer.*`` params, but for ``optimizer.lr``
    where the base LR is an axis of the study: where the finished runs of the schedules differ
    in it, or where there are none (schedule-free runs alone, as a study's second sweep). For
    schedule-free SGD ``optimizer.lr`` is the schedules' classical rate, which it scales by
    ``lr_scale``; schedule-free AdamW's is Adam's, beside the SGD schedules a setting apart."""
    keys = [c for c in params if c.startswith("optimizer.")]
    if "optimizer.lr" in keys:
        scheduled = params.loc[~free & (runs["status"] == "FINISHED"), "optimizer.lr"].dropna()
        if scheduled.empty or scheduled.astype(str).nunique() > 1:
            keys.remove("optimizer.lr")
    return keys


def setting_keys(runs: pd.DataFrame, without: tuple[str, ...] = ()) -> list[str]:
    """The params whose values make the settings of ``setting_labels``, sorted: those in which
    the finished runs differ, other than the seed, the schedule and its knobs and ``without``."""
    if runs.empty:
        return []
    params = _setting_params(runs)
    finished = params[runs["status"] == "FINISHED"]
    return sorted(
        c
        for c in params
        if is_setting(c) and c not in without and finished[c].dropna().astype(str).nunique() > 1
    )


def _knobs(runs: pd.DataFrame) -> pd.DataFrame:
    """Each run's knobs as text ("" where a run lacks one): its schedule's (``schedule.*``), and
    for a schedule-free optimizer its ``optimizer.*`` params (``_knob_columns``), which stand in
    for them."""
    params = params_of(runs)
    free = _schedule_free(params)
    knobs = params[[c for c in params if c.startswith("schedule.") and c != "schedule.name"]]
    optimizer = params[_knob_columns(runs, params, free)]
    knobs = pd.concat([knobs, optimizer.where(free, axis=0)], axis=1)
    return knobs.fillna("").astype(str)


def latest_per_cell(runs: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """Each cell counted once: of its finished runs the most recent, and none of its unfinished
    ones once it has finished (a failure run again and finished is no failure); returns the
    runs kept and how many finished runs were left out. A cell is one (``setting``, schedule,
    knobs, seed): ``runs`` needs the ``setting`` column (``setting_labels``), so a param that
    only some runs have never splits a cell that its label does not split."""
    if runs.empty:
        return runs, 0
    keys = _knobs(runs).assign(
        _setting=runs["setting"].astype(str),
        _schedule=runs["schedule"].astype(str),
        _seed=runs["seed"].astype(str),
    )
    key = keys.apply(tuple, axis=1)
    finished = runs["status"] == "FINISHED"
    when = runs["start_time"] if "start_time" in runs else pd.Series(0.0, index=runs.index)
    latest = when[finished].fillna(0).sort_values(kind="stable").index
    repeat = key[latest].duplicated(keep="last")
    dropped = list(repeat[repeat].index)
    # An unfinished run is superseded only by a finished run of exactly its settings: the labels
    # only name what finished runs differ in, and a failed run may differ in more (its LR, say).
    params = params_of(runs)
    exact = key + params[[c for c in params if is_setting(c)]].fillna("").astype(str).apply(
        tuple, axis=1
    )
    superseded = runs.index[~finished & exact.isin(set(exact[finished]))]
    return runs.drop(index=[*dropped, *superseded]), len(dropped)


def pooling_warnings(runs: pd.DataFrame) -> list[str]:
    """What makes pooling these finished runs questionable: runs of one schedule (or one
    schedule-free optimizer) whose knobs differ, pooled as one. (Repeated cells are left out by
    ``latest_per_cell``; runs whose other settings differ are reported per setting, see
    ``setting_labels``.)"""
    finished = runs[runs["status"] == "FINISHED"]
    if finished.empty:
        return []
    knobs = _knobs(finished)
    knobs = knobs[[c for c in knobs if c not in _ORTHOGONAL]]  # warmup: a setting, not pooled
    knobs_differ = sorted(
        {
            c
            for _, group in knobs.groupby(finished["schedule"])
            for c in knobs
            if group.loc[group[c] != "", c].nunique() > 1
        }
    )
    if not knobs_differ:
        return []
    return [
        "runs of one schedule with different knobs are pooled; they differ in "
        + ", ".join(knobs_differ)
    ]
