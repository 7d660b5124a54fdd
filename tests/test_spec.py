"""The checked run: one frozen description that the run, the schedule and Lightning consume,
made once by the check and handed to a sweep's jobs; and a package without import circles."""

import ast
import dataclasses
from pathlib import Path

import pytest
import pytorch_lightning as pl
from conftest import compose_run

from bench import config as bench_config
from bench import devices, run, schedules, sweep
from bench.config import validate

PACKAGE = Path(bench_config.__file__).parent


def test_the_check_returns_a_frozen_run_cut_into_what_each_consumer_takes():
    config = compose_run(
        "optimizer=sgd_schedulefree",
        "schedule=constant",
        "schedule.warmup_fraction=0.1",
        "trainer.max_loss=50",
    )
    checked = validate(config)
    with pytest.raises(dataclasses.FrozenInstanceError):
        checked.steps = 1
    with pytest.raises(TypeError):
        checked.optimizer["lr"] = 1.0
    # bench's own keys are apart from the arguments of the class each node builds
    assert "max_loss" in checked.own["trainer"] and "max_loss" not in checked.trainer
    assert "label_smoothing" in checked.own["model"] and "label_smoothing" not in checked.model
    assert "bn_batches" in checked.own["optimizer"] and "bn_batches" not in checked.optimizer
    # the optimizer runs at lr x lr_scale; the scale is spent
    scale = config["optimizer"]["lr_scale"]
    assert checked.optimizer["lr"] == pytest.approx(config["optimizer"]["lr"] * scale)
    assert "lr_scale" not in checked.own["optimizer"]
    # the schedule: its knobs without the name, and what the run compares
    assert checked.schedule.arm == "sgd_schedulefree"
    assert "name" not in checked.schedule.knobs
    reference = schedules.make("constant", base=0.3, warmup_fraction=0.1)
    assert [checked.schedule.lr(0.3)(t, 50) for t in range(50)] == [
        reference(t, 50) for t in range(50)
    ]
    # the config as recorded is the config checked, and changing a copy leaves it alone
    plain = checked.plain()
    assert plain == config
    plain["seed"] = 99
    assert checked.seed == config["seed"]


def test_the_run_length_counted_by_the_check_is_lightnings(tmp_path):
    """The check counts T once; Lightning's own count agrees on an awkward run (a fraction of
    the batches, gradient accumulation that does not divide them), and a count that differs
    stops the run before its first step."""
    config = compose_run(
        "trainer.max_epochs=2",
        "+trainer.limit_train_batches=0.7",
        "+trainer.accumulate_grad_batches=3",
    )
    checked = devices.settle(validate(config))  # precision=auto etc. settled for this machine
    # digits: 1078 training images in batches of 64 -> 17 batches, 0.7 of them 11, ceil(11/3)=4
    assert checked.steps == 8
    datamodule, module = run.build(checked)
    quiet = {"logger": False, "enable_checkpointing": False, "enable_progress_bar": False}
    trainer = pl.Trainer(**(dict(checked.trainer) | quiet), default_root_dir=tmp_path)
    trainer.fit(module, datamodule=datamodule)
    assert module.total_steps == trainer.global_step == 8

    wrong = dataclasses.replace(checked, steps=9)
    datamodule, module = run.build(wrong)
    trainer = pl.Trainer(**(dict(wrong.trainer) | quiet), default_root_dir=tmp_path)
    with pytest.raises(RuntimeError, match="checked against T=9 optimizer steps"):
        trainer.fit(module, datamodule=datamodule)


def test_a_sweeps_job_takes_its_checked_run_without_checking_again(monkeypatch):
    config = compose_run("schedule=cosine")
    key = run.identity(config)
    record = sweep.Sweep("sqlite:///x.db", "1", "digits", "parent", 1, steps={key: 123})

    def no_check(cfg):
        raise AssertionError("checked again")

    monkeypatch.setattr(bench_config, "validate", no_check)
    monkeypatch.setattr(sweep, "_checked", {})
    checked = sweep.checked(config, record)
    assert checked.steps == 123 and checked.schedule.name == "cosine"
    # a job its sweep did not check (a sweeper that picks points as it goes) is checked
    with pytest.raises(AssertionError, match="checked again"):
        sweep.checked(compose_run("schedule=step"), record)


def _imports(path: Path) -> set[str]:
    """The ``bench`` modules a module imports, at its top or inside a function (a late import
    only puts off a circle)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.split(".")[0] != "bench":
                continue
            found.add(node.module)
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                if _path(sub) is not None:
                    found.add(sub)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "bench"}
    return found


def _path(module: str) -> Path | None:
    base = PACKAGE.parent.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def test_the_package_has_no_import_circle():
    modules = {
        ".".join(p.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__")
        for p in PACKAGE.rglob("*.py")
        if "conf" not in p.parts
    }
    graph = {}
    for module in modules:
        targets = _imports(_path(module))
        # importing bench.a.b imports its package bench.a first; a module's own packages are
        # under way when it runs (``from bench.a import b`` inside bench.a.c reads b itself)
        ancestors = {".".join(module.split(".")[:i]) for i in range(1, module.count(".") + 1)}
        graph[module] = (
            (
                targets
                | {".".join(t.split(".")[:i]) for t in targets for i in range(2, t.count(".") + 1)}
            )
            - {module}
            - ancestors
        )
    state: dict[str, int] = {}

    def visit(module, trail):
        state[module] = 1
        for nxt in sorted(graph.get(module, ())):
            assert state.get(nxt) != 1, f"import circle: {' -> '.join([*trail, nxt])}"
            if nxt not in state:
                visit(nxt, [*trail, nxt])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert "bench.config" not in graph["bench.models.resnet"]
