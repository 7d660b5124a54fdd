"""Config checks: every bad field is named with the value it got and the values it allows."""

import copy
from pathlib import Path

import numpy as np
import pytest
from conftest import CIFAR_CLASSES, compose_run
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from bench import schedules, spec
from bench.cli import CONFIG_DIR
from bench.config import (
    ConfigError,
    argument_problems,
    known_keys,
    problems,
    resource_problems,
    validate,
)
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


SEEDS = "an integer in [0, 4294967295] (what NumPy's and torch's seeding accept)"


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
        ("seed", -1, SEEDS),
        ("seed", True, SEEDS),
        ("schedule__warmup_fraction", 1.5, "a number in [0, 1)"),
        ("schedule__warmup_fraction", 1.0, "a number in [0, 1)"),  # no step left to schedule
        (
            "data__split_seed",
            -1,
            SEEDS,
        ),
        ("optimizer__lr", float("nan"), "a number > 0"),
        ("optimizer__lr", float("inf"), "a number > 0"),
        ("trainer__max_loss", 0, "null or a number > 0"),
        ("rerun", "yes", "true or false"),
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
        ("report__width", 2.5, "report.width: got 2.5; allowed: a width in inches from 3.25 to 20"),
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


# What the app checks before any run, in the order ``bench.sweep.check_all`` runs them: the
# values and the keys, then (when those are fine) the data and the run's length.


def app_problems(*overrides: str, config_name: str = "train") -> list[str]:
    cfg = compose_run(*overrides, config_name=config_name)
    found = problems(cfg) + argument_problems(cfg)
    return found or resource_problems(cfg)


