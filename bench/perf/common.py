"""What every part shares: the targets, the sizes, progress, tables, the machine."""

from __future__ import annotations

import importlib.metadata
import math
import os
import pickle
import platform
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench import devices

PARTS = ("train", "augment", "sweep", "report", "gpu")


# Not part of `all`: whole training runs on real CIFAR-10, minutes each.
CHECKS = ("accuracy",)


SETTINGS = ("digits", "cifar10_cpu")


# The targets: bench / bare loop per setting, MLflow's share (%), device / DataLoader throughput,
# the report's seconds at REPORT_TARGET_RUNS runs.
RATIO_TARGETS = {"digits": 1.15, "cifar10_cpu": 1.05}


ERROR_TARGET = 1.3  # a bad value answered within 1.3x the time of --help


FIRST_RUN_TARGET = 3.0  # seconds from launching the sweep of --jobs runs to its first run


MLFLOW_SHARE_TARGET = 2.0


AUGMENT_SPEEDUP_TARGET = 10.0


REPORT_TARGET_SECONDS, REPORT_TARGET_RUNS = 10.0, 1000


# Sizes of a full run and of ``--quick``; a flag given on the command line wins over both.
FULL = {
    "repeats": 3,
    "digits_epochs": None,  # the config's (trainer.max_epochs: 15)
    "cifar_epochs": 2,
    "cifar_per_class": None,  # the study's (400 training images per class)
    "images": 50_000,
    "runs": [100, 1000],
    "epochs": 100,
    "jobs": 8,
    "gpu_epochs": 3,
    "gpu_jobs": [2, 4],
}


QUICK = {
    "repeats": 1,
    "digits_epochs": 3,
    "cifar_epochs": 1,
    "cifar_per_class": 100,
    "images": 10_000,
    "runs": [100],
    "epochs": 20,
    "jobs": 3,
    "gpu_epochs": 2,
    "gpu_jobs": [2],
}


_STARTED = time.perf_counter()


def say(message: str) -> None:
    """Progress, on stderr, with the seconds since this module was loaded."""
    print(f"[perf {time.perf_counter() - _STARTED:6.1f} s] {message}", file=sys.stderr, flush=True)


@dataclass
class Part:
    """One part's result: its table (one row per setting or size), what it measured with, and
    its lines of the summary (``measure, value, target, met``)."""

    name: str
    title: str
    table: pd.DataFrame
    about: str = ""
    summary: list[dict[str, Any]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def measure(
    name: str, value: float, target: str = "-", met: bool | None = None, why: str = ""
) -> dict:
    """One line of the summary; ``met`` None where there is no target to meet; ``why``, where
    the cost lies, is shown when a target is missed."""
    verdict = "-" if met is None or not math.isfinite(value) else ("yes" if met else "no")
    return {
        "measure": name,
        "value": value,
        "target": target,
        "met": verdict,
        "where the time goes (when missed)": why if verdict == "no" else "",
    }


def fmt(value: Any) -> str:
    """A number as the tables show it: 3 significant digits, thousands separated."""
    if isinstance(value, bool) or not isinstance(value, int | float | np.number):
        return str(value)
    if isinstance(value, int | np.integer):
        return f"{value:,}"
    if not math.isfinite(value):
        return "-"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.3g}" if abs(value) >= 0.001 else f"{value:.2g}"


def shown(table: pd.DataFrame) -> pd.DataFrame:
    return table.map(fmt) if len(table) else table


def markdown(table: pd.DataFrame) -> str:
    """A table as markdown, numbers as ``fmt`` writes them, right-aligned."""
    numeric = pd.api.types.is_numeric_dtype
    align = ["right" if numeric(table[c]) else "left" for c in table.columns]
    return shown(table).to_markdown(index=False, disable_numparse=True, colalign=align)


def print_part(part: Part) -> None:
    print(f"\n{part.title}")
    print(shown(part.table).to_string(index=False) if len(part.table) else part.about)
    for error in part.errors:
        print(error)
    sys.stdout.flush()


def stats(values: list[float]) -> tuple[float, float, float]:
    """Median, min, max."""
    return statistics.median(values), min(values), max(values)


def version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def machine() -> dict[str, str]:
    """The machine and software the numbers come from."""
    import torch

    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    try:
        ram = f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.1f} GiB"
    except (ValueError, OSError, AttributeError):
        ram = "unknown"
    gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return {
        "CPU": devices.cpu(),
        "cores": f"{os.cpu_count()} ({usable} usable by this process)",
        "RAM": ram,
        "GPU": ", ".join(gpus) or "none",
        "OS": platform.platform(),
        "python": platform.python_version(),
        **{p: version(p) for p in ("torch", "torchvision", "pytorch-lightning", "mlflow", "bench")},
    }


def write_cifar10(root: str | Path, train: int = 5000, test: int = 1000, seed: int = 0) -> Path:
    """A CIFAR-10 of random uint8 images in torchvision's layout, ``<root>/cifar-10-batches-py/``:
    ``train`` training images in five batches and ``test`` test images, labels cycling over the
    ten classes (so every class has its tenth); returns ``root``."""
    from bench.data import cifar10

    root = Path(root)
    folder = root / cifar10.FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)

    def write(name: str, first: int, n: int) -> None:
        entry = {
            "data": rng.integers(0, 256, (n, 3 * 32 * 32), dtype=np.uint8),
            "labels": [(first + i) % 10 for i in range(n)],
            "batch_label": "random",
        }
        with open(folder / name, "wb") as f:
            pickle.dump(entry, f, protocol=pickle.HIGHEST_PROTOCOL)

    bounds = np.linspace(0, train, len(cifar10.TRAIN_FILES) + 1).astype(int)
    for name, first, last in zip(cifar10.TRAIN_FILES, bounds[:-1], bounds[1:], strict=True):
        write(name, int(first), int(last - first))
    write(cifar10.TEST_FILES[0], 0, test)
    names = ["airplane", "automobile", "bird", "cat", "deer"]
    names += ["dog", "frog", "horse", "ship", "truck"]
    with open(folder / cifar10.META_FILE, "wb") as f:
        pickle.dump({"label_names": names, "num_vis": 3 * 32 * 32}, f)
    return root


def compose(overrides: list[str]) -> dict[str, Any]:
    """The resolved config of one run, as plain data, composed from conf/ as the app does."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from bench.config import CONFIG_DIR
    from bench.sweep import run_config

    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return run_config(hydra_compose(config_name="train", overrides=list(overrides)))
