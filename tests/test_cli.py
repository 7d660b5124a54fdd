"""Command line: bad input fails before any run and leaves nothing behind; --help helps."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent


def run(cmd, *args, cwd):
    env = {**os.environ, "MLFLOW_TRACKING_URI": ""}
    return subprocess.run(
        [str(BIN / cmd), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize(
    ("cmd", "args", "code", "expected"),
    [
        (
            "bench-train",
            ["-m", "optimizer.lr=0.1,-1", "schedule=step", "schedule.gamma=3"]
            + ["trainer.accelerator=tpu"],
            2,
            [
                "nothing was run",
                "optimizer.lr: got -1; allowed: a number > 0",
                "schedule.gamma: got 3; allowed: a number in (0, 1]",
                "trainer.accelerator: got 'tpu'; allowed: auto, cpu, gpu, cuda, mps",
            ],
        ),
        (
            "bench-train",
            ["schedule=sine"],
            2,
            [
                "schedule=sine: there is no option 'sine' in schedule; did you mean cosine",
                "the options are: constant, cosine, cosine_floor, cosine_restarts, cyclic",
            ],
        ),
        (
            "bench",
            ["optimizer=sgd,lion"],
            2,
            ["optimizer=lion: there is no option 'lion' in optimizer; the options are: adamw"],
        ),
        (
            "bench",
            ["schedule=glob(*,exclude=step)", "trainer.max_epochs=0", "tracking.experiment=.."],
            2,
            [
                "trainer.max_epochs: got 0; allowed: an integer >= 1",
                "[schedule=constant",
                "tracking.experiment: got '..'; allowed: a non-empty name without '/'",
            ],
        ),
        (
            "bench-train",
            ["optimizer=adamw", "+optimizer.momentum=0.9"],
            2,
            ["optimizer.momentum: not an argument of torch.optim.AdamW; allowed: params, lr"],
        ),
        (
            "bench-train",
            ["optimizer.lrr=0.1"],
            2,
            ["unknown key 'optimizer.lrr'", "lr, momentum, nesterov, weight_decay"],
        ),
        (
            "bench-train",
            ["-m", "schedule=step,cosine", "schedule.gama=0.1"],
            2,
            ["unknown key 'schedule.gama'", "milestones, gamma, warmup_fraction"],
        ),
        (
            "bench",
            ["experiment=cifar10_cpu", "data.root=nowhere"],
            2,
            [
                "data.root: CIFAR-10 is not in ",
                "looked for cifar-10-batches-py/ with data_batch_1",
                "data.download=true",
                "data=image_folder data.root=DIR",
            ],
        ),
        (
            "bench-train",
            ["data=image_folder"],
            2,
            ["data.root: missing; set it with data.root=VALUE"],
        ),
        (
            "bench-train",
            ["model=resnet18", "model.weights=absent.pt", "model.stem=tiny"],
            2,
            ["model.stem: got 'tiny'; allowed: imagenet, cifar"],
        ),
        (
            "bench-train",
            ["model=resnet18", "model.weights=absent.pt"],
            2,
            ["model.weights: no file at"],
        ),
        (  # four bad values, one run: every one is named
            "bench-train",
            [
                "+foo=1",
                "schedule.warmup_fraction=1.0",
                "finetune.freeze_epochs=15",
                "+model.num_classes=3",
            ],
            2,
            [
                "finetune.freeze_epochs: got 15 with trainer.max_epochs=15; allowed: fewer epochs",
                "model.num_classes: set from the data",
                "foo: not a key of the config (the nearest: 'model'); allowed: data, model,",
                "schedule.warmup_fraction: got 1.0; allowed: a number in [0, 1)",
            ],
        ),
        (  # the checks against Lightning's classes and this machine, once the values are right
            "bench-train",
            ["trainer.precision=bogus", "trainer.devices=0", "+trainer.max_epoch=3"],
            2,
            [
                "trainer.max_epoch: not an argument of pytorch_lightning.Trainer; did you mean "
                "max_epochs",
                "trainer.precision: got 'bogus'; allowed: auto (bf16-mixed on a CUDA GPU, else",
                'trainer.devices: got 0; allowed: an integer >= 1, -1 (all), "auto", or a list',
            ],
        ),
        (  # the run's length: checked on the data and the schedule of every grid point
            "bench",
            ["data.batch_size=100000", "schedule=cosine_restarts", "schedule.cycles=1000"],
            2,
            [
                "data.batch_size: got 100000 with a training split of 1149 images; allowed: an "
                "integer in [1, 1149] here",
                "schedule.cycles: got 1000 for a run of 15 optimizer steps (1 per epoch x 15 "
                "epochs): with cycle_mult=2 the shortest restart cycle would be 0 steps; allowed: "
                "an integer in [1, 4] here",
                "[schedule=cosine_restarts seed=0 data.batch_size=100000",
            ],
        ),
        (
            "bench-train",
            ["data.val_fraction=0.001"],
            2,
            [
                "data.val_fraction: got 0.001, which splits the 1797 images into 1435 training, "
                "2 validation and 360 test images: the validation split cannot hold one image of "
                "each of the 10 classes (at least 8 classes would have none); allowed: a number "
                "in [0.007, 0.99] here (with data.test_fraction=0.2)"
            ],
        ),
    ],
)
def test_bad_input_names_field_and_allowed_values_and_writes_nothing(
    tmp_path, cmd, args, code, expected
):
    result = run(cmd, *args, cwd=tmp_path)
    assert result.returncode == code, result.stderr
    for text in expected:
        assert text in result.stderr
    assert list(tmp_path.iterdir()) == []  # no mlflow.db, no outputs/ or multirun/


def test_bad_data_or_weights_on_disk_stop_before_any_run(tmp_path, cifar_archive):
    import torch

    from bench import models

    cwd = tmp_path / "work"
    cwd.mkdir()
    small = tmp_path / "small.pt"
    torch.save(models.resnet(10, stem="cifar", width=8).state_dict(), small)
    folder = tmp_path / "images"
    for split, cls in (("train", "a"), ("train", "b"), ("test", "a"), ("test", "b")):
        (folder / split / cls).mkdir(parents=True)
    (folder / "train" / "a" / "0.png").write_bytes(b"")
    cases = [
        (
            [
                "data=cifar10",
                f"data.root={cifar_archive}",
                "data.val_size=20",
                "data.batch_size=16",
                "model=resnet18",
                f"model.weights={small}",
            ],
            "does not fit this model: wrong shape conv1.weight (8, 3, 3, 3) "
            "(the model has (64, 3, 7, 7))",
        ),
        (
            [
                "data=cifar10",
                f"data.root={cifar_archive}",
                "data.classes=[dgo,cat]",
                "model=resnet18",
            ],
            "data.classes: ['dgo'] not in the data; the classes are: airplane, automobile",
        ),
        (
            ["data=image_folder", f"data.root={folder}", "model=resnet18"],
            "class folder(s) train/b, test/a, test/b in",
        ),
    ]
    for args, expected in cases:
        result = run("bench-train", *args, cwd=cwd)
        assert result.returncode == 2, result.stderr
        assert expected in result.stderr
        assert list(cwd.iterdir()) == []


@pytest.mark.parametrize(
    ("cmd", "expected"),
    [
        (
            "bench",
            [
                "run the schedule sweep",
                "constant, step, cosine",
                "<sweep dir>/report/",
                "report.dir=results",
                "mlflow ui",
            ],
        ),
        (
            "bench-train",
            [
                "train with one learning-rate schedule",
                "schedule: constant, cosine",
                "-m schedule=cosine,step",
            ],
        ),
        (
            "bench-report",
            ["--experiment", "--sweep", "--out", "--baseline", "--where", "report.md", "verdicts"],
        ),
        (
            "bench-lr-find",
            [
                "the LR range test",
                "max(steepest, LR of the lowest loss / 10)",
                "lr_find:\n  min_lr: 1.0e-06",
                "./lr_find/<date>/<time>/",
            ],
        ),
    ],
)
def test_help_says_what_it_does_and_where_outputs_go(tmp_path, cmd, expected):
    result = run(cmd, "--help", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    for text in expected:
        assert text in result.stdout
    assert list(tmp_path.iterdir()) == []


def test_report_without_a_store_says_so(tmp_path):
    result = run("bench-report", cwd=tmp_path)
    assert result.returncode == 2
    assert "no MLflow store at sqlite:///" in result.stderr


def test_gpu_asked_for_on_a_machine_without_one(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    result = run("bench-train", "trainer.accelerator=gpu", cwd=tmp_path)
    assert result.returncode == 2
    assert "trainer.accelerator: got 'gpu' but this machine has no CUDA GPU" in result.stderr
    assert list(tmp_path.iterdir()) == []
