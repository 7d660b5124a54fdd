"""The LR range test: the curve's reference points on curves whose answer is known, and
bench-lr-find end to end (files, MLflow run, left out of reports, bad input)."""

import math

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from test_app import run

from bench import lr_find, schedules, tracking


def test_smoothing_is_bias_corrected():
    assert lr_find.smooth([2.0] * 50) == pytest.approx([2.0] * 50)
    beta = 0.5
    got = lr_find.smooth([4.0, 0.0, 2.0], beta=beta)
    avg1 = 0.5 * 4.0
    avg2 = beta * avg1
    avg3 = beta * avg2 + 0.5 * 2.0
    assert got == pytest.approx([avg1 / 0.5, avg2 / 0.75, avg3 / 0.875])
    assert math.isnan(lr_find.smooth([1.0, float("nan"), 1.0])[-1])


def test_steepest_and_lowest_points_of_a_known_curve():
    lrs = np.logspace(-6, 0, 121)
    # A drop centred at 1e-3 (steepest there, against log LR), a minimum at 1e-1, then blow-up.
    x = np.log10(lrs)
    loss = 2.0 - 1.5 / (1 + np.exp(-3 * (x + 3))) + 0.4 * np.maximum(x + 1, 0) ** 2
    assert lr_find.steepest_lr(lrs, loss) == pytest.approx(1e-3, rel=0.13)
    assert lr_find.min_loss_lr(lrs, loss) == pytest.approx(1e-1, rel=0.13)
    loss_with_nan = loss.copy()
    loss_with_nan[-20:] = np.nan
    assert lr_find.min_loss_lr(lrs, loss_with_nan) == pytest.approx(1e-1, rel=0.13)
    assert lr_find.steepest_lr(lrs[:12], loss[:12]) is None  # too few points past the skip


def test_suggestions_per_schedule_family():
    found = lr_find.suggestions(steepest=0.004, min_loss=0.2).set_index("schedule")
    assert set(found.index) == set(schedules.SCHEDULES) | {"sgd_schedulefree", "adamw_schedulefree"}
    assert found.loc["constant", "suggested_lr"] == 0.004
    assert found.loc["sgd_schedulefree", "suggested_lr"] == 0.004
    assert found.loc["cosine", "suggested_lr"] == pytest.approx(0.02)  # min_loss / 10
    assert found.loc["one_cycle", "suggested_lr"] == pytest.approx(0.02)
    # The peak of a decaying schedule is never suggested below the fixed LR.
    low_minimum = lr_find.suggestions(steepest=0.004, min_loss=0.01).set_index("schedule")
    assert low_minimum.loc["cosine", "suggested_lr"] == 0.004


def test_bench_lr_find_end_to_end(tmp_path):
    result = run("bench-lr-find", "lr_find.steps=60", cwd=tmp_path, env={"MLFLOW_TRACKING_URI": ""})
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Suggested base LR (optimizer.lr) per schedule" in result.stdout
    (folder,) = list(tmp_path.glob("lr_find/*/*"))
    curve = pd.read_csv(folder / "lr_find.csv")
    assert len(curve) == 60 and curve["lr"].is_monotonic_increasing
    assert curve["lr"].iloc[0] == pytest.approx(1e-6, rel=0.2)
    assert curve["loss"].tolist() == pytest.approx(list(lr_find.smooth(curve["raw_loss"])))
    suggested = pd.read_csv(folder / "suggestions.csv")
    assert set(suggested["schedule"]) >= set(schedules.SCHEDULES)
    assert (folder / "lr_find.png").stat().st_size > 0

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    (found,) = client.search_runs([client.get_experiment_by_name("digits").experiment_id])
    assert found.info.run_name == "lr-find" and found.info.status == "FINISHED"
    assert found.data.tags[tracking.KIND_TAG] == "lr_find"
    history = client.get_metric_history(found.info.run_id, "lr_find_lr")
    assert sorted(m.step for m in history) == list(range(60))
    assert found.data.metrics["lr_min_loss"] == pytest.approx(
        lr_find.min_loss_lr(curve["lr"], curve["loss"])
    )
    artifacts = {a.path for a in client.list_artifacts(found.info.run_id)}
    assert {"lr_find.csv", "suggestions.csv", "lr_find.png"} <= artifacts
    # Reports read training runs only.
    assert tracking.load_runs(uri, "digits").runs.empty


def test_bench_lr_find_checks_its_range_first(tmp_path):
    result = run(
        "bench-lr-find",
        "lr_find.min_lr=0.1",
        "lr_find.max_lr=0.01",
        "lr_find.steps=0",
        cwd=tmp_path,
    )
    assert result.returncode == 2
    assert (
        "lr_find.max_lr: got 0.01 with lr_find.min_lr=0.1; allowed: a number above" in result.stderr
    )
    assert "lr_find.steps: got 0; allowed: an integer >= 1" in result.stderr
    assert not (tmp_path / "mlflow.db").exists()
