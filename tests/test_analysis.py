"""The report's tables from hand-made tidy frames, checked against the textbook formulas."""

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from bench import analysis
from bench.analysis import curves

CURVES = {
    # run_id: (schedule, seed, val_acc per epoch, status, test_acc)
    "c0": ("constant", 0, [0.50, 0.70, 0.80, 0.78, 0.82, 0.80], "FINISHED", 0.79),
    "c1": ("constant", 1, [0.55, 0.72, 0.79, 0.81, 0.80, 0.83], "FINISHED", 0.81),
    "c2": ("constant", 2, [0.52, 0.69, 0.81, 0.80, 0.79, 0.78], "FINISHED", 0.80),
    "k0": ("cosine", 0, [0.60, 0.75, 0.82, 0.84, 0.85, 0.86], "FINISHED", 0.85),
    "k1": ("cosine", 1, [0.58, 0.74, 0.83, 0.85, 0.86, 0.86], "FINISHED", 0.84),
    "k2": ("cosine", 2, [0.61, 0.76, 0.81, 0.84, 0.86, 0.87], "FINISHED", 0.86),
    "k3": ("cosine", 3, [0.30], "FAILED", math.nan),
}


@pytest.fixture
def frames():
    runs = pd.DataFrame(
        [
            {
                "run_id": r,
                "schedule": s,
                "seed": seed,
                "status": st,
                "test_acc": test,
                "setting": "",
                "params": {"n_val": "1000", "n_test": "1000"},
            }
            for r, (s, seed, _, st, test) in CURVES.items()
        ]
    )
    epochs = pd.DataFrame(
        [
            {
                "run_id": r,
                "schedule": s,
                "seed": seed,
                "setting": "",
                "epoch": e + 1,
                "val_acc": a,
                "val_loss": 1 - a,
                "time_s": 10.0 * (e + 1),
            }
            for r, (s, seed, accs, st, _) in CURVES.items()
            if st == "FINISHED"
            for e, a in enumerate(accs)
        ]
    )
    return runs, epochs, analysis.per_run(epochs, runs)


def finals(schedule):
    return np.array([c[2][-1] for c in CURVES.values() if c[0] == schedule and c[3] == "FINISHED"])


def test_late_regressions_count_drops_below_the_running_best_in_the_second_half():
    # running best 0.7 from epoch 3; epochs 4 and 6 sit more than half a point below it
    assert curves.late_regressions([0.5, 0.6, 0.7, 0.65, 0.8, 0.75]) == 2
    assert curves.late_regressions([0.5, 0.4, 0.6, 0.7]) == 0  # the drop is in the first half
    assert curves.late_regressions([0.9]) == 0
    assert curves.late_regressions([0.5, 0.6, 0.8, 0.797, 0.798, 0.796]) == 0  # within 0.5 pt
    assert curves.late_regressions([0.5, 0.6, 0.8, 0.797, 0.798, 0.796], threshold=0.001) == 3


def test_oscillation_is_the_spread_of_changes_in_the_last_quarter():
    acc = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.85, 0.80, 0.86, 0.81])
    # epochs 10..12 (> 9) are the last quarter: changes -0.05, +0.06, -0.05
    assert curves.oscillation(acc) == pytest.approx(np.std([-0.05, 0.06, -0.05], ddof=1))
    assert curves.oscillation(np.linspace(0.1, 0.9, 12)) == pytest.approx(0, abs=1e-12)
    assert math.isnan(curves.oscillation([0.5, 0.6]))


def test_epochs_to_peak_is_first_epoch_near_the_best():
    assert curves.epochs_to_peak([0.5, 0.896, 0.9, 0.85]) == 2
    assert curves.epochs_to_peak([0.5, 0.8, 0.9, 0.85]) == 3
    assert curves.epochs_to_peak([0.5, 0.8, 0.9], tolerance=0.2) == 2


def test_epoch_numbers_count_when_validation_skips_epochs():
    acc = np.array([0.5, 0.7, 0.6, 0.8, 0.7])
    epochs = np.array([2, 4, 6, 8, 10])
    assert curves.epochs_to_peak(acc, epochs) == 8
    assert curves.late_regressions(acc, epochs) == 2  # epochs 6 and 10, both past 10 / 2