DIGITS_RUN = "a run of 270 optimizer steps (18 per epoch x 15 epochs)"  # 1149 images / 64


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (
            ["schedule.warmup_fraction=1.0"],
            "schedule.warmup_fraction: got 1.0; allowed: a number in [0, 1)",
        ),
        (
            ["trainer.max_epochs=1", "schedule.warmup_fraction=0.98"],
            "schedule.warmup_fraction: got 0.98 for a run of 18 optimizer steps (18 per epoch x 1 "
            "epoch): the warmup would take round(0.98 * 18) = 18 steps: all of them, none left "
            "for the schedule; allowed: 0 (no warmup) or a number in [0.12, 0.94] here",
        ),
        (
            ["schedule.warmup_fraction=0.003"],
            f"schedule.warmup_fraction: got 0.003 for {DIGITS_RUN}: the warmup would take "
            "round(0.003 * 270) = 1 step: no warmup at all",
        ),
        (
            ["schedule=cosine_restarts", "schedule.cycles=1000"],
            f"schedule.cycles: got 1000 for {DIGITS_RUN}: with cycle_mult=2 the shortest restart "
            "cycle would be 0 steps; allowed: an integer in [1, 9] here",
        ),
        (
            ["schedule=cosine_restarts", "schedule.cycles=300", "schedule.cycle_mult=1"],
            f"schedule.cycles: got 300 for {DIGITS_RUN}: with cycle_mult=1 the shortest restart "
            "cycle would be 0 steps; allowed: an integer in [1, 270] here",
        ),
        (
            ["schedule=cyclic", "schedule.cycles=200"],
            f"schedule.cycles: got 200 for {DIGITS_RUN}: each half-cycle (the rise or the fall) "
            "would be 0.675 steps; allowed: an integer in [1, 135] here",
        ),
        (
            ["schedule=one_cycle", "trainer.max_epochs=1", "data.batch_size=256"],
            "schedule.pct_start: got 0.3 for a run of 5 optimizer steps (5 per epoch x 1 epoch): "
            "its phases would span 0.5, 3.5 steps; allowed: a number in [0.4, 0.8] here",
        ),
        (
            ["schedule=one_cycle", "schedule.three_phase=true", "schedule.pct_start=0.6"],
            f"schedule.pct_start: got 0.6 with three_phase=true for {DIGITS_RUN}: its phases "
            "would span 161, 161, -53 steps; allowed: a number in [0.0075, 0.5] here",
        ),
        (
            ["schedule=wsd", "schedule.decay_fraction=0.005"],
            f"schedule.decay_fraction: got 0.005 for {DIGITS_RUN}: the cooldown would take "
            "round(0.005 * 270) = 1 step, which leaves the LR at base; allowed: 0 (no cooldown) "
            "or a number in [0.0075, 1] here",
        ),
        (
            ["schedule=step", "schedule.milestones=[0.5,1.0]"],
            f"schedule.milestones: got [0.5, 1.0] for {DIGITS_RUN}: milestone 1.0 would fall at "
            "step 270 or later of 270 steps (0..269) and never apply; allowed: fractions up to "
            "0.996 here",
        ),
        (
            ["schedule=one_cycle", "+trainer.max_steps=3"],
            "schedule.pct_start: got 0.3 for a run of 3 optimizer steps (trainer.max_steps): its "
            "phases would span -0.1, 2.1 steps; allowed: none: 3 steps is too short for "
            "one_cycle",
        ),
        (
            ["data.batch_size=100000"],
            "data.batch_size: got 100000 with a training split of 1149 images; allowed: an "
            "integer in [1, 1149] here",
        ),
        (
            ["+trainer.accumulate_grad_batches=100"],
            "trainer.accumulate_grad_batches: got 100 with 18 training batches per epoch (1149 "
            "images in batches of 64); allowed: an integer in [1, 18] here",
        ),
        (
            ["+trainer.limit_train_batches=0.01"],
            "trainer.limit_train_batches: got 0.01 of 18 training batches per epoch, which is "
            "none; allowed: an integer >= 1 or a fraction of at least 0.0556",
        ),
        (
            ["data.val_fraction=0.001"],
            "data.val_fraction: got 0.001, which splits the 1797 images into 1435 training, 2 "
            "validation and 360 test images: the validation split cannot hold one image of each "
            "of the 10 classes (at least 8 classes would have none); allowed: a number in "
            "[0.007, 0.99] here (with data.test_fraction=0.2)",
        ),
        (
            ["data.test_fraction=0.99"],
            "data.test_fraction: got 0.99, which splits the 1797 images into 13 training, 4 "
            "validation and 1780 test images: the validation split cannot hold one image of each "
            "of the 10 classes (at least 6 classes would have none); allowed: a number in "
            "[0.0056, 0.97] here (with data.val_fraction=0.2)",
        ),
        (
            ["+foo=1"],
            "foo: not a key of the config (the nearest: 'model'); allowed: data, model, "
            "optimizer, schedule, trainer, seed, run_name, rerun, finetune, branch, tracking, "
            "report, budget, launch, lr_find",
        ),
        (["+sede=1"], "sede: not a key of the config (the nearest: 'seed'); allowed: data, "),
        (
            ["+finetune.freeze_epoch=2"],
            "finetune.freeze_epoch: not a key of finetune (the nearest: 'freeze_epochs'); "
            "allowed: freeze_epochs, backbone_lr_mult",
        ),
        (
            ["+tracking.experiments=x"],
            "tracking.experiments: not a key of tracking (the nearest: 'experiment'); allowed: "
            "uri, experiment",
        ),
        (
            ["+report.format=[png]"],
            "report.format: not a key of report (the nearest: 'formats'); allowed: after_sweep, ",
        ),
        (
            ["trainer.devices=0"],
            'trainer.devices: got 0; allowed: an integer >= 1, -1 (all), "auto", or a list of '
            "distinct device indices, e.g. [0, 1]",
        ),
        (
            ["trainer.devices=[1,1]"],
            'trainer.devices: got [1, 1]; allowed: an integer >= 1, -1 (all), "auto", or a list',
        ),
        (
            ["trainer.accelerator=cpu", "trainer.devices=-1"],
            'trainer.devices: got -1 on the CPU; allowed: an integer >= 1 (processes) or "auto"',
        ),
        (
            ["trainer.max_epochs=1.5", "seed=-1"],
            "trainer.max_epochs: got 1.5; allowed: an integer >= 1",
        ),
        (
            ["seed=1099511627776"],  # 2**40: NumPy's seeding would fail in every run
            "seed: got 1099511627776; allowed: an integer in [0, 4294967295]",
        ),
        (
            ["tracking.experiment=" + "x" * 300],  # no filesystem names a report folder so
            "tracking.experiment: got 'xxxx",
        ),
        (
            ["optimizer=sgd_nesterov", "optimizer.momentum=0"],
            "optimizer.nesterov: got true with optimizer.momentum=0; allowed: false, or true "
            "with a momentum > 0",
        ),
        (
            ["optimizer=sgd_nesterov", "+optimizer.dampening=0.1"],
            "optimizer.dampening: got 0.1 with optimizer.nesterov=true; allowed: 0",
        ),
        (
            ["+trainer.check_val_every_n_epoch=4"],
            "trainer.check_val_every_n_epoch: got 4 with trainer.max_epochs=15; allowed: a "
            "divisor of 15 (1, 3, 5, 15), so that the last epoch is validated",
        ),
        (["+trainer.max_steps=0"], "trainer.max_steps: got 0; allowed: -1 (no limit) or an"),
        (["trainer.deterministic=sometimes"], "trainer.deterministic: got 'sometimes'; allowed:"),
        (["trainer.devices=2"], "data.on_device: true with trainer.devices=2: batches cut on"),
        (["trainer.max_loss=-1"], "trainer.max_loss: got -1; allowed: null or a number > 0"),
    ],
)
def test_bad_input_is_named_before_any_run(overrides, expected):
    found = app_problems(*overrides)
    assert any(p.startswith(expected) for p in found), found
    if overrides[0].startswith("tracking.experiment="):
        assert found[0].endswith("at most 255 bytes (it names a report folder)")


