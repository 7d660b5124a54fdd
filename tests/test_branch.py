"""Branching a run from another run's kept checkpoint: warmup-stable-decay's cooldown taken
from a constant-LR run at the right epoch is the same run as warmup-stable-decay trained
straight to that budget."""

import json

import pytest
from conftest import compose_run, train_here

from bench import tracking
from bench.config import ConfigError, validate

KEYS = ("lr", "train_loss_step", "train_loss", "val_acc", "val_loss", "test_acc")


def runs_by_name(store):
    experiment = store.get_experiment_by_name("digits")
    return {r.info.run_name: r for r in store.search_runs([experiment.experiment_id])}


def points(store, run, key):
    return [
        (m.step, m.value)
        for m in sorted(store.get_metric_history(run.info.run_id, key), key=lambda m: m.step)
    ]


def test_a_cooldown_branched_from_the_constant_run_is_the_wsd_run_trained_straight(store, tmp_path):
    # 4 epochs with the last quarter (one epoch) cooling down: WSD's stable phase is the
    # constant run's first 3 epochs, to the step.
    wsd = ("schedule=wsd", "schedule.decay_fraction=0.25", "trainer.max_epochs=4")
    train_here(
        compose_run(
            "schedule=constant",
            "trainer.max_epochs=6",
            "trainer.keep_epochs=[3,4]",
            "run_name=source",
        ),
        tmp_path / "source",
    )
    train_here(compose_run(*wsd, "run_name=straight"), tmp_path / "straight")
    kept = tmp_path / "source" / "branches" / "epoch3.ckpt"
    assert kept.is_file() and (tmp_path / "source" / "branches" / "epoch4.ckpt").is_file()
    train_here(
        compose_run(*wsd, f"branch.checkpoint={kept}", "run_name=branched"),
        tmp_path / "branched",
    )
    runs = runs_by_name(store)
    source, straight, branched = runs["source"], runs["straight"], runs["branched"]
    assert json.loads(source.data.tags[tracking.BRANCHES_TAG]) == {
        "3": str(kept),
        "4": str(tmp_path / "source" / "branches" / "epoch4.ckpt"),
    }
    assert branched.data.tags[tracking.BRANCHED_FROM_TAG] == f"{source.info.run_id} epoch 3"
    assert branched.info.status == "FINISHED"
    # the same LR at every step, and the same metrics at every step and epoch
    T = int(straight.data.params["total_steps"])
    assert 4 * int(straight.data.params["steps_per_epoch"]) == T
    assert branched.data.params["total_steps"] == str(T)
    lr = points(store, branched, "lr")
    assert [s for s, _ in lr] == list(range(T))
    assert lr == points(store, straight, "lr")
    for key in KEYS:
        got, want = points(store, branched, key), points(store, straight, key)
        assert [s for s, _ in got] == [s for s, _ in want], key
        assert [v for _, v in got] == [v for _, v in want], key
    # a constant run of 4 epochs costs nothing either: the source's epoch 4, tested
    four = ("schedule=constant", "trainer.max_epochs=4")
    train_here(compose_run(*four, "run_name=constant4"), tmp_path / "constant4")
    at_four = tmp_path / "source" / "branches" / "epoch4.ckpt"
    train_here(compose_run(*four, f"branch.checkpoint={at_four}", "run_name=free"), tmp_path / "f")
    runs = runs_by_name(store)
    for key in KEYS:
        assert points(store, runs["free"], key) == points(store, runs["constant4"], key), key
    # the history before the branch is the source's, read as one run from its back-dated start
    data = tracking.load_runs(tracking.resolve_uri(None), "digits")
    epochs = data.epochs
    times = epochs[epochs["run_id"] == branched.info.run_id].sort_values("epoch")["time_s"]
    assert times.is_monotonic_increasing and times.iloc[0] >= 0
    # ... but its own training began when it branched, after the straight run had ended: the
    # time a report counts for it is its cooldown's, not the source's first 3 epochs again.
    rows = data.runs.set_index("run_name")
    assert rows.loc["branched", "start_time"] < rows.loc["branched", "trained_from"]
    assert rows.loc["branched", "trained_from"] >= rows.loc["straight", "end_time"]
    assert rows.loc["straight", "trained_from"] == rows.loc["straight", "start_time"]


def test_a_branch_from_a_checkpoint_that_is_not_a_kept_one_is_refused(tmp_path):
    absent = tmp_path / "nothing.ckpt"
    with pytest.raises(ConfigError, match="branch.checkpoint: no whole checkpoint at"):
        validate(compose_run("schedule=wsd", f"branch.checkpoint={absent}"))
    with pytest.raises(ConfigError, match=r"trainer.keep_epochs: got \[3, 20\]"):
        validate(compose_run("trainer.max_epochs=15", "trainer.keep_epochs=[3,20]"))