def test_a_run_with_a_non_finite_accuracy_or_flagged_by_its_store_is_diverged(frames):
    runs, epochs, _ = frames
    broken = epochs.copy()
    broken.loc[(broken["run_id"] == "k1") & (broken["epoch"] == 6), "val_acc"] = np.nan
    table = analysis.per_run(broken, runs).set_index("run_id")
    assert table["diverged"].tolist() == [False, False, False, False, True, False]
    tagged = runs.assign(diverged=runs["run_id"] == "c0")
    assert analysis.per_run(epochs, tagged).set_index("run_id").loc["c0", "diverged"]


def test_accuracy_table_pairs_by_seed(frames):
    runs, _, per_run = frames
    table = analysis.accuracy_table(per_run, runs)
    final = analysis.headline(table).set_index("schedule")
    assert list(final.index) == ["constant", "cosine"]  # the baseline leads
    x, y = finals("cosine"), finals("constant")
    row = final.loc["cosine"]
    ci = stats.ttest_1samp(x, 0).confidence_interval(0.95)
    assert (row["mean"], row["ci_low"], row["ci_high"]) == pytest.approx(
        (x.mean(), ci.low, ci.high)
    )
    assert row["median"] == pytest.approx(np.median(x)) and row["std"] == pytest.approx(
        x.std(ddof=1)
    )
    paired = stats.ttest_rel(x, y)
    d_ci = paired.confidence_interval(0.95)
    assert (row["diff_mean"], row["diff_ci_low"], row["diff_ci_high"]) == pytest.approx(
        ((x - y).mean(), d_ci.low, d_ci.high)
    )
    assert row["p_t"] == pytest.approx(paired.pvalue)
    assert row["p_holm"] == pytest.approx(paired.pvalue)  # one comparison
    assert row["win_rate"] == 1.0 and row["rank_mean"] == 1.0 and row["n_pairs"] == 3
    assert (
        row["n_runs"] == 3
        and row["n_unfinished"] == 1
        and final.loc["constant", "n_unfinished"] == 0
    )
    assert math.isnan(final.loc["constant", "diff_mean"])
    test = analysis.headline(table, "test_acc").set_index("schedule")
    assert test.loc["cosine", "mean"] == pytest.approx(0.85)
    assert test.loc["cosine", "ci_low"] < 0.85 < test.loc["cosine", "ci_high"]  # test has a CI too
    best = analysis.headline(table, "best_val_acc").set_index("schedule")
    assert best.loc["cosine", "mean"] == pytest.approx(np.mean([0.86, 0.86, 0.87]))


def test_holm_adjusts_over_the_schedules_of_a_setting(frames):
    runs, epochs, per_run = frames
    twin = per_run[per_run["schedule"] == "cosine"].assign(schedule="linear")
    twin = twin.assign(final_val_acc=twin["final_val_acc"] + [0.001, -0.002, 0.003])
    table = analysis.headline(analysis.accuracy_table(pd.concat([per_run, twin]), runs))
    p = table.set_index("schedule")["p_t"]
    expected = analysis.stats.holm([p["cosine"], p["linear"]])
    assert table.set_index("schedule")["p_holm"][["cosine", "linear"]].tolist() == pytest.approx(
        list(expected)
    )


def test_another_baseline_and_a_missing_one(frames):
    runs, _, per_run = frames
    table = analysis.headline(analysis.accuracy_table(per_run, runs, baseline="cosine"))
    assert table["schedule"].tolist() == ["cosine", "constant"]
    assert table.loc[1, "diff_mean"] == pytest.approx(
        (finals("constant") - finals("cosine")).mean()
    )
    absent = analysis.headline(analysis.accuracy_table(per_run, runs, baseline="step"))
    assert absent["diff_mean"].isna().all() and (absent["baseline"] == "").all()


def test_accuracy_intervals_stay_within_0_and_1():
    per_run = pd.DataFrame(
        {
            "setting": "",
            "schedule": "constant",
            "seed": [0, 1, 2],
            "final_val_acc": [0.999, 0.90, 1.0],
            "best_val_acc": [1.0, 1.0, 1.0],
            "test_acc": [0.99, 0.98, 0.999],
            "n_val": 100.0,
            "n_test": 100.0,
        }
    )
    table = analysis.accuracy_table(per_run)
    assert (table["ci_high"] <= 1).all() and (table["ci_low"] >= 0).all()
    assert table.set_index("metric").loc["final_val_acc", "ci_clipped"]


