"""A user's own model and data: the README's examples run as written, and a component that
breaks its contract is refused before any run (bench.data.contract, bench.models)."""

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import compose_run
from mlflow.tracking import MlflowClient
from PIL import Image

from bench.config import ConfigError, validate

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def readme_section() -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index("## Your own model and data")
    return text[start : text.index("\n## ", start + 1)]


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", readme_section(), flags=re.S)


def shell(command: str, cwd: Path, timeout: int = 400) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    env.pop("MLFLOW_TRACKING_URI", None)
    return subprocess.run(
        ["bash", "-c", command], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


def runs(folder: Path, experiment: str):
    client = MlflowClient(f"sqlite:///{folder / 'mlflow.db'}")
    found = client.get_experiment_by_name(experiment)
    if found is None:
        return []
    return [
        r for r in client.search_runs([found.experiment_id]) if "mlflow.parentRunId" in r.data.tags
    ]


def report(folder: Path) -> str:
    [path] = folder.glob("multirun/*/*/report/report.md")
    return path.read_text()


def test_the_readme_runs_a_torchvision_model_by_name_on_an_image_folder(tmp_path):
    rng = np.random.default_rng(0)
    for split, n in (("train", 15), ("test", 5)):
        for c in ("cat", "dog", "frog"):
            folder = tmp_path / "my_images" / split / c
            folder.mkdir(parents=True)
            for i in range(n):
                pixels = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"{i}.png")
    [command, _] = blocks("bash")
    done = shell(command, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    finished = runs(tmp_path, "my_images")
    assert len(finished) == 4 and {r.info.status for r in finished} == {"FINISHED"}
    assert {r.data.params["num_classes"] for r in finished} == {"3"}
    [weights] = list(tmp_path.glob("multirun/*/*/0/weights.pt"))
    state = torch.load(weights, weights_only=True)
    assert tuple(state["fc.weight"].shape) == (3, 512)  # ResNet-18's head, sized for 3 classes
    assert "| cosine" in report(tmp_path)


def test_the_readme_runs_a_users_datamodule_and_module_from_a_file_of_their_own(tmp_path):
    code = blocks("python")[0]  # the file; the second block shows one decorator
    (tmp_path / "wine.py").write_text(code)
    [_, command] = blocks("bash")
    done = shell(command, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    finished = runs(tmp_path, "wine")
    assert len(finished) == 6 and {r.info.status for r in finished} == {"FINISHED"}
    params = finished[0].data.params
    assert (params["num_classes"], params["n_train"], params["n_test"]) == ("3", "100", "38")
    assert "in_channels" not in params  # the data does not say it: not recorded
    text = report(tmp_path)
    assert "cosine beats constant" in text and "| constant" in text


def test_every_feature_works_with_a_users_components(tmp_path):
    """Schedule-free SGD (BatchNorm recalibration on a module without augmented=), two-stage
    fine-tuning with the head found as the last Linear, snapshot ensembles, label smoothing."""
    code = blocks("python")[0]  # the file; the second block shows one decorator
    (tmp_path / "wine.py").write_text(code)
    own = "data=custom data._target_=wine.WineData model=custom model._target_=wine.MLP"
    done = shell(
        f"bench-train {own} optimizer=sgd_schedulefree schedule=constant trainer.max_epochs=3 && "
        f"bench-train {own} schedule=cosine_restarts trainer.max_epochs=6 "
        "finetune.freeze_epochs=2 model.label_smoothing=0.1",
        tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("digits")
    finished = {r.data.tags["schedule"]: r for r in client.search_runs([experiment.experiment_id])}
    assert set(finished) == {"sgd_schedulefree", "cosine_restarts"}
    assert {r.info.status for r in finished.values()} == {"FINISHED"}
    metrics = finished["cosine_restarts"].data.metrics
    assert {"val_acc_ensemble", "test_acc_ensemble"} <= set(metrics)


USER_MODULE = """
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
import pytorch_lightning as pl
from bench.rules import COUNT, checked


class Blobs(pl.LightningDataModule):
    num_classes = 3

    def __init__(self, labels_from: int = 0):
        super().__init__()
        self.labels_from = labels_from

    def setup(self, stage=None):
        g = torch.Generator().manual_seed(0)
        x = torch.randn(60, 5, generator=g)
        y = torch.arange(60) % 3 + self.labels_from
        self.data = TensorDataset(x, y)

    def train_dataloader(self):
        return DataLoader(self.data, batch_size=16)

    val_dataloader = test_dataloader = train_dataloader


class NoClasses(Blobs):
    num_classes = None


class NoTestSplit(Blobs):
    test_dataloader = None


def mlp(num_classes):
    return nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, num_classes))


def five_outputs(num_classes):
    return nn.Linear(5, 5)


def wrong_inputs(num_classes):
    return nn.Linear(7, num_classes)


@checked(hidden=COUNT)
def wide(num_classes, hidden=8):
    return nn.Sequential(nn.Linear(5, hidden), nn.ReLU(), nn.Linear(hidden, num_classes))
"""


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    (tmp_path / "user_parts.py").write_text(textwrap.dedent(USER_MODULE))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "user_parts", raising=False)
    return tmp_path


def own(data: str = "Blobs", model: str = "mlp", *more: str) -> dict:
    return compose_run(
        "data=custom",
        f"data._target_=user_parts.{data}",
        "model=custom",
        f"model._target_=user_parts.{model}",
        *more,
    )


@pytest.mark.parametrize(
    ("data", "model", "more", "expected"),
    [
        ("NoTestSplit", "mlp", (), "data._target_=user_parts.NoTestSplit: has no test_dataloader"),
        ("NoClasses", "mlp", (), "data._target_=user_parts.NoClasses: has no num_classes after"),
        (
            "Blobs",
            "mlp",
            ("+data.labels_from=1",),
            "its labels must be class indices in [0, 2] (num_classes=3), one per input; the "
            "first training batch has torch.int64 of shape (16,), from 1 to 3",
        ),
        (
            "Blobs",
            "five_outputs",
            (),
            "model._target_=user_parts.five_outputs: its output for a batch of 2 is (2, 5), but "
            "the data has 3 classes",
        ),
        (
            "Blobs",
            "wrong_inputs",
            (),
            "model._target_=user_parts.wrong_inputs: the model fails on a batch of the data "
            "(inputs (2, 5)): RuntimeError",
        ),
        (
            "Blobs",
            "wide",
            ("+model.hidden=0",),
            "model.hidden: got 0; allowed: an integer >= 1",
        ),
        (
            "Blobs",
            "mlp",
            ("finetune.freeze_epochs=1", "finetune.head=classifier"),
            "finetune.head: got 'classifier', but the model has no module of that name",
        ),
    ],
)
def test_a_component_that_breaks_its_contract_is_refused_saying_what_is_wrong(
    user_module, data, model, more, expected
):
    with pytest.raises(ConfigError) as e:
        validate(own(data, model, *more))
    [problem] = e.value.problems
    assert expected in problem, problem


def test_the_users_components_pass_the_check_and_the_head_is_the_last_linear(user_module):
    from bench import models, run

    config = own("Blobs", "mlp", "finetune.freeze_epochs=1")
    _, module = run.build(validate(config))
    assert models.head_of(module.net) == "2"
    assert module.head() is module.net[2]
    head = {id(p) for p in module.net[2].parameters()}
    assert {id(p) for p in module.backbone_parameters()}.isdisjoint(head)
    assert len(module.backbone_parameters()) == 2  # the first Linear's weight and bias


def test_a_refused_component_exits_2_with_no_traceback_and_no_run(user_module):
    done = subprocess.run(
        [
            str(BIN / "bench-train"),
            "data=custom",
            "data._target_=user_parts.Blobs",
            "model=custom",
            "model._target_=user_parts.five_outputs",
            "tracking.experiment=refused",
        ],
        cwd=user_module,
        env={k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 2, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    assert "its output for a batch of 2 is (2, 5)" in done.stderr
    assert runs(user_module, "refused") == []


def test_a_misspelt_model_name_gets_the_nearest_names():
    with pytest.raises(ConfigError) as e:
        validate(compose_run("model=torchvision", "model.name=resnet19"))
    [problem] = e.value.problems
    assert problem.startswith("model.name: got 'resnet19', not one of torchvision's")
    assert "did you mean resnet18" in problem


def test_a_timm_model_by_name_gets_the_datas_channels_and_classes():
    pytest.importorskip("timm", reason="timm is an extra: pip install '.[timm]' (or '.[dev]')")
    from bench import run

    config = compose_run("model=timm", "model.name=resnet10t", "data.batch_size=32")
    _, module = run.build(validate(config))
    out = module.net(torch.zeros(2, 1, 8, 8))  # digits: one channel, ten classes
    assert tuple(out.shape) == (2, 10)
