"""The report's tables from hand-made tidy frames, checked against the textbook formulas."""

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from bench import analysis

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
            {"run_id": r, "schedule": s, "seed": seed, "status": st, "test_acc": test}
            for r, (s, seed, _, st, test) in CURVES.items()
        ]
    )
    epochs = pd.DataFrame(
        [
            {
                "run_id": r,
                "schedule": s,
                "seed": seed,
                "epoch": e + 1,
                "val_acc": a,
                "val_loss": 1 - a,
            }
            for r, (s, seed, accs, st, _) in CURVES.items()
            if st == "FINISHED"
            for e, a in enumerate(accs)
        ]
    )
    return runs, epochs


def finals(schedule):
    return np.array([c[2][-1] for c in CURVES.values() if c[0] == schedule and c[3] == "FINISHED"])


def test_late_regressions_count_only_the_second_half():
    assert analysis.late_regressions(np.array([0.5, 0.6, 0.7, 0.65, 0.8, 0.75])) == 2
    assert analysis.late_regressions(np.array([0.5, 0.4, 0.6, 0.7])) == 0
    assert analysis.late_regressions(np.array([0.9])) == 0


def test_epochs_to_peak_is_first_epoch_near_the_best():
    assert analysis.epochs_to_peak(np.array([0.5, 0.896, 0.9, 0.85])) == 2
    assert analysis.epochs_to_peak(np.array([0.5, 0.8, 0.9, 0.85])) == 3
    assert analysis.epochs_to_peak(np.array([0.5, 0.8, 0.9]), tolerance=0.2) == 2


def test_epoch_numbers_count_when_validation_skips_epochs():
    # validated every second epoch of 8
    epochs, acc = np.array([2, 4, 6, 8]), np.array([0.5, 0.9, 0.85, 0.8])
    assert analysis.epochs_to_peak(acc, epochs) == 4
    assert analysis.late_regressions(acc, epochs) == 2  # epochs 6 and 8, both past 8 / 2
    # validated at epochs 1, 2, 3 and 10: the drop at epoch 3 is early (3 <= 10 / 2),
    # although it is the third of four points
    irregular, acc = np.array([1, 2, 3, 10]), np.array([0.5, 0.6, 0.55, 0.7])
    assert analysis.late_regressions(acc, irregular) == 0
    assert analysis.late_regressions(acc) == 1


def test_accuracy_table_matches_t_intervals(frames):
    runs, epochs = frames
    table = analysis.accuracy_table(runs, epochs).set_index("schedule")
    assert list(table.index) == ["constant", "cosine"]  # the baseline leads

    for schedule in ("constant", "cosine"):
        x = finals(schedule)
        row = table.loc[schedule]
        half = stats.t.ppf(0.975, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x))
        assert row["n_runs"] == 3
        assert row["final_val_acc_mean"] == pytest.approx(x.mean())
        assert row["final_val_acc_std"] == pytest.approx(x.std(ddof=1))
        assert row["final_val_acc_ci_low"] == pytest.approx(x.mean() - half)
        assert row["final_val_acc_ci_high"] == pytest.approx(x.mean() + half)

    # Welch: difference of means with Welch-Satterthwaite degrees of freedom.
    x, y = finals("cosine"), finals("constant")
    vx, vy = x.var(ddof=1) / len(x), y.var(ddof=1) / len(y)
    df = (vx + vy) ** 2 / (vx**2 / (len(x) - 1) + vy**2 / (len(y) - 1))
    half = stats.t.ppf(0.975, df) * math.sqrt(vx + vy)
    row = table.loc["cosine"]
    assert row["diff_vs_constant_mean"] == pytest.approx(x.mean() - y.mean())
    assert row["diff_vs_constant_ci_low"] == pytest.approx(x.mean() - y.mean() - half)
    assert row["diff_vs_constant_ci_high"] == pytest.approx(x.mean() - y.mean() + half)
    assert math.isnan(table.loc["constant", "diff_vs_constant_mean"])

    assert row["best_val_acc_mean"] == pytest.approx(np.mean([0.86, 0.86, 0.87]))
    assert row["test_acc_mean"] == pytest.approx(0.85)
    assert row["n_unfinished"] == 1 and table.loc["constant", "n_unfinished"] == 0