def test_stability_table(frames):
    runs, epochs, per_run = frames
    table = analysis.stability_table(per_run, epochs, runs).set_index("schedule")
    row = table.loc["constant"]
    assert row["seed_range"] == pytest.approx(0.83 - 0.78)
    assert row["final_std"] == pytest.approx(finals("constant").std(ddof=1))
    assert row["best_minus_final_mean"] == pytest.approx(np.mean([0.02, 0.0, 0.03]))
    # below the running best by more than 0.5 pt, epochs 4..6: c0 {4, 6}, c1 {5}, c2 {4, 5, 6}
    assert row["late_regressions_mean"] == pytest.approx((2 + 1 + 3) / 3)
    assert row["epochs_to_peak_mean"] == pytest.approx((5 + 6 + 3) / 3)
    assert table.loc["cosine", "late_regressions_mean"] == 0
    assert table.loc["cosine", "n_failed"] == 1 and row["n_failed"] == 0
    # target: 99% of the best schedule's mean final (cosine's 0.863)
    target = 0.99 * finals("cosine").mean()
    assert row["target"] == pytest.approx(target)
    assert row["n_reached"] == 0 and math.isnan(row["epochs_to_target_mean"])  # never got there
    # each cosine run's first epoch at or above the target
    reached = [
        next(e + 1 for e, a in enumerate(CURVES[r][2]) if a >= target) for r in ("k0", "k1", "k2")
    ]
    assert table.loc["cosine", "n_reached"] == 3
    assert table.loc["cosine", "epochs_to_target_mean"] == pytest.approx(np.mean(reached))
    assert table.loc["cosine", "seconds_to_target_mean"] == pytest.approx(10 * np.mean(reached))


def test_order_puts_baseline_then_preferred_then_the_rest():
    assert analysis.order(["zeta", "cosine", "constant", "alpha"], ["step", "cosine"]) == [
        "constant",
        "cosine",
        "alpha",
        "zeta",
    ]


def pooled(*runs):
    """Finished runs from (schedule, seed, extra params) triples."""
    rows = []
    for i, (schedule, seed, extra) in enumerate(runs):
        knobs = {"schedule.gamma": "0.1"} if schedule == "step" else {"schedule.power": "1.0"}
        params = {"seed": str(seed), "run_name": f"{schedule}-seed{seed}", "optimizer.lr": "0.05"}
        params |= {"schedule.name": schedule, **knobs, **extra}
        rows.append(
            {
                "run_id": f"r{i}",
                "schedule": schedule,
                "seed": seed,
                "status": "FINISHED",
                "start_time": float(i),
                "params": params,
            }
        )
    return pd.DataFrame(rows)


def cells(runs):
    return analysis.latest_per_cell(runs.assign(setting=analysis.setting_labels(runs)))


def test_one_clean_sweep_pools_without_warnings():
    runs = pooled(("step", 0, {}), ("step", 1, {}), ("polynomial", 0, {}), ("polynomial", 1, {}))
    assert analysis.pooling_warnings(runs) == []
    assert cells(runs)[1] == 0


def test_a_repeated_cell_counts_once_by_its_latest_run():
    """The same grid run twice (its report folder and progress display differ): each
    (setting, schedule, seed) counts once, by the most recent run."""
    again = {"report.dir": "/elsewhere", "trainer.enable_progress_bar": "False"}
    runs = pooled(("step", 0, {}), ("step", 1, {}), ("step", 0, again), ("step", 1, again))
    runs.loc[4] = {**runs.loc[0], "run_id": "failed", "seed": 2, "status": "FAILED"}
    kept, dropped = cells(runs)
    assert dropped == 2
    assert sorted(kept["run_id"]) == ["failed", "r2", "r3"]
    other_setting = pooled(("step", 0, {}), ("step", 0, {"optimizer.lr": "0.1"}))
    assert cells(other_setting)[1] == 0


def test_a_param_added_since_does_not_split_a_cell():
    """The same grid before and after bench logged a new param: one cell per seed still."""
    runs = pooled(("step", 0, {}), ("step", 1, {}), ("step", 0, {"optimizer.new": "x"}))
    kept, dropped = cells(runs)
    assert dropped == 1 and sorted(kept["run_id"]) == ["r1", "r2"]


