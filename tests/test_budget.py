"""The training budget as an axis: its plan, its checks, and the real command on digits."""

import json

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from test_app import run

from bench import budget, schedules, tracking

SETTINGS = {
    "enabled": True,
    "epochs": [4, 8, 16],
    "cooldown": 0.25,
    "schedules": ["cosine"],
    "cooldowns": ["wsd"],
}


def test_the_plan_keeps_every_cooldown_start_and_budget_and_counts_the_saving():
    p = budget.plan(SETTINGS)
    assert p["keep"] == [3, 4, 6, 8, 12, 16]
    assert p["branched_epochs"] == 16 + 1 + 2 + 4  # the source run plus every cooldown
    assert p["straight_epochs"] == 2 * (4 + 8 + 16)  # wsd and constant at every budget
    assert budget.problems(SETTINGS) == []
    [mid] = budget.problems(SETTINGS | {"epochs": [4, 6]})
    assert mid.startswith("budget.cooldown: 0.25 of 6 epochs starts at epoch 4.5")
    assert budget.problems(SETTINGS | {"schedules": ["cosin"]}) == [
        "budget.schedules: got 'cosin'; allowed: " + ", ".join(budget_schedules())
    ]
    # a linear cooldown as well: one more cooldown per budget, one more arm trained straight
    both = budget.plan(SETTINGS | {"cooldowns": ["wsd", "wsd_linear"]})
    assert both["branched_epochs"] == 16 + 2 * (1 + 2 + 4)
    assert both["straight_epochs"] == 3 * (4 + 8 + 16)
    assert both["branched"] == "wsd, wsd_linear and constant"
    [bad] = budget.problems(SETTINGS | {"cooldowns": ["wsd", "cosine"]})
    assert bad.startswith("budget.cooldowns: got ['wsd', 'cosine']; allowed: a list of one or")


def budget_schedules():
    from bench import schedules

    return list(schedules.SCHEDULES)


def test_the_budget_study_branches_wsd_and_constant_and_reports_per_budget(tmp_path):
    result = run(
        "bench",
        "budget.enabled=true",
        "budget.epochs=[2,4]",
        "budget.cooldown=0.5",
        "budget.schedules=[cosine]",
        "budget.cooldowns=[wsd,wsd_linear]",
        "seed=0,1",
        cwd=tmp_path,
        env={"MLFLOW_TRACKING_URI": ""},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    # 4 epochs of source plus two cooldowns of 1 and 2, against 3 x (2 + 4) trained straight
    assert "wsd, wsd_linear and constant took 10 epochs per seed instead of 18" in result.stdout
    store = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = store.get_experiment_by_name("digits").experiment_id
    runs = [r for r in store.search_runs([experiment]) if r.data.tags.get("bench.kind") == "run"]
    made = pd.DataFrame(
        {
            "schedule": r.data.tags["schedule"],
            "epochs": int(r.data.params["trainer.max_epochs"]),
            "branched": tracking.BRANCHED_FROM_TAG in r.data.tags,
            "kept": json.loads(r.data.tags.get(tracking.BRANCHES_TAG, "{}")),
        }
        for r in runs
    )
    # per seed: one source run that kept its branch points, wsd and constant branched at both
    # budgets, cosine trained at both
    sources = made[made["kept"].map(bool)]
    assert len(sources) == 2 and set(sources["epochs"]) == {4}
    assert set(sources["kept"].map(lambda k: tuple(sorted(map(int, k))))) == {(1, 2, 4)}
    branched = made[made["branched"]]
    assert sorted(zip(branched["schedule"], branched["epochs"], strict=True)) == sorted(
        [(s, e) for s in ("constant", "wsd", "wsd_linear") for e in (2, 4)] * 2
    )
    # a branched cooldown trains its own shape from the source's cooldown start: its whole LR
    # trace (the source's steps copied, then its own) is its schedule's formula at every step
    for r in runs:
        name = r.data.tags["schedule"]
        if tracking.BRANCHED_FROM_TAG not in r.data.tags or name == "constant":
            continue
        T, base = int(r.data.params["total_steps"]), float(r.data.params["optimizer.lr"])
        trace = sorted((m.step, m.value) for m in store.get_metric_history(r.info.run_id, "lr"))
        want = [schedules.SCHEDULES[name](t, T, base, decay_fraction=0.5) for t in range(T)]
        assert [s for s, _ in trace] == list(range(T)), name
        assert [v for _, v in trace] == pytest.approx(want), name
    straight = made[~made["branched"] & ~made["kept"].map(bool)]
    assert sorted(zip(straight["schedule"], straight["epochs"], strict=True)) == [
        ("cosine", 2),
        ("cosine", 2),
        ("cosine", 4),
        ("cosine", 4),
    ]
    [report] = tmp_path.glob("multirun/*/*/report/report.md")
    text = report.read_text()
    assert "The training budget as an axis" in text
    accuracy = pd.read_csv(report.parent / "accuracy.csv")
    assert set(accuracy["setting"]) == {"trainer.max_epochs=2", "trainer.max_epochs=4"}
    assert set(accuracy["schedule"]) == {"constant", "wsd", "wsd_linear", "cosine"}
    # the cooldown-shape claim is tested at each budget, with its source
    claims = pd.read_csv(report.parent / "claims.csv")
    shape = claims[claims["claim"] == "a 1-sqrt cooldown beats a linear one"]
    assert len(shape) == 2 and set(shape["source"].str.startswith("Hägele et al.")) == {True}


def test_a_cooldown_that_starts_mid_epoch_is_refused_before_any_run(tmp_path):
    result = run(
        "bench",
        "budget.enabled=true",
        "budget.epochs=[3]",
        "budget.cooldown=0.5",
        cwd=tmp_path,
        env={"MLFLOW_TRACKING_URI": ""},
    )
    assert result.returncode == 2
    assert "budget.cooldown: 0.5 of 3 epochs starts at epoch 1.5" in result.stderr
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "multirun").exists()
