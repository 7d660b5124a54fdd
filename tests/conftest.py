"""Shared test data: a small real CIFAR-10 subset (when ../shared/data is at hand) and a tiny
CIFAR-10 archive generated in torchvision's on-disk format; composing a run as the app does."""

import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir

from bench.cli import CONFIG_DIR
from bench.sweep import run_config

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
CIFAR_CLASSES = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
]


def compose_run(*overrides: str, config_name: str = "train") -> dict:
    """The resolved config of one run, as plain data, composed like the app composes it."""
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return run_config(compose(config_name=config_name, overrides=list(overrides)))


@pytest.fixture(scope="session")
def cifar_subset(tmp_path_factory) -> Path:
    """Real CIFAR-10 in the ImageFolder layout: 60 training and 20 test images per class."""
    script = SHARED_DATA / "cifar10_jpeg.py"
    if not script.exists():
        pytest.skip(f"real CIFAR-10 is not at hand ({SHARED_DATA})")
    out = tmp_path_factory.mktemp("cifar_subset")
    subprocess.run(
        [sys.executable, str(script), "imagefolder", str(out)]
        + ["--per-class-train", "60", "--per-class-test", "20"],
        check=True,
        capture_output=True,
        timeout=120,
    )
    return out


def write_cifar_archive(root: Path, per_batch: int = 30, test: int = 40) -> Path:
    """A tiny CIFAR-10 in torchvision's layout (``cifar-10-batches-py/``): five training
    batches of ``per_batch`` images and a test batch of ``test``, labels cycling over the ten
    classes, every image filled with its class index times 20 plus its position in the batch."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)

    def batch(n: int, offset: int) -> dict:
        labels = [(offset + i) % 10 for i in range(n)]
        data = np.stack(
            [np.full(3 * 32 * 32, 20 * y + i % 20, np.uint8) for i, y in enumerate(labels)]
        )
        return {"data": data, "labels": labels, "batch_label": "generated"}

    for i in range(1, 6):
        with open(folder / f"data_batch_{i}", "wb") as f:
            pickle.dump(batch(per_batch, i), f)
    with open(folder / "test_batch", "wb") as f:
        pickle.dump(batch(test, 0), f)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": CIFAR_CLASSES, "num_vis": 3072}, f)
    return root


@pytest.fixture
def cifar_archive(tmp_path) -> Path:
    return write_cifar_archive(tmp_path / "cifar")


@pytest.fixture
def store(tmp_path, monkeypatch):
    """A fresh SQLite MLflow store, named by $MLFLOW_TRACKING_URI, in the test's own folder,
    which the test runs in (MLflow puts a SQLite store's artifacts in ./mlruns)."""
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.chdir(tmp_path)
    return MlflowClient(uri)


def train_here(config: dict, output_dir: Path | None = None) -> dict:
    """One run in this process, into the store $MLFLOW_TRACKING_URI names."""
    from bench import config as bench_config
    from bench import run, tracking

    uri = tracking.resolve_uri(os.environ.get("MLFLOW_TRACKING_URI"))
    experiment_id = tracking.ensure_experiment(uri, config["tracking"]["experiment"])
    checked = bench_config.validate(config)
    return run.train(checked, tracking_uri=uri, experiment_id=experiment_id, output_dir=output_dir)
