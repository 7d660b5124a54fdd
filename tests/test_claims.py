"""Claim verdicts: held, refuted or inconclusive, never stronger than the data."""

import math

import numpy as np
import pandas as pd
import pytest

from bench.analysis import claims, stats
from bench.analysis.claims import Claim


@pytest.mark.parametrize(
    ("low", "high", "verdict"),
    [
        (0.6, 1.4, "held"),  # inside [0.5, 1.5]
        (0.5, 1.4, "inconclusive"),  # touches the edge
        (0.2, 0.7, "inconclusive"),  # straddles it
        (-0.8, 0.4, "refuted"),  # wholly below
        (1.6, 2.0, "refuted"),  # wholly above
        (math.nan, math.nan, "inconclusive"),  # no interval (one seed)
    ],
)
def test_verdict_against_a_range(low, high, verdict):
    assert claims.verdict(low, high, 0.5, 1.5) == verdict


def test_verdict_against_one_side():
    assert claims.verdict(0.1, 0.9, 0.0, None) == "held"
    assert claims.verdict(-0.9, -0.1, 0.0, None) == "refuted"
    assert claims.verdict(-0.1, 0.9, 0.0, None) == "inconclusive"
    assert claims.verdict(-3.0, -1.0, None, 0.0) == "held"


def frame(diffs: dict[str, list[float]], base=(0.80, 0.90, 0.70, 0.85, 0.75), n_val=1000):
    """Per-run rows: the baseline ``constant`` per seed, each other schedule at a fixed
    per-seed difference from it (fractions)."""
    rows = []
    for seed, b in enumerate(base):
        rows.append({"setting": "", "schedule": "constant", "seed": seed, "final_val_acc": b})
        for schedule, d in diffs.items():
            if seed < len(d):
                rows.append(
                    {
                        "setting": "",
                        "schedule": schedule,
                        "seed": seed,
                        "final_val_acc": b + d[seed],
                    }
                )
    return pd.DataFrame(rows).assign(n_val=n_val, n_test=n_val)


def test_a_clear_gain_in_the_claimed_range_holds():
    runs = frame({"cosine": [0.010, 0.011, 0.009, 0.010, 0.010]})
    [row] = claims.evaluate(runs, [claims.DEFAULT_CLAIMS[0]]).to_dict("records")
    assert row["verdict"] == "held" and row["n_pairs"] == 5
    assert row["diff_mean"] == pytest.approx(1.0)  # points
    assert 0.5 < row["diff_ci_low"] < 1.0 < row["diff_ci_high"] < 1.5
    assert math.isnan(row["seeds_needed"])


def test_a_clear_loss_refutes_a_gain():
    runs = frame({"cosine": [-0.02, -0.021, -0.019, -0.02, -0.02]})
    [row] = claims.evaluate(runs, [claims.DEFAULT_CLAIMS[0]]).to_dict("records")
    assert row["verdict"] == "refuted"


def test_a_tie_at_the_ceiling_is_inconclusive_with_few_seeds():
    """Three seeds, identical accuracies on a small validation set (the digits default): the
    resolution floor keeps the interval from collapsing to a point, so nothing is decided."""
    runs = frame({"cosine": [0.0, 0.0, 0.0]}, base=(0.98, 0.979, 0.982), n_val=288)
    runs = runs[runs["seed"] < 3]
    rows = claims.evaluate(
        runs,
        [
            claims.DEFAULT_CLAIMS[0],
            Claim("cosine matches constant", "cosine", "constant", low=-0.5, high=0.5),
        ],
    )
    assert rows["verdict"].tolist() == ["inconclusive", "inconclusive"]
    assert (rows["seeds_needed"] > 3).all()
    assert (rows["seeds_needed_low"] <= rows["seeds_needed"]).all()
    assert (rows["seeds_needed"] <= rows["seeds_needed_high"]).all()


def test_seeds_needed_follow_the_observed_spread():
    noisy = frame({"cosine": [0.02, -0.01, 0.03, -0.005, 0.015]})
    [row] = claims.evaluate(
        noisy, [Claim("cosine beats constant", "cosine", "constant", low=0)]
    ).to_dict("records")
    assert row["verdict"] == "inconclusive" and row["seeds_needed"] > 5


def test_best_means_the_best_other_schedule():
    runs = frame({"cosine": [0.01] * 5, "step": [0.03] * 5, "sgd_schedulefree": [0.029] * 5})
    [row] = claims.evaluate(
        runs, [c for c in claims.DEFAULT_CLAIMS if c.a == "sgd_schedulefree"]
    ).to_dict("records")
    assert row["b"].startswith("best of the others (step;") and row["verdict"] == "held"


def test_the_best_arm_is_chosen_without_the_seed_it_is_compared_on():
    """Two arms trade places seed by seed: picking "the best" on all seeds, then comparing on the
    same seeds, would always face each seed with the arm that was luckiest there. Chosen on the
    other seeds, seed s meets the arm that is best elsewhere."""
    runs = frame(
        {"step": [0.03, 0.0, 0.0], "cosine": [0.0, 0.03, 0.0], "sgd_schedulefree": [0.0] * 3},
        base=(0.80, 0.80, 0.80),
    )
    per_seed = {}
    for seed in range(3):
        others = runs[(runs["seed"] != seed) & (runs["schedule"] != "sgd_schedulefree")]
        best = others.groupby("schedule")["final_val_acc"].mean().idxmax()
        mine = runs[runs["seed"] == seed].set_index("schedule")["final_val_acc"]
        per_seed[seed] = mine["sgd_schedulefree"] - mine[best]
    [row] = claims.evaluate(
        runs, [c for c in claims.DEFAULT_CLAIMS if c.a == "sgd_schedulefree"]
    ).to_dict("records")
    assert row["diff_mean"] == pytest.approx(100 * np.mean(list(per_seed.values())))
    assert "chosen on the other seeds" in row["b"]
    # Chosen on all seeds, the best (cosine, tied with step) would meet seed 1 where it was
    # lucky: -1 point on average. Chosen elsewhere, no seed meets its own luck: 0.
    assert row["diff_mean"] == pytest.approx(0.0)