def test_bad_precision_lists_lightnings_values():
    from lightning_fabric.connector import _PRECISION_INPUT

    found = app_problems("trainer.precision=bogus")
    assert len(found) == 1 and found[0].startswith("trainer.precision: got 'bogus'; allowed: ")
    for value in _literal_values(_PRECISION_INPUT):
        assert str(value) in found[0]
    assert "16-mixed" in found[0] and "bf16-true" in found[0]
    assert app_problems("trainer.precision=16") == []  # an int, as Lightning allows
    assert app_problems("trainer.precision=bf16-mixed") == []
    assert app_problems("trainer.precision=auto") == []  # bench's own: settled per device
    assert app_problems("trainer.precision=16.0")[0].startswith("trainer.precision: got 16.0")


def _literal_values(hint):
    import typing

    if typing.get_origin(hint) is typing.Literal:
        return list(typing.get_args(hint))
    return [v for arg in typing.get_args(hint) for v in _literal_values(arg)]


def test_more_gpus_than_the_machine_has(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # a machine with two GPUs
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    # (Data on the device serves one device: these runs read it through a DataLoader.)
    loader = "data.on_device=false"
    for devices in ("4", "[0,3]"):
        found = app_problems("trainer.accelerator=gpu", f"trainer.devices={devices}", loader)
        assert found == [
            f"trainer.devices: got {4 if devices == '4' else [0, 3]} but this machine has 2 CUDA "
            'GPUs; allowed here: an integer in [1, 2], -1 (all), "auto", or a list of indices in '
            "[0, 1]"
        ]
    for devices in ("1", "2", "-1", "auto", "[1]"):
        assert app_problems("trainer.accelerator=gpu", f"trainer.devices={devices}", loader) == []
    # Two processes: Lightning shards the batches, so the run's length is not checked.
    two = ("trainer.devices=2", loader)
    assert app_problems(*two, "schedule=cyclic", "schedule.cycles=1000") == []
    assert app_problems("trainer.devices=1", "schedule=cyclic", "schedule.cycles=1000") != []


def test_new_keys_of_the_config_have_rules():
    assert app_problems("rerun=true", "trainer.max_loss=null") == []
    assert "max_loss" in spec.OWN_KEYS["trainer"]  # bench's own: not passed to Lightning's Trainer
    assert app_problems("trainer.max_loss=10") == []


def test_unknown_keys_are_read_from_the_config_files():

    known = known_keys()
    for name in ("train", "lr_find"):
        cfg = compose_run(config_name=name)
        assert set(cfg) <= set(known)
        for key, allowed in known.items():
            if allowed is not None and isinstance(cfg.get(key), dict):
                assert set(cfg[key]) <= set(allowed)
    assert known["lr_find"] == ("min_lr", "max_lr", "steps", "early_stop_threshold")
    assert known["data"] is None  # a group: its keys are checked against the class it builds


def test_the_lr_range_test_does_not_check_the_schedule_it_replaces():
    overrides = ["lr_find.steps=10", "schedule=cyclic", "schedule.cycles=1000"]
    assert app_problems(*overrides, config_name="lr_find") == []
    assert app_problems("data.batch_size=5000", config_name="lr_find") == [
        "data.batch_size: got 5000 with a training split of 1149 images; allowed: an integer "
        "in [1, 1149] here"
    ]


@pytest.mark.parametrize("name", list(schedules.SCHEDULES))
def test_every_schedule_fits_the_default_run(name):
    assert app_problems(f"schedule={name}") == []


def cifar_index():
    """The labels of the whole of CIFAR-10 (5,000 training and 1,000 test images per class),
    in place of reading them from disk."""
    from bench.data.images import Index

    return Index(np.arange(50000) % 10, np.arange(10000) % 10, list(CIFAR_CLASSES))


PRESETS = sorted(p.stem for p in (Path(CONFIG_DIR) / "experiment").glob("*.yaml"))
# The second sweep a preset's header gives, which a Hydra grid cannot pair with the first.
SECOND_SWEEP = {"schedulefree_cpu": ("optimizer=sgd_schedulefree", "schedule=constant")}


@pytest.mark.parametrize("preset", PRESETS)
def test_every_preset_passes_every_check(preset, tmp_path, monkeypatch):
    from bench.data import CIFAR10DataModule

    monkeypatch.setattr(
        CIFAR10DataModule, "index", classmethod(lambda cls, root, **kw: cifar_index())
    )
    grid = OmegaConf.load(Path(CONFIG_DIR) / "experiment" / f"{preset}.yaml")
    axis = OmegaConf.select(grid, "hydra.sweeper.params.schedule", default="cosine")
    sweeps = [(f"schedule={schedule}",) for schedule in str(axis).split(",")]
    sweeps += [SECOND_SWEEP[preset]] if preset in SECOND_SWEEP else []
    for overrides in sweeps:
        cfg = compose_run(f"experiment={preset}", *overrides)
        if cfg["data"]["_target_"].endswith("CIFAR10DataModule"):
            cfg["data"]["root"] = str(tmp_path)
        cfg["model"]["weights"] = "none"  # (the weights' own check downloads or needs a run)
        assert problems(cfg) + argument_problems(cfg) + resource_problems(cfg) == [], overrides


def test_image_val_size_names_the_range_that_works(cifar_archive):
    found = app_problems("data=cifar10", f"data.root={cifar_archive}", "data.val_size=5")
    assert found == [
        "data.val_size: got 5, which leaves 145 training and 5 validation images of 150: the "
        "validation split cannot hold one image of each of the 10 classes (at least 5 classes "
        "would have none); allowed: an integer in [10, 140] or a fraction in [0.067, 0.93] here"
    ]
    for fixed in ("data.val_size=10", "data.val_size=140", "data.val_size=0.067"):
        fine = app_problems(
            "data=cifar10", f"data.root={cifar_archive}", fixed, "data.batch_size=8"
        )
        assert fine == [], fixed


def test_an_lr_far_outside_any_that_trains_is_warned_about_not_refused():
    from bench import config as bench_config

    def warned(*overrides):
        return bench_config.warnings(compose_run(*overrides))

    assert warned() == [] and warned("optimizer.lr=5") == []
    [low] = warned("optimizer.lr=1e-30")
    assert low.startswith("optimizer.lr: 1e-30 is far below any LR that trains a network")
    [high] = warned("optimizer.lr=1e5")
    assert "far above" in high
    # schedule-free SGD runs at lr x lr_scale: 2 x 10 = 20 is beyond the range, 0.1 x 10 not
    assert warned("optimizer=sgd_schedulefree", "schedule=constant", "optimizer.lr=0.1") == []
    [scaled] = warned("optimizer=sgd_schedulefree", "schedule=constant", "optimizer.lr=2")
    assert scaled.startswith("optimizer.lr: 2 x lr_scale 10 is far above")
    assert app_problems("optimizer.lr=1e-30") == []  # a warning, never a refusal
