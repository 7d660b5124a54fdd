"""Every schedule is one function plus one YAML file: the config option, its knobs and their
defaults follow the function, and the config check knows every knob."""

from pathlib import Path

import pytest
from conftest import compose_run
from omegaconf import OmegaConf

from bench import schedules
from bench.cli import CONFIG_DIR
from bench.config import problems

FILES = sorted((Path(CONFIG_DIR) / "schedule").glob("*.yaml"))


def test_one_yaml_file_per_schedule():
    assert sorted(p.stem for p in FILES) == sorted(schedules.SCHEDULES)


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_yaml_names_the_function_and_has_its_knobs_and_defaults(path):
    node = OmegaConf.to_container(OmegaConf.load(path))
    assert node.pop("name") == path.stem
    defaults = {
        k: list(v) if isinstance(v, tuple) else v for k, v in schedules.knobs(path.stem).items()
    }
    assert node == defaults


@pytest.mark.parametrize("name", list(schedules.SCHEDULES))
def test_every_schedule_composes_and_passes_the_check(name):
    cfg = compose_run(f"schedule={name}")
    assert cfg["schedule"]["name"] == name
    assert problems(cfg) == []


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("schedule.decay_shape=sqrt", "schedule.decay_shape: got 'sqrt'; allowed: linear, 1-sqrt"),
        ("schedule.pct_start=1.0", "schedule.pct_start: got 1.0; allowed: a number in (0, 1)"),
        ("schedule.mode=exp_range", "schedule.mode: got 'exp_range'; allowed: triangular"),
        ("schedule.gamma=1.5", "schedule.gamma: got 1.5; allowed: null or a number in (0, 1]"),
    ],
)
def test_new_knobs_are_checked(override, expected):
    name = {
        "decay_shape": "wsd",
        "pct_start": "one_cycle",
        "mode": "cyclic",
        "gamma": "exponential",
    }[override.split(".")[1].split("=")[0]]
    found = problems(compose_run(f"schedule={name}", override))
    assert len(found) == 1 and found[0].startswith(expected)