def test_accuracy_table_without_baseline_or_with_one_run(frames):
    runs, epochs = frames
    only_cosine = runs[runs["schedule"] == "cosine"]
    table = analysis.accuracy_table(only_cosine, epochs[epochs["schedule"] == "cosine"])
    assert table["diff_vs_constant_mean"].isna().all()

    one = runs[runs["run_id"].isin(["c0", "k0"])]
    table = analysis.accuracy_table(one, epochs[epochs["run_id"].isin(["c0", "k0"])])
    assert table["n_runs"].tolist() == [1, 1]
    assert table["final_val_acc_ci_low"].isna().all()
    assert table.loc[1, "diff_vs_constant_mean"] == pytest.approx(0.86 - 0.80)


def test_stability_table(frames):
    _, epochs = frames
    table = analysis.stability_table(epochs).set_index("schedule")
    row = table.loc["constant"]
    assert row["seed_range"] == pytest.approx(0.83 - 0.78)
    assert row["best_minus_final_mean"] == pytest.approx(np.mean([0.02, 0.0, 0.03]))
    # second half = epochs 4-6: c0 drops at 4 and 6, c1 at 5, c2 at 4, 5 and 6
    assert row["late_regressions_mean"] == pytest.approx((2 + 1 + 3) / 3)
    # first epoch within 0.005 of the best: c0 -> 5, c1 -> 6, c2 -> 3
    assert row["epochs_to_peak_mean"] == pytest.approx((5 + 6 + 3) / 3)
    assert table.loc["cosine", "late_regressions_mean"] == 0


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
                "params": params,
            }
        )
    return pd.DataFrame(rows)


def test_one_clean_sweep_pools_without_warnings():
    runs = pooled(("step", 0, {}), ("step", 1, {}), ("polynomial", 0, {}), ("polynomial", 1, {}))
    assert analysis.pooling_warnings(runs) == []


def test_repeated_runs_are_flagged():
    runs = pooled(("step", 0, {}), ("step", 0, {}), ("step", 1, {}))
    assert analysis.pooling_warnings(runs) == [
        "1 run(s) repeat the schedule, seed and settings of another run; each counts as a "
        "separate sample, which narrows the intervals"
    ]


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
    assert set(analysis.setting_labels(pooled(("step", 0, {}), ("cosine", 1, {})))) == {""}


def test_tables_per_setting_compare_within_the_setting(frames):
    runs, epochs = frames
    # The same curves again under a second setting, every accuracy 0.1 lower.
    runs2 = runs.assign(run_id=runs["run_id"] + "b", test_acc=runs["test_acc"] - 0.1)
    epochs2 = epochs.assign(run_id=epochs["run_id"] + "b", val_acc=epochs["val_acc"] - 0.1)
    both_runs = pd.concat([runs.assign(setting="lr=0.1"), runs2.assign(setting="lr=0.2")])
    both_epochs = pd.concat([epochs.assign(setting="lr=0.1"), epochs2.assign(setting="lr=0.2")])
    table = analysis.accuracy_table(both_runs, both_epochs)
    assert list(table.columns[:2]) == ["setting", "schedule"]
    assert table[["setting", "schedule"]].values.tolist() == [
        ["lr=0.1", "constant"],
        ["lr=0.1", "cosine"],
        ["lr=0.2", "constant"],
        ["lr=0.2", "cosine"],
    ]
    alone = analysis.accuracy_table(runs, epochs)
    first, second = table.iloc[:2].reset_index(drop=True), table.iloc[2:].reset_index(drop=True)
    diff = "diff_vs_constant_mean"
    assert first[diff].tolist() == pytest.approx(alone[diff].tolist(), nan_ok=True)
    assert second[diff].tolist() == pytest.approx(alone[diff].tolist(), nan_ok=True)
    shifted = second["final_val_acc_mean"] + 0.1
    assert shifted.tolist() == pytest.approx(alone["final_val_acc_mean"].tolist())
    stability = analysis.stability_table(both_epochs)
    assert stability["setting"].tolist() == ["lr=0.1", "lr=0.1", "lr=0.2", "lr=0.2"]


def test_schedule_free_runs_sit_beside_the_schedules():
    sgd = {"optimizer._target_": "torch.optim.SGD", "optimizer.nesterov": "False"}
    free = {
        "optimizer._target_": "schedulefree.SGDScheduleFree",
        "optimizer.lr": "0.15",
        "optimizer.bn_batches": "50",
    }
    runs = pooled(("step", 0, sgd), ("polynomial", 0, sgd), ("sgd_schedulefree", 0, free))
    assert set(analysis.setting_labels(runs)) == {""}
    # A setting that really differs still splits them, schedule-free runs included.
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