def test_a_failed_cell_run_again_and_finished_is_no_failure():
    runs = pooled(("step", 0, {}), ("step", 1, {}))
    runs.loc[2] = {**runs.loc[0], "run_id": "early", "status": "FAILED", "start_time": -1.0}
    runs.loc[3] = {**runs.loc[0], "run_id": "other", "seed": 5, "status": "KILLED"}
    runs.loc[4] = {
        **runs.loc[0],
        "run_id": "diverged",
        "status": "FAILED",
        "params": {**runs.loc[0, "params"], "optimizer.lr": "1e30"},
    }
    kept, dropped = cells(runs)
    # The failure of another LR is no earlier attempt of a finished cell: it still counts.
    assert dropped == 0 and sorted(kept["run_id"]) == ["diverged", "other", "r0", "r1"]


def test_different_knobs_of_one_schedule_are_named():
    runs = pooled(
        ("step", 0, {}),
        ("step", 1, {"optimizer.lr": "0.1"}),
        ("step", 2, {"schedule.gamma": "0.5"}),
        ("polynomial", 0, {}),
    )
    assert analysis.pooling_warnings(runs) == [
        "runs of one schedule with different knobs are pooled; they differ in schedule.gamma"
    ]


def test_warmup_is_a_setting_so_runs_with_and_without_it_are_not_pooled():
    runs = pooled(
        ("cosine", 0, {"schedule.warmup_fraction": "0.0"}),
        ("cosine", 0, {"schedule.warmup_fraction": "0.2"}),
    )
    labels = set(analysis.setting_labels(runs))
    assert labels == {"schedule.warmup_fraction=0.0", "schedule.warmup_fraction=0.2"}
    assert analysis.pooling_warnings(runs) == []


def test_a_schedule_free_optimizer_with_different_lrs_is_named():
    free = {"optimizer._target_": "schedulefree.SGDScheduleFree"}
    runs = pooled(
        ("sgd_schedulefree", 0, {**free, "optimizer.lr": "0.5"}),
        ("sgd_schedulefree", 0, {**free, "optimizer.lr": "1.0"}),
        ("step", 0, {}),
    )
    assert set(analysis.setting_labels(runs)) == {""}  # its LR is a knob, not a setting
    assert analysis.pooling_warnings(runs) == [
        "runs of one schedule with different knobs are pooled; they differ in optimizer.lr"
    ]
    assert cells(runs)[1] == 0  # two knobs, two cells


def test_a_schedule_none_of_whose_runs_finished_still_has_its_row(frames):
    runs, epochs, per_run = frames
    failed = pd.DataFrame([{**runs.iloc[0], "run_id": "x", "schedule": "step", "status": "FAILED"}])
    runs = pd.concat([runs, failed], ignore_index=True)
    acc = analysis.headline(analysis.accuracy_table(per_run, runs)).set_index("schedule")
    assert acc.loc["step", "n_runs"] == 0 and acc.loc["step", "n_unfinished"] == 1
    assert math.isnan(acc.loc["step", "mean"])
    stab = analysis.stability_table(per_run, epochs, runs).set_index("schedule")
    assert stab.loc["step", ["n_runs", "n_failed"]].tolist() == [0, 1]


def test_settings_name_what_differs_besides_schedule_and_seed():
    runs = pooled(
        ("step", 0, {"n_train": "100"}),
        ("step", 1, {"optimizer.lr": "0.1", "n_train": "200"}),
        ("polynomial", 0, {"schedule.power": "2.0"}),
    )
    assert list(analysis.setting_labels(runs)) == [
        "optimizer.lr=0.05",
        "optimizer.lr=0.1",
        "optimizer.lr=0.05",
    ]
    assert set(analysis.setting_labels(runs, without=("optimizer.lr",))) == {""}
    assert set(analysis.setting_labels(pooled(("step", 0, {}), ("cosine", 1, {})))) == {""}


def test_tables_per_setting_compare_within_the_setting(frames):
    runs, epochs, per_run = frames
    # The same runs again under a second setting, every accuracy 0.1 lower.
    second = per_run.assign(
        run_id=per_run["run_id"] + "b",
        setting="lr=0.2",
        final_val_acc=per_run["final_val_acc"] - 0.1,
    )
    both = pd.concat([per_run.assign(setting="lr=0.1"), second])
    table = analysis.headline(analysis.accuracy_table(both))
    assert table[["setting", "schedule"]].values.tolist() == [
        ["lr=0.1", "constant"],
        ["lr=0.1", "cosine"],
        ["lr=0.2", "constant"],
        ["lr=0.2", "cosine"],
    ]
    alone = analysis.headline(analysis.accuracy_table(per_run))
    for block in (table.iloc[:2], table.iloc[2:]):
        assert block["diff_mean"].tolist() == pytest.approx(
            alone["diff_mean"].tolist(), nan_ok=True
        )
    assert (table.iloc[2:]["mean"] + 0.1).tolist() == pytest.approx(alone["mean"].tolist())
    ranks = analysis.rank_summary(analysis.accuracy_table(both))
    assert ranks.set_index("schedule")["n_best"].to_dict() == {"constant": 0, "cosine": 2}


