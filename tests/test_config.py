"""Config checks: every bad field is named with the value it got and the values it allows."""

import copy

import pytest
from hydra import compose, initialize_config_dir

from bench.cli import CONFIG_DIR
from bench.config import ConfigError, problems, validate
from bench.sweep import run_config


@pytest.fixture(scope="module")
def default():
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return run_config(compose(config_name="train"))


def with_(cfg, **dotted):
    cfg = copy.deepcopy(cfg)
    for key, value in dotted.items():
        *path, last = key.split("__")
        node = cfg
        for part in path:
            node = node[part]
        node[last] = value
    return cfg


def test_defaults_are_valid(default):
    assert problems(default) == []
    validate(default)


@pytest.mark.parametrize(
    ("field", "value", "allowed"),
    [
        ("optimizer__lr", -0.1, "a number > 0"),
        ("optimizer__lr", "fast", "a number > 0"),
        ("optimizer__momentum", 1.0, "a number in [0, 1)"),
        ("optimizer__weight_decay", -1, "a number >= 0"),
        ("trainer__max_epochs", 0, "an integer >= 1"),
        ("trainer__max_epochs", 2.5, "an integer >= 1"),
        ("data__batch_size", 0, "an integer >= 1"),
        ("data__val_fraction", 1.0, "a number in (0, 1)"),
        ("seed", -1, "an integer >= 0"),
        ("seed", True, "an integer >= 0"),
        ("schedule__warmup_fraction", 1.5, "a number in [0, 1]"),
        ("schedule__min_lr_ratio", -0.1, "a number in [0, 1]"),
    ],
)
def test_bad_value_names_field_and_allowed(default, field, value, allowed):
    found = problems(with_(default, **{field: value}))
    name = field.replace("__", ".")
    assert found == [f"{name}: got {value!r}; allowed: {allowed}"]


def test_schedule_knobs_are_checked_per_schedule(default):
    step = with_(default, schedule={"name": "step", "milestones": [0.75, 0.5], "gamma": 2.0})
    found = problems(step)
    assert any(
        p.startswith("schedule.milestones: got [0.75, 0.5]; allowed: a sorted list") for p in found
    )
    assert "schedule.gamma: got 2.0; allowed: a number in (0, 1]" in found

    restarts = with_(default, schedule={"name": "cosine_restarts", "cycles": 0, "cycle_mult": 0.5})
    found = problems(restarts)
    assert "schedule.cycles: got 0; allowed: an integer >= 1" in found
    assert "schedule.cycle_mult: got 0.5; allowed: a number >= 1" in found


def test_knob_of_another_schedule_lists_the_allowed_ones(default):
    found = problems(with_(default, schedule={"name": "cosine", "gamma": 0.1}))
    assert found == [
        "schedule.gamma: not a knob of the 'cosine' schedule; "
        "allowed: warmup_fraction, min_lr_ratio"
    ]


def test_unknown_schedule_name_and_missing_field(default):
    cfg = with_(default, schedule={"name": "sine"})
    del cfg["optimizer"]["lr"]
    found = problems(cfg)
    assert "optimizer.lr: missing; allowed: a number > 0" in found
    assert any(
        p.startswith("schedule.name: got 'sine'; allowed: constant, step, cosine") for p in found
    )


def test_validate_lists_every_problem(default):
    with pytest.raises(ConfigError) as err:
        validate(with_(default, optimizer__lr=0, seed=-2))
    assert len(err.value.problems) == 2
    assert "optimizer.lr: got 0" in str(err.value) and "seed: got -2" in str(err.value)


def test_tracking_uri_is_anchored_in_the_launch_folder(tmp_path, monkeypatch):
    from bench.tracking import resolve_uri

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert resolve_uri(None, cwd=tmp_path) == f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert resolve_uri("sqlite:///runs/x.db", cwd=tmp_path) == f"sqlite:///{tmp_path}/runs/x.db"
    assert resolve_uri("sqlite:////abs/x.db", cwd=tmp_path) == "sqlite:////abs/x.db"
    assert resolve_uri("http://server:5000", cwd=tmp_path) == "http://server:5000"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///env.db")
    assert resolve_uri(None, cwd=tmp_path) == f"sqlite:///{tmp_path / 'env.db'}"


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("report__baseline", "cosin", "report.baseline: got 'cosin'; allowed: constant, step,"),
        ("report__metric", "val_loss", "report.metric: got 'val_loss'; allowed: final_val_acc"),
        ("report__formats", ["gif"], "report.formats: got ['gif']; allowed: a non-empty list"),
        ("report__claims", [{"a": "wsd", "b": "cosine"}], "report.claims[0]: give low, high"),
        (
            "report__claims",
            [{"a": "wds", "b": "cosine", "low": 0}],
            "report.claims[0].a: got 'wds'; allowed: constant,",
        ),
        ("report__claims", "wsd>cosine", "report.claims: got 'wsd>cosine'; allowed: a list"),
    ],
)
def test_report_fields_are_checked_before_any_run(default, field, value, message):
    found = problems(with_(default, **{field: value}))
    assert any(message in p for p in found), found


def test_a_user_claim_naming_best_is_valid(default):
    claim = {
        "text": "wsd is as good as the best",
        "a": "wsd",
        "b": "best",
        "low": -0.5,
        "high": 0.5,
    }
    assert problems(with_(default, report__claims=[claim])) == []
