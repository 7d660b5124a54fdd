"""Seeds until decided: the rounds' rules, their error rate under repeated looks, and the real
command."""

import math

import numpy as np
from mlflow.tracking import MlflowClient
from test_app import children, run

from bench import sequential
from bench.analysis import claims, stats

SETTINGS = {"enabled": True, "step": 3, "max_seeds": 11, "max_minutes": None}


def test_rounds_add_seeds_after_the_largest_until_a_budget():
    assert sequential.next_seeds([0, 1, 2], 3) == [0, 1, 2, 3, 4, 5]
    assert sequential.next_seeds([5, 9], 2) == [5, 9, 10, 11]
    assert "every claim in scope was decided after 5" in sequential.stop_reason(0, 5, SETTINGS, 0)
    assert sequential.stop_reason(2, 8, SETTINGS, 0) is None  # 8 + 3 <= 11: one more round
    assert "budget of 11 seeds" in sequential.stop_reason(2, 9, SETTINGS, 0)
    timed = SETTINGS | {"max_minutes": 30}
    assert sequential.stop_reason(1, 5, timed, 29.9) is None
    assert "budget of 30 minutes" in sequential.stop_reason(1, 5, timed, 31)


def test_bad_settings_are_named_with_what_is_allowed():
    assert sequential.problems(SETTINGS, 5) == []
    found = sequential.problems(SETTINGS | {"step": 0, "max_minutes": -1, "rounds": 2}, 5)
    assert found == [
        "until_decided.step: got 0; allowed: an integer >= 1",
        "until_decided.max_minutes: got -1; allowed: null or a number > 0",
        "until_decided.rounds: unknown; the keys are enabled, step, max_seeds, max_minutes",
    ]
    [fewer] = sequential.problems(SETTINGS | {"max_seeds": 3}, 5)
    assert fewer.startswith("until_decided.max_seeds: got 3, fewer than the 5 seeds")


def test_the_mode_keeps_its_error_rate_under_repeated_looks():
    """A claim whose truth lies on its edge ("cosine beats constant", true difference 0): any
    verdict is an error. Looked at after every seed from 3 to 20, the t interval the report
    uses for a fixed set of seeds decides it in far more than 5% of studies; the confidence
    sequence the mode uses, in at most 5%."""
    rng = np.random.default_rng(0)
    looks = list(range(3, 21))
    sims = 1000
    naive = sequential_errors = 0
    for _ in range(sims):
        d = rng.normal(0.0, 1.0, size=looks[-1])
        naive += any(
            claims.p_decides(d[:n].mean(), d[:n].std(ddof=1), n, 0.0, None) <= 0.05 for n in looks
        )
        verdict, _ = claims.sequence_verdict(d, looks, 0.0, None, alpha=0.05)
        sequential_errors += verdict != "inconclusive"
    assert naive / sims > 0.15
    assert sequential_errors / sims <= 0.05


def test_a_real_difference_is_decided_by_the_mode():
    """The price of looking often is width, not blindness: a steady gain is decided."""
    d = np.random.default_rng(1).normal(1.0, 0.4, size=12)  # points, true gain 1.0
    verdict, interval = claims.sequence_verdict(d, [4, 8, 12], 0.5, 1.5, alpha=0.05)
    assert verdict == "held" and 0.5 < interval.low < interval.high < 1.5
    assert math.isinf(stats.confidence_sequence(d, [2], 0.05)[0].high)


def test_seeds_until_decided_runs_rounds_and_reports_its_looks(tmp_path):
    result = run(
        "bench",
        "schedule=constant,cosine",
        "seed=0,1",
        "trainer.max_epochs=1",
        "until_decided.enabled=true",
        "until_decided.step=1",
        "until_decided.max_seeds=3",
        cwd=tmp_path,
        env={"MLFLOW_TRACKING_URI": ""},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "round 2, seeds 0..2 (3)" in result.stdout
    assert "Seeds until decided: stopped: " in result.stdout
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("digits").experiment_id
    runs = children(client.search_runs([experiment]))
    # every cell trained once: round 2 only added seed 2
    assert sorted(r.info.run_name for r in runs) == sorted(
        f"{s}-seed{i}" for s in ("constant", "cosine") for i in range(3)
    )
    [report] = tmp_path.glob("multirun/*/*/report/report.md")
    text = report.read_text()
    assert "**Seeds until decided.**" in text and "after 2, 3 seeds per arm" in text
    assert "until_decided.enabled=true" in text  # the command that reproduces it
    assert "measured [confidence sequence]" in text


def test_seeds_until_decided_refuses_a_budget_below_its_first_round(tmp_path):
    result = run(
        "bench",
        "seed=0,1,2",
        "until_decided.enabled=true",
        "until_decided.max_seeds=2",
        cwd=tmp_path,
        env={"MLFLOW_TRACKING_URI": ""},
    )
    assert result.returncode == 2
    assert "until_decided.max_seeds: got 2, fewer than the 3 seeds" in result.stderr
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "multirun").exists()