def test_lr_sensitivity_and_each_schedule_at_its_best_lr():
    rows = []
    # constant peaks at lr 0.1, cosine at 0.2; test accuracy follows validation
    peaks = {"constant": {0.1: 0.80, 0.2: 0.75}, "cosine": {0.1: 0.78, 0.2: 0.83}}
    for schedule, by_lr in peaks.items():
        for lr, acc in by_lr.items():
            for seed, noise in enumerate([0.0, 0.004, -0.003]):
                rows.append(
                    {
                        "run_id": f"{schedule}-{lr}-{seed}",
                        "setting": "",
                        "schedule": schedule,
                        "seed": seed,
                        "lr": lr,
                        "final_val_acc": acc + noise,
                        "test_acc": acc + noise - 0.01,
                        "n_val": 1000.0,
                        "n_test": 1000.0,
                    }
                )
    per_run = pd.DataFrame(rows)
    sens = analysis.lr_sensitivity(per_run).set_index(["schedule", "lr"])
    assert sens.loc[("cosine", 0.2), "mean"] == pytest.approx(0.83 + 0.001 / 3)
    assert sens["near_best"].to_dict() == {
        ("constant", 0.1): True,
        ("constant", 0.2): False,
        ("cosine", 0.1): False,
        ("cosine", 0.2): True,
    }
    fair = analysis.at_best_lr(per_run).set_index("schedule")
    assert fair["lr"].to_dict() == {"constant": 0.1, "cosine": 0.2}
    assert fair.loc["cosine", "diff_mean"] == pytest.approx(0.03)  # on test, at the best LRs
    assert fair.loc["cosine", "metric"] == "test_acc"


def test_lr_robustness_measures_the_good_range_around_the_best_lr_and_its_edge():
    """On a grid of 6 LRs: a wide schedule (within 1 pt of its best over three LRs, the top LR
    diverging) and a narrow one (good at its best LR alone, but the grid cannot tell its
    neighbour apart), with warmup as a second setting that widens the narrow one."""
    lrs = [0.01, 0.03, 0.1, 0.3, 1.0, 3.0]
    curves = {
        ("", "wide"): [0.70, 0.795, 0.80, 0.797, 0.78, 0.10],
        ("", "narrow"): [0.60, 0.70, 0.80, 0.70, 0.60, 0.50],
        ("warmup", "narrow"): [0.60, 0.795, 0.80, 0.795, 0.60, 0.50],
    }
    noise = {"": [0.0, 0.0005, -0.0005], "warmup": [0.0, 0.0005, -0.0005]}
    rows = []
    for (setting, schedule), accs in curves.items():
        for lr, acc in zip(lrs, accs, strict=True):
            for seed, e in enumerate(noise[setting]):
                spread = 0.05 if (schedule == "narrow" and lr == 0.03 and not setting) else 0
                rows.append(
                    {
                        "run_id": f"{setting}{schedule}-{lr}-{seed}",
                        "setting": setting,
                        "schedule": schedule,
                        "seed": seed,
                        "lr": lr,
                        "final_val_acc": acc + e + spread * (seed - 1),
                        "diverged": schedule == "wide" and lr == 3.0,
                        "n_val": 1000.0,
                        "n_test": 1000.0,
                    }
                )
    table = analysis.lr_robustness(pd.DataFrame(rows)).set_index(["setting", "schedule"])
    wide = table.loc[("", "wide")]
    assert (wide["best_lr"], wide["good_low"], wide["good_high"]) == (0.1, 0.03, 0.3)
    assert wide["good_decades"] == pytest.approx(1.0)
    assert wide["diverged_from"] == 3.0 and not wide["open"]
    narrow = table.loc[("", "narrow")]
    assert (narrow["good_low"], narrow["good_high"], narrow["good_decades"]) == (0.1, 0.1, 0.0)
    # its neighbour at 0.03 is 10 points down on average but so noisy that its CI reaches 79%
    assert (narrow["plausible_low"], narrow["plausible_high"]) == (0.03, 0.1)
    assert math.isnan(narrow["diverged_from"])
    warm = table.loc[("warmup", "narrow")]
    assert (warm["good_low"], warm["good_high"]) == (0.03, 0.3)  # warmup widens the range