def test_verdicts_are_family_wise_with_holm():
    """Each of these claims alone clears its edge at 95%; together, Holm's correction keeps the
    weakest undecided, and its p-value is Holm's adjustment of the claims' own."""
    runs = frame(
        {
            "cosine": [0.010, 0.011, 0.009, 0.010, 0.010],  # well inside +0.5..+1.5
            "cosine_restarts": [0.010, 0.0, 0.020, 0.008, 0.012],  # > 0, barely at 95%
        }
    )
    restarts_vs_constant = Claim("restarts beat constant", "cosine_restarts", "constant", low=0)
    alone = claims.evaluate(runs, [restarts_vs_constant]).iloc[0]
    assert alone["verdict"] == "held" and 0.025 < alone["p_claim"] < 0.05
    both = claims.evaluate(
        runs,
        [
            claims.DEFAULT_CLAIMS[0],
            restarts_vs_constant,
            Claim("restarts beat constant by 2", "cosine_restarts", "constant", low=2),
        ],
    )
    assert both["p_holm"].tolist() == pytest.approx(stats.holm(both["p_claim"]).tolist())
    assert both["verdict"].tolist()[:2] == ["held", "inconclusive"]
    assert both.iloc[1]["diff_ci_low"] > 0  # its own 95% CI clears 0, the family's test not
    assert np.isfinite(both.iloc[1]["seeds_needed"])


def test_p_claim_is_the_level_at_which_the_interval_just_clears():
    d = np.array([0.8, 1.2, 1.0, 0.9, 1.1])  # points
    p = claims.p_decides(d.mean(), d.std(ddof=1), 5, 0.5, 1.5)
    ci = stats.mean_ci(d, confidence=1 - p)
    assert min(ci.low - 0.5, 1.5 - ci.high) == pytest.approx(0.0, abs=1e-9)


def test_sequential_looks_use_a_confidence_sequence_wider_than_the_t_interval():
    runs = frame({"cosine": [0.010, 0.014, 0.007, 0.011, 0.008]})
    claim = [claims.DEFAULT_CLAIMS[0]]
    fixed = claims.evaluate(runs, claim).iloc[0]
    seq = claims.evaluate(runs, claim, looks=[3, 5]).iloc[0]
    assert seq["interval"] == claims.SEQUENCE and fixed["interval"] == claims.CI
    assert seq["diff_ci_low"] < fixed["diff_ci_low"] and seq["diff_ci_high"] > fixed["diff_ci_high"]
    assert fixed["verdict"] == "held" and seq["verdict"] == "inconclusive"
    assert seq["seeds_needed"] > 5


def test_claims_whose_schedules_did_not_run_are_left_out():
    runs = frame({"cosine": [0.01] * 5})
    table = claims.evaluate(runs)
    assert set(table["a"]) == {"cosine"} and set(table["b"]) == {"constant"}


def test_parse_user_claims_and_name_the_bad_field():
    [c] = claims.parse([{"a": "wsd", "b": "cosine", "metric": "test_acc", "low": 0}])
    assert (c.a, c.b, c.metric, c.low, c.high) == ("wsd", "cosine", "test_acc", 0.0, None)
    assert c.expected() == "> 0 pt"
    for bad, message in [
        ({"a": "wsd", "b": "cosine"}, "give low, high or both"),
        ({"a": "wsd", "b": "cosine", "low": 1, "high": 0}, "low=1.0 must be below high=0.0"),
        ({"a": "wsd", "b": "cosine", "metric": "loss", "low": 0}, "report.claims[0].metric='loss'"),
        ({"a": "wsd", "b": "cosine", "lo": 0}, "unknown field(s) ['lo']"),
        ({"a": "wsd", "b": "best", "metric": "epochs_to_peak", "high": 0}, "only for accuracies"),
        ({"a": "wsd", "b": "cosine", "low": float("inf")}, "a finite number"),
    ]:
        with pytest.raises(ValueError, match=None) as e:
            claims.parse([bad])
        assert message in str(e.value)


def test_the_recent_claims_are_tested_where_their_arms_ran_and_name_their_source():
    """Straight to Zero's claim needs the linear and the 10%-floor cosine arms: with them it is
    tested (here held: linear 2 points above on every seed) and carries its paper; without
    them it is left out."""
    both = frame({"linear": [0.03] * 5, "cosine_floor": [0.01] * 5})
    table = claims.evaluate(both)
    [row] = table[table["b"] == "cosine_floor"].to_dict("records")
    assert row["a"] == "linear" and row["verdict"] == "held"
    assert row["diff_mean"] == pytest.approx(2.0)
    assert "Straight to Zero" in row["source"] and "ICLR 2025" in row["source"]
    assert all(c.source for c in claims.DEFAULT_CLAIMS)  # every built-in claim says where from
    without = claims.evaluate(frame({"linear": [0.03] * 5}))
    assert "cosine_floor" not in set(without["b"])
    [mine] = claims.parse([{"a": "linear", "b": "constant", "low": 0, "source": "my notes"}])
    assert mine.source == "my notes"