def test_schedule_free_runs_sit_beside_the_schedules():
    sgd = {"optimizer._target_": "torch.optim.SGD", "optimizer.nesterov": "False"}
    free = {
        "optimizer._target_": "schedulefree.SGDScheduleFree",
        "optimizer.lr": "0.15",
        "optimizer.bn_batches": "50",
    }
    runs = pooled(("step", 0, sgd), ("polynomial", 0, sgd), ("sgd_schedulefree", 0, free))
    assert set(analysis.setting_labels(runs)) == {""}
    runs = pooled(
        ("step", 0, {**sgd, "model.width": "8"}),
        ("step", 0, {**sgd, "model.width": "16"}),
        ("sgd_schedulefree", 0, {**free, "model.width": "8"}),
    )
    assert list(analysis.setting_labels(runs)) == [
        "model.width=8",
        "model.width=16",
        "model.width=8",
    ]


def test_a_schedule_free_optimizers_lr_is_a_setting_where_the_schedules_sweep_it():
    free = {"optimizer._target_": "schedulefree.SGDScheduleFree", "optimizer.lr_scale": "10"}
    runs = pooled(
        *[(k, 0, {"optimizer.lr": lr}) for k in ("step", "polynomial") for lr in ("0.05", "0.1")],
        ("sgd_schedulefree", 0, {**free, "optimizer.lr": "0.05"}),
        ("sgd_schedulefree", 0, {**free, "optimizer.lr": "0.1"}),
    )
    assert list(analysis.setting_labels(runs)) == ["optimizer.lr=0.05", "optimizer.lr=0.1"] * 3
    assert analysis.pooling_warnings(runs) == []  # its LR is no knob any more
    assert cells(runs)[1] == 0
    assert analysis.setting_labels(runs, without=("optimizer.lr",)).eq("").all()
    alone = pooled(
        *[
            ("sgd_schedulefree", s, {**free, "optimizer.lr": lr})
            for s in (0, 1)
            for lr in ("0.05", "0.1")
        ]
    )
    assert list(analysis.setting_labels(alone)) == ["optimizer.lr=0.05", "optimizer.lr=0.1"] * 2
    assert analysis.pooling_warnings(alone) == []  # a second sweep of its own: not pooled


def test_a_param_some_runs_lack_is_compared_among_those_that_have_it():
    runs = pooled(("step", 0, {}), ("step", 1, {"optimizer.wd_coupled": "False"}))
    assert set(analysis.setting_labels(runs)) == {""}
    runs = pooled(
        ("step", 0, {}),
        ("step", 1, {"optimizer.wd_coupled": "False"}),
        ("step", 2, {"optimizer.wd_coupled": "True"}),
    )
    assert list(analysis.setting_labels(runs)) == [
        "",
        "optimizer.wd_coupled=False",
        "optimizer.wd_coupled=True",
    ]


def test_paired_differences_per_epoch_are_t_intervals_of_the_seeds_differences():
    import scipy.stats

    from bench.analysis.curves import paired_differences

    rows = []
    acc = {"constant": [[0.50, 0.60], [0.52, 0.58], [0.49, 0.61]]}
    acc["cosine"] = [[0.51, 0.64], [0.55, 0.63], [0.50, 0.66]]
    for schedule, seeds in acc.items():
        for seed, values in enumerate(seeds):
            for epoch, v in enumerate(values, 1):
                rows.append((schedule, seed, epoch, v))
    rows.append(("cosine", 3, 1, 0.9))  # a seed the baseline lacks: not paired, left out
    epochs = pd.DataFrame(rows, columns=["schedule", "seed", "epoch", "val_acc"])
    found = paired_differences(epochs, "constant").set_index("epoch")
    assert list(found["schedule"]) == ["cosine", "cosine"]
    for epoch in (1, 2):
        d = [100 * (acc["cosine"][s][epoch - 1] - acc["constant"][s][epoch - 1]) for s in range(3)]
        low, high = scipy.stats.t.interval(0.95, 2, np.mean(d), scipy.stats.sem(d))
        row = found.loc[epoch]
        assert row["n"] == 3
        expected = (np.mean(d), low, high)
        assert (row["mean"], row["ci_low"], row["ci_high"]) == pytest.approx(expected)
    assert paired_differences(epochs, "step").empty  # no baseline, nothing to pair with
