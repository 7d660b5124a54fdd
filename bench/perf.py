"""What bench costs, measured: ``python -m bench.perf all`` (``nox -s perf``).

Five parts, each printed as a table when it completes, then one summary of every measure beside
its target (``--out DIR`` also writes ``perf.md``, the machine described, and a CSV per table):

- ``train``: one bench run against a bare PyTorch loop, and MLflow's share of the run. The bench
  run is ``bench.run.train`` in this process, into a SQLite store in a temporary folder, with a
  run folder for its per-epoch checkpoint and final weights (as ``bench-train`` gives it); its
  progress is one log line per epoch, as off a terminal. The bare loop is written here plainly:
  the same network (``bench.models.build``), the same data tensors (the data module's splits),
  batch size, seed, augmentation (``bench.data.augment``'s batched functions), optimizer steps,
  SGD with the same schedule through ``LambdaLR``, a validation pass per epoch and a test pass.
  Two settings: ``digits``, the default config (``conf/train.yaml``), and ``cifar10_cpu``, the
  CIFAR-10 CPU study (``experiment=cifar10_cpu``: the small ResNet on 5,000 training images)
  cut to ``--cifar-epochs`` epochs, on random images in torchvision's layout unless
  ``--cifar-root`` names the real data (the time does not depend on the pixels). Each side runs
  once to warm up (imports, first calls), then ``--repeats`` times, alternating; the table gives
  the median, min and max seconds and the ratio of the medians, bench / bare. MLflow's share is
  the time spent inside the store calls of ``bench.tracking`` (every write of a run's
  ``RunRecorder`` goes through ``tracking.retrying``, which is timed here) over the run's wall
  time, the median over the timed runs; beside it, the time spent writing the run's checkpoint
  and final weights (``AtomicCheckpointIO.save_checkpoint`` and ``torch.save``, timed).
- ``augment``: training-batch throughput, images/s, of ``bench.data.CIFAR10DataModule`` on
  ``--images`` random 32x32 uint8 images, batches of ``--batch``: ``on_device=True`` (batches
  cut from the tensors on the device, cropped, flipped and normalised whole by
  ``prepare_batch``) against ``on_device=False`` (a DataLoader whose ``--workers`` processes
  crop, flip and normalise each image with torchvision). The time of an epoch is that of
  iterating the training loader and preparing every batch; ``--repeats`` epochs from one loader
  (its workers persist between epochs, as in a run), the median taken; the first epoch, worker
  start-up included, is shown apart.
- ``sweep``: a real ``bench-train -m`` grid of ``--jobs`` one-epoch digits runs (seeds
  0..N-1), a subprocess writing into a fresh store: its wall time, the time until its first run
  started (MLflow's start time of the run), and the per-job overhead, (wall time - the runs' own
  time from MLflow's start to end) / N; also the start-up of ``bench-train --help`` and of a
  bad-input error (``bench-train optimizer.lr=-1``), each the median of ``--repeats``, and their
  ratio (target: the error within 1.3x of ``--help``).
- ``report``: the report over ``--runs`` synthetic runs of ``--epochs`` epochs (below).

``all`` runs them in that order (or name the parts to run). ``--quick`` shrinks every part to a
try-out of a few minutes (the sizes it uses show in the tables).

The ``report`` part builds synthetic runs in a real SQLite MLflow store, shaped like the runs
``bench`` records (see ``bench.tracking``): one experiment per size, a sweep's parent run with
every run nested under it, tags ``bench.kind=run``, ``schedule`` and ``seed``, the flattened
config as params, ``val_acc``, ``val_loss`` and ``train_loss`` per epoch (step = epoch, 1..E),
``lr`` at every optimizer step (LR_STEPS_PER_EPOCH per epoch) and ``test_acc`` at the end, status
FINISHED. Then it times

- ``load``: ``bench.tracking.load_runs`` of the whole experiment, in this process (whose MLflow
  client is already open: a fresh process first spends a second or two opening the store);
- ``report``: ``bench.report.main([... "--all" ...])``, the whole report (its loading included),
  in this process too; an error there is printed for that row and the next size goes on.

and prints one row per size: runs, epochs, create s, load s, report s. With ``--store DIR`` the
store is kept in DIR and a size already built there is reused (its create s is then empty);
without it the store lives in a temporary folder.

    python -m bench.perf all --out results/perf
    python -m bench.perf all --quick
    python -m bench.perf train --settings digits --repeats 5
    python -m bench.perf report --runs 100 1000 --epochs 100 --store /tmp/perf
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import importlib.metadata
import io
import math
import multiprocessing
import os
import pickle
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from mlflow.entities import Metric, Param
from mlflow.tracking import MlflowClient

from bench import tracking

# ---------------------------------------------------------------------------------------------
# What every part shares: progress, tables, the summary of measures against their targets

PARTS = ("train", "augment", "sweep", "report")
# Not part of `all`: whole training runs on real CIFAR-10, minutes each.
CHECKS = ("accuracy",)
SETTINGS = ("digits", "cifar10_cpu")
# The targets: bench / bare loop per setting, MLflow's share (%), device / DataLoader throughput,
# the report's seconds at REPORT_TARGET_RUNS runs.
RATIO_TARGETS = {"digits": 1.15, "cifar10_cpu": 1.05}
ERROR_TARGET = 1.3  # a bad value answered within 1.3x the time of --help
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
    print(shown(part.table).to_string(index=False))
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

    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        names = [
            line.split(":", 1)[1].strip()
            for line in cpuinfo.read_text().splitlines()
            if line.startswith("model name")
        ]
        cpu = names[0] if names else cpu
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    try:
        ram = f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.1f} GiB"
    except (ValueError, OSError, AttributeError):
        ram = "unknown"
    gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return {
        "CPU": cpu,
        "cores": f"{os.cpu_count()} ({usable} usable by this process)",
        "RAM": ram,
        "GPU": ", ".join(gpus) or "none",
        "OS": platform.platform(),
        "python": platform.python_version(),
        **{p: version(p) for p in ("torch", "torchvision", "pytorch-lightning", "mlflow", "bench")},
    }


# ---------------------------------------------------------------------------------------------
# Data: a CIFAR-10 of random images in torchvision's layout


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


# ---------------------------------------------------------------------------------------------
# train: a bench run against a bare PyTorch loop; MLflow's share of the run


def compose(overrides: list[str]) -> dict[str, Any]:
    """The resolved config of one run, as plain data, composed from conf/ as the app does."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from bench.config import CONFIG_DIR
    from bench.sweep import run_config

    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return run_config(hydra_compose(config_name="train", overrides=list(overrides)))


def setting_overrides(
    setting: str, epochs: int | None, cifar_root: Path | None, per_class: int | None
) -> list[str]:
    """The overrides of a setting: the digits default, or the CIFAR-10 CPU study."""
    overrides = ["trainer.enable_progress_bar=false"]  # one log line per epoch, terminal or not
    if setting == "cifar10_cpu":
        overrides += ["experiment=cifar10_cpu", f"data.root={cifar_root}"]
        if cifar_root is not None and (Path(cifar_root) / "train").is_dir():
            overrides += ["data=image_folder"]  # DIR/train/<class>/*, DIR/test/<class>/*
        if per_class is not None:
            overrides += [f"data.train_per_class={per_class}"]
    if epochs is not None:
        overrides += [f"trainer.max_epochs={epochs}"]
    return overrides


class CallTimer:
    """Times every call of the functions ``targets`` names, ``(owner, attribute)`` pairs, made
    inside the ``with`` block (each replaced by a timed wrapper for its duration); a call made
    inside another timed call is counted once, in the outer one. ``name(attribute, args)``
    labels a call for ``costliest``."""

    def __init__(
        self,
        targets: list[tuple[Any, str]],
        name: Callable[[str, tuple], str] = lambda attribute, args: attribute,
    ):
        self.targets = targets
        self.name = name
        self.seconds = 0.0
        self.calls = 0
        self.by_name: dict[str, list[float]] = {}  # label -> [count, seconds]
        self._depth = 0
        self._saved: list[tuple[Any, str, Callable]] = []

    def _timed(self, attribute: str, original: Callable) -> Callable:
        def timed(*args, **kwargs):
            self._depth += 1
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self._depth -= 1
                if not self._depth:
                    seconds = time.perf_counter() - start
                    self.seconds += seconds
                    self.calls += 1
                    label = self.name(attribute, args)
                    count, total = self.by_name.get(label, (0, 0.0))
                    self.by_name[label] = [count + 1, total + seconds]

        return timed

    def __enter__(self) -> CallTimer:
        for owner, attribute in self.targets:
            original = getattr(owner, attribute)
            self._saved.append((owner, attribute, original))
            setattr(owner, attribute, self._timed(attribute, original))
        return self

    def __exit__(self, *exc) -> None:
        for owner, attribute, original in reversed(self._saved):
            setattr(owner, attribute, original)
        self._saved.clear()

    def costliest(self, n: int = 3) -> str:
        """The ``n`` labels whose calls took longest in all: ``label count x seconds``."""
        top = sorted(self.by_name.items(), key=lambda item: -item[1][1])[:n]
        return ", ".join(f"{name} {count}x {seconds:.2f} s" for name, (count, seconds) in top)


def store_timer() -> CallTimer:
    """The run's store calls: all of them go through ``tracking.store.retry_call`` (the
    ``RunRecorder``'s writes, their retries and pauses on a locked store included), labelled
    by the MLflow call made."""
    return CallTimer(
        [(tracking.store, "retry_call"), (tracking.writing, "retry_call")],
        name=lambda _, args: getattr(args[0], "__name__", "?"),
    )


def file_timer() -> CallTimer:
    """The run's checkpoint and weights files: ``AtomicCheckpointIO.save_checkpoint``
    (serialising, writing, fsync, rename) and ``torch.save`` (the final weights)."""
    import torch

    from bench.lightning import AtomicCheckpointIO

    return CallTimer([(AtomicCheckpointIO, "save_checkpoint"), (torch, "save")])


def bench_run(config: Mapping[str, Any], uri: str, experiment_id: str, folder: Path) -> dict:
    """One bench run in this process: wall seconds, seconds in store calls, store calls,
    seconds writing its checkpoint and weights files."""
    from bench import config as bench_config
    from bench import run

    output_dir = Path(tempfile.mkdtemp(prefix="run-", dir=folder))
    with store_timer() as store, file_timer() as files:
        start = time.perf_counter()
        metrics = run.train(
            bench_config.validate(config),
            tracking_uri=uri,
            experiment_id=experiment_id,
            output_dir=output_dir,
        )
        wall = time.perf_counter() - start
    shutil.rmtree(output_dir, ignore_errors=True)
    return {
        "wall": wall,
        "store": store.seconds,
        "calls": store.calls,
        "top": store.costliest(),
        "files": files.seconds,
        "val_acc": metrics.get("val_acc", math.nan),
        "test_acc": metrics.get("test_acc", math.nan),
    }


def _split(datamodule, name: str) -> tuple[Any, Any]:
    """A split's inputs and labels as tensors: an image split's uint8 ``images`` and
    ``labels``, or a ``TensorDataset``'s two tensors."""
    data = datamodule.splits[name]
    if hasattr(data, "tensors"):
        return data.tensors[0], data.tensors[1]
    return data.images, data.labels


def bare_run(config: Mapping[str, Any]) -> dict:
    """The run ``config`` describes as a bare PyTorch loop; wall seconds (the data's set-up
    included, as in a bench run), training images, optimizer steps, final accuracies."""
    import torch
    from hydra.utils import instantiate
    from torch.nn import functional as F
    from torch.optim.lr_scheduler import LambdaLR

    from bench import models, run, spec
    from bench.data import augment, contract

    start = time.perf_counter()
    # The trainer's "auto" values as a bench run settles them on this machine (precision,
    # channels_last, deterministic), then applied here by hand.
    checked = run.settle(spec.of(config))
    trainer = {**checked.trainer, **checked.own["trainer"]}
    data, opt = checked.data, checked.optimizer
    if trainer.get("compile"):
        raise ValueError("the bare loop does not compile the network (trainer.compile)")
    if trainer.get("num_threads") is not None:
        torch.set_num_threads(trainer["num_threads"])
    device = torch.device("cuda" if run.uses_cuda(checked) else "cpu")
    deterministic = bool(trainer.get("deterministic"))
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(deterministic)
    if device.type == "cuda":
        torch.backends.cudnn.deterministic = deterministic
        torch.backends.cudnn.benchmark = bool(trainer.get("benchmark"))
    precision = str(trainer.get("precision", "32-true"))
    mixed = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}.get(precision)
    if mixed is None and precision not in ("32-true", "32"):
        raise ValueError(f"the bare loop runs 32-true, bf16-mixed or 16-mixed, not {precision}")
    channels_last = bool(trainer.get("channels_last"))
    seed = config["seed"]
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)

    dm = instantiate(dict(data))
    dm.prepare_data()
    dm.setup("fit")
    train_x, train_y = (t.to(device) for t in _split(dm, "train"))
    held_out = {s: tuple(t.to(device) for t in _split(dm, s)) for s in ("val", "test")}
    images = train_x.dtype == torch.uint8  # images to augment and normalise; else features
    net = models.build(dict(checked.model), contract.shape_of(dm)).to(device)
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    if not opt["_target_"].endswith("SGD"):
        raise ValueError(f"the bare loop runs SGD only, not {opt['_target_']}")
    optimizer = torch.optim.SGD(
        net.parameters(),
        lr=opt["lr"],
        momentum=opt.get("momentum", 0),
        nesterov=opt.get("nesterov", False),
        weight_decay=opt.get("weight_decay", 0),
    )
    batch, epochs, n = data["batch_size"], trainer["max_epochs"], len(train_y)
    total = math.ceil(n / batch) * epochs
    schedule = checked.schedule.lr(opt["lr"])
    scheduler = LambdaLR(optimizer, lambda t: schedule(t, total) / opt["lr"])
    scaler = torch.amp.GradScaler(device.type, enabled=mixed is torch.float16)

    def inputs(x, train: bool):
        if images:
            x = augment.to_float(x)
            if train and data.get("augment", True):
                x = augment.random_flip(augment.random_crop(x, 4))
            x = augment.resize(augment.normalize(x, dm.mean, dm.std), data.get("resize"))
        return x.contiguous(memory_format=torch.channels_last) if channels_last else x

    def autocast():
        return torch.autocast(device.type, dtype=mixed, enabled=mixed is not None)

    def evaluate(split: str) -> tuple[float, float]:
        x_all, y_all = held_out[split]
        net.eval()
        loss, correct = 0.0, 0
        with torch.no_grad():
            for first in range(0, len(y_all), 1024):
                x, y = x_all[first : first + 1024], y_all[first : first + 1024]
                with autocast():
                    logits = net(inputs(x, train=False))
                loss += float(F.cross_entropy(logits, y, reduction="sum"))
                correct += int((logits.argmax(1) == y).sum())
        return loss / len(y_all), correct / len(y_all)

    for _ in range(epochs):
        net.train()
        losses = []
        for index in torch.randperm(n, device=device).split(batch):
            with autocast():
                loss = F.cross_entropy(net(inputs(train_x[index], train=True)), train_y[index])
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            losses.append(loss.detach())
        float(torch.stack(losses).mean())  # the epoch's training loss
        _, val_acc = evaluate("val")
    _, test_acc = evaluate("test")
    wall = time.perf_counter() - start
    return {"wall": wall, "images": n, "steps": total, "val_acc": val_acc, "test_acc": test_acc}


def time_train(
    settings: list[str],
    repeats: int,
    digits_epochs: int | None,
    cifar_epochs: int,
    cifar_root: str | None,
    cifar_per_class: int | None,
) -> Part:
    rows, summary = [], []
    with tempfile.TemporaryDirectory(prefix="perf-train-") as scratch:
        folder = Path(scratch)
        uri = f"sqlite:///{folder / 'mlflow.db'}"
        root = Path(cifar_root).resolve() if cifar_root else None
        if "cifar10_cpu" in settings and root is None:
            say("writing a CIFAR-10 of random images in torchvision's layout")
            root = write_cifar10(folder / "cifar10", train=5000, test=1000)
        for setting in settings:
            epochs = digits_epochs if setting == "digits" else cifar_epochs
            config = compose(setting_overrides(setting, epochs, root, cifar_per_class))
            experiment_id = tracking.ensure_experiment(uri, f"perf-{setting}")
            say(f"{setting}: warming up (a bench run and a bare loop)")
            bench_run(config, uri, experiment_id, folder)
            bare_run(config)
            bench, bare = [], []
            for i in range(repeats):
                say(f"{setting}: bench run and bare loop {i + 1}/{repeats}")
                bench.append(bench_run(config, uri, experiment_id, folder))
                bare.append(bare_run(config))
            walls = stats([r["wall"] for r in bench])
            bares = stats([r["wall"] for r in bare])
            ratio = walls[0] / bares[0]
            shares = [100 * r["store"] / r["wall"] for r in bench]
            share = statistics.median(shares)
            rows.append(
                {
                    "setting": setting,
                    "epochs": config["trainer"]["max_epochs"],
                    "train images": bare[0]["images"],
                    "steps": bare[0]["steps"],
                    "repeats": repeats,
                    "bench s": walls[0],
                    "bench min": walls[1],
                    "bench max": walls[2],
                    "bare s": bares[0],
                    "bare min": bares[1],
                    "bare max": bares[2],
                    "bench/bare": ratio,
                    "target": f"<= {RATIO_TARGETS[setting]:.2f}",
                    "MLflow s": statistics.median(r["store"] for r in bench),
                    "MLflow %": share,
                    "files s": statistics.median(r["files"] for r in bench),
                    "store calls": int(statistics.median(r["calls"] for r in bench)),
                    "costliest store calls (last run)": bench[-1]["top"],
                }
            )
            n = config["trainer"]["max_epochs"]
            what = f"{setting}, {n} epoch{'s' * (n != 1)}"
            limit = RATIO_TARGETS[setting]
            store = statistics.median(r["store"] for r in bench)
            files = statistics.median(r["files"] for r in bench)
            steps = bare[0]["steps"]
            beyond = (walls[0] - bares[0] - store - files) / steps * 1000
            summary += [
                measure(f"{what}: bench run (s)", walls[0]),
                measure(f"{what}: bare PyTorch loop (s)", bares[0]),
                measure(
                    f"{what}: bench / bare",
                    ratio,
                    f"<= {limit:.2f}",
                    ratio <= limit,
                    why=(
                        f"{walls[0] - bares[0]:.2f} s more than the bare loop: {store:.2f} s in "
                        f"the store (next row), {files:.2f} s writing the checkpoint and the "
                        "final weights (what a killed run resumes from; the bare loop writes "
                        f"none), and {beyond:.1f} ms per optimizer step ({steps}) "
                        "in Lightning's loop, which calls its hooks, closures and progress "
                        "bookkeeping around every step (cProfile: `_call_callback_hooks`, "
                        "`_call_lightning_module_hook`, `Module.__setattr__`); a fixed cost per "
                        "step, large beside a small step"
                    ),
                ),
                measure(
                    f"{what}: MLflow's share of the run (%)",
                    share,
                    f"< {MLFLOW_SHARE_TARGET:g}",
                    share < MLFLOW_SHARE_TARGET,
                    why=(
                        f"{store:.2f} s per run in the store ({bench[-1]['top']}): the run "
                        "record, its params, config and weights, and every metric point "
                        "(written in batches, with each checkpoint and at the end); a fixed cost "
                        "per run, large beside a short run"
                    ),
                ),
            ]
            say(f"{setting}: bench {walls[0]:.2f} s, bare {bares[0]:.2f} s, MLflow {share:.2f}%")
    data = f"real CIFAR-10 from {root}" if cifar_root else "random images"
    return Part(
        "train",
        "bench run against a bare PyTorch loop (median s), and MLflow's share of the run",
        pd.DataFrame(rows),
        about=(
            "One bench run (`bench.run.train` in-process, into a SQLite store, with a run folder "
            "for its checkpoints and weights) against a bare PyTorch loop of the same network, "
            "data tensors, batch size, seed, augmentation, optimizer steps, SGD and LR schedule "
            "(LambdaLR), validation passes and test pass; both after a warm-up run. "
            "`bench/bare` is the ratio of the medians. `MLflow s` and `MLflow %`: the time in "
            "the run's store calls, and its share of the run's wall time (median). `files s`: "
            "the time writing the run's checkpoint and final weights (median). "
            f"CIFAR-10: {data}."
        ),
        summary=summary,
    )


def stored_run(uri: str, config: Mapping[str, Any]) -> dict:
    """The final accuracies and wall time of the finished run of ``config``'s identity in the
    store ``uri`` (its ``tracking.experiment``)."""
    from bench import run

    key = run.identity(config)
    experiment = config["tracking"]["experiment"]
    mc = tracking.client(uri)
    found = mc.search_runs(
        [tracking.experiment_id(uri, experiment)],
        filter_string=f"{tracking.equals('tags', tracking.KEY_TAG, key)} "
        "and attributes.status = 'FINISHED'",
    )
    if not found:
        raise SystemExit(
            f"perf accuracy: no finished run of {config['schedule']['name']} seed "
            f"{config['seed']} with this config in {uri} ({experiment})"
        )
    r = found[0]
    return {
        "wall": (r.info.end_time - r.info.start_time) / 1000,
        "val_acc": r.data.metrics["val_acc"],
        "test_acc": r.data.metrics["test_acc"],
    }


def check_accuracy(
    seeds: list[int],
    schedule_names: list[str],
    epochs: int | None,
    cifar_root: str | None,
    extra: Sequence[str] = (),
    bench_store: str | None = None,
) -> Part:
    """The CIFAR-10 CPU study's runs against the bare loop of the same network, data, seed and
    schedule: final validation and test accuracy side by side, and bench - bare paired by seed
    with its 95% CI per schedule. The two sides draw their random numbers in different orders
    (Lightning's loop against a plain one), so they are two samples of one training, not the
    same numbers: they match when the paired difference's interval holds 0. ``extra``: more
    overrides (smaller sizes, for a try-out). ``bench_store``: take bench's side from the
    finished runs of that store's ``cifar10_cpu`` experiment with the same identity (the study
    already ran them; on the CPU at its thread count a run's numbers are the same every time)
    instead of training it again."""
    from bench.analysis import stats as paired_stats

    if cifar_root is None:
        raise SystemExit("perf accuracy: real CIFAR-10 is needed: --cifar-root DIR")
    root = Path(cifar_root).resolve()
    rows, summary = [], []
    with tempfile.TemporaryDirectory(prefix="perf-accuracy-") as scratch:
        folder = Path(scratch)
        uri = f"sqlite:///{folder / 'mlflow.db'}"
        experiment_id = tracking.ensure_experiment(uri, "perf-accuracy")
        for schedule in schedule_names:
            for seed in seeds:
                overrides = setting_overrides("cifar10_cpu", epochs, root, None)
                config = compose([*overrides, *extra, f"schedule={schedule}", f"seed={seed}"])
                if bench_store:
                    bench = stored_run(bench_store, config)
                else:
                    say(f"accuracy: {schedule} seed {seed}: bench run")
                    bench = bench_run(config, uri, experiment_id, folder)
                say(f"accuracy: {schedule} seed {seed}: bare loop")
                bare = bare_run(config)
                rows.append(
                    {
                        "schedule": schedule,
                        "seed": seed,
                        "epochs": config["trainer"]["max_epochs"],
                        "bench val %": 100 * bench["val_acc"],
                        "bare val %": 100 * bare["val_acc"],
                        "bench test %": 100 * bench["test_acc"],
                        "bare test %": 100 * bare["test_acc"],
                        "bench s": bench["wall"],
                        "bare s": bare["wall"],
                    }
                )
    table = pd.DataFrame(rows)
    for schedule, mine in table.groupby("schedule", sort=False):
        for split in ("val", "test"):
            p = paired_stats.paired(mine[f"bench {split} %"], mine[f"bare {split} %"])
            covers = p.diff.low <= 0 <= p.diff.high if math.isfinite(p.diff.low) else None
            ours, theirs = mine[f"bench {split} %"].mean(), mine[f"bare {split} %"].mean()
            summary.append(
                measure(
                    f"cifar10_cpu {schedule}, {split} acc: bench {ours:.2f} vs bare "
                    f"{theirs:.2f} %, bench - bare (pt) [{p.diff.low:+.2f}, {p.diff.high:+.2f}] "
                    f"over {p.diff.n} seeds",
                    p.diff.mean,
                    "95% CI holds 0",
                    covers,
                    why="bench's run and the bare loop of the same network, data and schedule "
                    "end at different accuracies: look for a difference in what they train",
                )
            )
    return Part(
        "accuracy",
        "bench's CIFAR-10 CPU study against a bare PyTorch loop: final accuracy, same seeds",
        table,
        about=(
            "Each row: one seed of one schedule of `experiment=cifar10_cpu` (its network, data "
            "sizes, epochs, optimizer and schedule) trained twice, by bench (`bench.run.train`, "
            "Lightning, MLflow) and by the bare loop written in `bench/perf.py`, on real CIFAR-10 "
            f"from {root}. The two draw their random numbers in different orders, so they are two "
            "samples of the same training; the summary gives bench - bare, paired by seed."
        ),
        summary=summary,
    )


# ---------------------------------------------------------------------------------------------
# augment: training-batch throughput, device-resident batches against a DataLoader pipeline


class _Placed:
    """What a data module asks of a Trainer to find the run's device."""

    def __init__(self, device):
        self.strategy = type("Strategy", (), {"root_device": device})()
        self.training = True


def time_augment(images: int, batch: int, workers: int, threads: int, repeats: int) -> Part:
    import torch

    import bench.data

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.set_num_threads(threads)
    rows = []
    val = 1000 if images >= 20_000 else 100
    with tempfile.TemporaryDirectory(prefix="perf-augment-") as scratch:
        say(f"augment: writing {images + val:,} random 32x32 images")
        root = write_cifar10(scratch, train=images + val, test=100)
        paths = [("device-resident", {"on_device": True})]
        paths += [("DataLoader", {"on_device": False, "num_workers": workers})]
        for name, kw in paths:
            dm = bench.data.CIFAR10DataModule(root=str(root), batch_size=batch, val_size=val, **kw)
            if device.type != "cpu":
                dm.trainer = _Placed(device)
            dm.setup("fit")
            loader = dm.train_dataloader()
            seconds, count = [], 0
            for i in range(max(repeats, 1)):
                say(f"augment: {name}, epoch {i + 1}/{max(repeats, 1)}")
                count = 0
                start = time.perf_counter()
                for x, y in loader:
                    x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
                    prepared = dm.prepare_batch((x, y), train=True)
                    x = prepared[0] if isinstance(prepared, tuple | list) else prepared
                    count += len(y)
                if device.type == "cuda":
                    torch.cuda.synchronize()
                seconds.append(time.perf_counter() - start)
            del loader  # its workers end with it
            rows.append(
                {
                    "path": name,
                    "workers": kw.get("num_workers", 0),
                    "images": count,
                    "batch": batch,
                    "epochs": len(seconds),
                    "epoch s": statistics.median(seconds),
                    "first epoch s": seconds[0],
                    "images/s": count / statistics.median(seconds),
                    "shape": "x".join(str(s) for s in x.shape[1:]),
                    "dtype": str(x.dtype).removeprefix("torch."),
                }
            )
    table = pd.DataFrame(rows)
    device_rate, loader_rate = table["images/s"]
    speedup = device_rate / loader_rate
    table["vs DataLoader"] = table["images/s"] / loader_rate
    where = torch.cuda.get_device_name(0) if device.type == "cuda" else "CPU"
    summary = [
        measure("augmentation, device-resident (images/s)", device_rate),
        measure(f"augmentation, DataLoader with {workers} workers (images/s)", loader_rate),
        measure(
            "augmentation: device-resident / DataLoader",
            speedup,
            f">= {AUGMENT_SPEEDUP_TARGET:g}",
            speedup >= AUGMENT_SPEEDUP_TARGET,
            why=(
                f"{1000 * batch / device_rate:.2f} ms per batch of {batch} on the device path: "
                "cutting the batch from the data, the crop (one gather of whole windows), the "
                "flip and the normalisation (`bench/data/augment.py`); a small batch pays the "
                "ops' fixed costs more often"
            ),
        ),
    ]
    say(f"augment: {device_rate:,.0f} against {loader_rate:,.0f} images/s")
    return Part(
        "augment",
        f"Augmentation throughput, training batches (crop, flip, normalise) on the {where}",
        table,
        about=(
            f"`bench.data.CIFAR10DataModule` on random 32x32 uint8 images, batches of {batch}: "
            "one epoch is iterating `train_dataloader()` and `prepare_batch(batch, train=True)` "
            "on every batch. `device-resident`: `on_device=True`, batches cut from the tensors "
            "on the device and augmented whole; `DataLoader`: `on_device=False`, torchvision's "
            f"per-image transforms in worker processes. {threads} torch thread(s) in this "
            "process. `epoch s` is the median over the epochs of one loader; `first epoch s` "
            "includes starting the workers."
        ),
        summary=summary,
    )


# ---------------------------------------------------------------------------------------------
# sweep: the per-job overhead of a real `bench-train -m` grid, and the command's start-up


def bench_train() -> list[str]:
    """The ``bench-train`` command of this environment."""
    here = Path(sys.executable).parent / "bench-train"
    found = str(here) if here.exists() else shutil.which("bench-train")
    if found is None:
        raise SystemExit("bench-train is not installed here: pip install -e .")
    return [found]


def _command(argv: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, int, str]:
    start = time.perf_counter()
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True)
    return time.perf_counter() - start, done.returncode, done.stdout + done.stderr


def time_sweep(jobs: int, repeats: int) -> Part:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    errors = []
    with tempfile.TemporaryDirectory(prefix="perf-sweep-") as scratch:
        folder = Path(scratch)
        uri = f"sqlite:///{folder / 'mlflow.db'}"
        seeds = ",".join(str(s) for s in range(jobs))
        argv = [*bench_train(), "-m", "trainer.max_epochs=1", f"seed={seeds}"]
        argv += [f"tracking.uri={uri}", "tracking.experiment=perf-sweep"]
        argv += [f"hydra.sweep.dir={folder / 'multirun'}"]
        say(f"sweep: bench-train -m, {jobs} one-epoch digits runs")
        launched = time.time()
        wall, code, output = _command(argv, folder, env)
        if code:
            raise RuntimeError(f"{' '.join(argv)} failed ({code}):\n{output[-3000:]}")
        mc = MlflowClient(uri)
        experiment = mc.get_experiment_by_name("perf-sweep")
        found = mc.search_runs(
            [experiment.experiment_id], f"tags.`{tracking.KIND_TAG}` = 'run'", max_results=jobs + 1
        )
        if len(found) != jobs or any(r.info.status != "FINISHED" for r in found):
            raise RuntimeError(f"the sweep left {len(found)} runs, not {jobs} finished ones")
        starts = [r.info.start_time / 1000 for r in found]
        ends = [r.info.end_time / 1000 for r in found]
        own = sum(e - s for s, e in zip(starts, ends, strict=True))
        first = min(starts) - launched
        per_job = (wall - own) / jobs
        between = (max(ends) - min(starts) - own) / (jobs - 1) if jobs > 1 else float("nan")
        after = launched + wall - max(ends)

        startup = {}
        for what, args, expect in (
            ("bench-train --help", ["--help"], 0),
            ("bench-train optimizer.lr=-1 (error)", ["optimizer.lr=-1"], 2),
        ):
            seconds = []
            for i in range(max(repeats, 1)):
                say(f"sweep: {what} {i + 1}/{max(repeats, 1)}")
                s, code, output = _command([*bench_train(), *args], folder, env)
                if code != expect:
                    errors.append(f"{what} exited {code}, not {expect}: {output[-500:]}")
                seconds.append(s)
            startup[what] = stats(seconds)
        if mc.get_experiment_by_name("digits") is not None:  # the default experiment
            errors.append("bench-train with a bad input wrote to the store")
    rows = [
        {"measure": f"sweep of {jobs} runs: wall time (s)", "value": wall},
        {"measure": "sweep: time until its first run started (s)", "value": first},
        {"measure": "sweep: the runs' own time, MLflow start to end (s)", "value": own},
        {"measure": "sweep: mean run, MLflow start to end (s)", "value": own / jobs},
        {"measure": "sweep: per-job overhead, (wall - own) / N (s)", "value": per_job},
        {"measure": "sweep: from one run's end to the next's start (s)", "value": between},
        {"measure": "sweep: after the last run ended (s)", "value": after},
    ]
    for what, seconds in startup.items():
        rows.append({"measure": f"{what}, start to exit (s)", "value": seconds[0]})
    table = pd.DataFrame(rows)
    table["min"] = [float("nan")] * 7 + [s[1] for s in startup.values()]
    table["max"] = [float("nan")] * 7 + [s[2] for s in startup.values()]
    summary = [
        measure(f"sweep of {jobs} one-epoch runs: wall time (s)", wall),
        measure("sweep: time until the first run started (s)", first),
        measure("sweep: per-job overhead (s)", per_job),
        *(measure(f"{what}: start to exit (s)", s[0]) for what, s in startup.items()),
    ]
    (help_s, *_), (error_s, *_) = startup.values()
    summary.append(
        measure(
            "a bad-input error / --help, start to exit",
            error_s / help_s,
            f"<= {ERROR_TARGET}",
            error_s / help_s <= ERROR_TARGET,
            "the checks of values come first; those that import torch and Lightning after",
        )
    )
    say(f"sweep: {wall:.1f} s for {jobs} runs, {per_job:.2f} s overhead per job")
    return Part(
        "sweep",
        f"Per-job overhead of a `bench-train -m` grid of {jobs} one-epoch digits runs; start-up",
        table,
        about=(
            f"`bench-train -m trainer.max_epochs=1 seed=0,...,{jobs - 1}` as a subprocess into a "
            "fresh SQLite store. The runs' own time is the sum of their MLflow start-to-end "
            "times; the per-job overhead spreads the rest of the wall time (start-up, the "
            "sweep's checks, between runs, the end) over the runs. The start-up rows time a "
            "whole command; the bad input must exit with 2 before any run."
        ),
        summary=summary,
        errors=errors,
    )


# ---------------------------------------------------------------------------------------------
# report: the report over many synthetic runs

SCHEDULES = ("constant", "step", "cosine", "cosine_restarts", "polynomial")
LR_STEPS_PER_EPOCH = 10  # optimizer steps per epoch: the ``lr`` points of a run
BASE_LR = 0.1
BATCH = 1000  # metrics per log_batch (MLflow's limit)
WORKERS = min(4, os.cpu_count() or 1)  # processes that write runs (SQLite takes one write at once)
START = 1_700_000_000_000  # ms: when the first synthetic run starts
SECONDS_PER_EPOCH = 3.0


def experiment_name(runs: int, epochs: int) -> str:
    return f"perf-{runs}x{epochs}"


def lr_at(schedule: str, t: float) -> float:
    """The LR of ``schedule`` at the fraction ``t`` (0..1) of training."""
    if schedule == "constant":
        return BASE_LR
    if schedule == "step":
        return BASE_LR * 0.1 ** ((t >= 0.5) + (t >= 0.75))
    if schedule == "cosine":
        return BASE_LR * 0.5 * (1 + math.cos(math.pi * t))
    if schedule == "cosine_restarts":
        return BASE_LR * 0.5 * (1 + math.cos(math.pi * ((4 * t) % 1)))
    return BASE_LR * (1 - t) ** 2  # polynomial


def run_params(schedule: str, seed: int, epochs: int) -> dict[str, str]:
    """Params like those of a real run: its flattened config plus what the run adds."""
    steps = LR_STEPS_PER_EPOCH * epochs
    return {
        "data._target_": "bench.data.SyntheticDataModule",
        "data.batch_size": "64",
        "model._target_": "bench.models.small_cnn",
        "model.width": "16",
        "optimizer._target_": "torch.optim.SGD",
        "optimizer.lr": str(BASE_LR),
        "optimizer.momentum": "0.9",
        "optimizer.weight_decay": "0.0005",
        "schedule.name": schedule,
        "schedule.warmup_fraction": "0.0",
        "trainer.max_epochs": str(epochs),
        "trainer.precision": "32-true",
        "seed": str(seed),
        "run_name": f"{schedule}-seed{seed}",
        "tracking.experiment": "perf",
        "num_classes": "10",
        "total_steps": str(steps),
        "steps_per_epoch": str(LR_STEPS_PER_EPOCH),
    }


def run_metrics(schedule: str, seed: int, epochs: int, start_ms: int) -> list[Metric]:
    """A run's metrics: plausible learning curves, one point per epoch, and its LR trace."""
    rng = random.Random(f"{schedule}-{seed}")
    final = 0.80 + 0.02 * SCHEDULES.index(schedule) + rng.uniform(-0.02, 0.02)
    metrics = []
    for epoch in range(1, epochs + 1):
        ms = start_ms + int(epoch * SECONDS_PER_EPOCH * 1000)
        progress = 1 - math.exp(-5 * epoch / epochs)
        val_acc = min(1.0, max(0.0, 0.1 + (final - 0.1) * progress + rng.gauss(0, 0.01)))
        loss = 2.3 * (1 - progress) + 0.3 + rng.gauss(0, 0.02)
        metrics += [
            Metric("train_loss", loss - 0.1, ms - 500, epoch),
            Metric("val_acc", val_acc, ms, epoch),
            Metric("val_loss", loss, ms, epoch),
        ]
    steps = LR_STEPS_PER_EPOCH * epochs
    for step in range(steps):
        ms = start_ms + int(step / LR_STEPS_PER_EPOCH * SECONDS_PER_EPOCH * 1000)
        metrics.append(Metric("lr", lr_at(schedule, step / steps), ms, step))
    end_ms = start_ms + int((epochs + 1) * SECONDS_PER_EPOCH * 1000)
    metrics.append(Metric("test_acc", final + rng.uniform(-0.01, 0.01), end_ms, 0))
    return metrics


def create_runs(uri: str, experiment_id: str, sweep: str, indices: list[int], epochs: int) -> None:
    """Write the runs numbered ``indices`` (run i: schedule i % 5, seed i // 5)."""
    client = MlflowClient(uri)
    for i in indices:
        schedule, seed = SCHEDULES[i % len(SCHEDULES)], i // len(SCHEDULES)
        start_ms = START + i * 1000
        tags = {
            tracking.KIND_TAG: "run",
            tracking.PARENT_TAG: sweep,
            "schedule": schedule,
            "seed": str(seed),
        }
        run = client.create_run(
            experiment_id, start_time=start_ms, tags=tags, run_name=f"{schedule}-seed{seed}"
        )
        run_id = run.info.run_id
        params = run_params(schedule, seed, epochs)
        client.log_batch(run_id, params=[Param(k, v) for k, v in params.items()])
        metrics = run_metrics(schedule, seed, epochs, start_ms)
        for first in range(0, len(metrics), BATCH):
            client.log_batch(run_id, metrics=metrics[first : first + BATCH])
        end_ms = start_ms + int((epochs + 2) * SECONDS_PER_EPOCH * 1000)
        client.set_terminated(run_id, "FINISHED", end_time=end_ms)


def build(uri: str, runs: int, epochs: int) -> float | None:
    """Build experiment ``perf-<runs>x<epochs>`` in the store; the seconds it took, or None when
    the store already holds it whole."""
    name = experiment_name(runs, epochs)
    client = tracking.client(uri)
    existing = client.get_experiment_by_name(name)
    if existing is not None:
        query = f"tags.`{tracking.KIND_TAG}` = 'run' and attributes.status = 'FINISHED'"
        found = client.search_runs([existing.experiment_id], query, max_results=runs + 1)
        if len(found) != runs:
            raise SystemExit(f"{uri} holds {name} only in part: remove the store and start again")
        return None
    start = time.perf_counter()
    experiment_id = tracking.ensure_experiment(uri, name)
    sweep = tracking.start_sweep(uri, experiment_id, "sweep-perf", {"command": "perf"}, [])
    # Each worker process writes every WORKERS-th run, through a client of its own.
    shares = [list(range(w, runs, WORKERS)) for w in range(WORKERS)]
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(WORKERS, mp_context=spawn) as pool:
        jobs = [pool.submit(create_runs, uri, experiment_id, sweep, s, epochs) for s in shares]
        for job in jobs:
            job.result()
    tracking.end_run(uri, sweep, "FINISHED")
    return time.perf_counter() - start


def time_load(uri: str, runs: int, epochs: int) -> float:
    start = time.perf_counter()
    data = tracking.load_runs(uri, experiment_name(runs, epochs))
    seconds = time.perf_counter() - start
    assert len(data.runs) == runs, (len(data.runs), runs)
    assert len(data.epochs) == runs * epochs, (len(data.epochs), runs * epochs)
    return seconds


def time_report(uri: str, runs: int, epochs: int, out: Path) -> float | str:
    """Seconds the whole report takes, or the error it ended with."""
    argv = ["--experiment", experiment_name(runs, epochs), "--all", "--out", str(out)]
    argv += ["--tracking-uri", uri]
    printed = io.StringIO()
    start = time.perf_counter()
    try:
        from bench import report

        with contextlib.redirect_stdout(printed), contextlib.redirect_stderr(printed):
            code = report.main(argv)
    except (Exception, SystemExit) as e:
        detail = printed.getvalue().strip().splitlines()[-3:]
        return f"{type(e).__name__}: {e} {' '.join(detail)}".strip()
    if code:
        return f"exit code {code}: {' '.join(printed.getvalue().strip().splitlines()[-3:])}"
    return time.perf_counter() - start


def time_reports(sizes: list[int], epochs: int, store: str | None) -> Part:
    rows, errors = [], []
    with contextlib.ExitStack() as stack:
        folder = store or stack.enter_context(tempfile.TemporaryDirectory(prefix="perf-"))
        folder = Path(folder).resolve()
        folder.mkdir(parents=True, exist_ok=True)
        uri = f"sqlite:///{folder / 'mlflow.db'}"
        say(f"report: store {uri}")
        for runs in sizes:
            say(f"report: building {runs} runs of {epochs} epochs (unless the store has them)")
            created = build(uri, runs, epochs)
            loaded = time_load(uri, runs, epochs)
            say(f"report: the report over {runs} runs")
            reported = time_report(uri, runs, epochs, folder / "reports")
            if isinstance(reported, str):
                errors.append(f"report of {runs} runs failed: {reported}")
                reported = float("nan")
            rows.append(
                {
                    "runs": runs,
                    "epochs": epochs,
                    "create s": float("nan") if created is None else created,
                    "load s": loaded,
                    "report s": reported,
                }
            )
            say(f"report: {runs} runs done")
    summary = []
    for row in rows:
        what = f"report over {row['runs']:,} runs of {epochs} epochs (s)"
        if row["runs"] >= REPORT_TARGET_RUNS:
            limit = REPORT_TARGET_SECONDS
            why = (
                f"loading the runs: {row['load s']:.2f} s (`bench.tracking.load_runs`); the rest "
                "is the tables, the statistics and the figures (`bench.report`)"
            )
            summary.append(
                measure(what, row["report s"], f"<= {limit:g}", row["report s"] <= limit, why)
            )
        else:
            summary.append(measure(what, row["report s"]))
    return Part(
        "report",
        "The report over many synthetic runs",
        pd.DataFrame(rows),
        about=(
            "Synthetic finished runs in a SQLite store, shaped like bench's: `create s` builds "
            f"them ({WORKERS} writer processes), `load s` is `bench.tracking.load_runs`, "
            "`report s` the whole `bench-report --all` (its loading included), in-process."
        ),
        summary=summary,
        errors=errors,
    )


# ---------------------------------------------------------------------------------------------
# The command


def write_out(out: Path, parts: list[Part], summary: pd.DataFrame, command: str, when: str):
    """``perf.md`` (the machine, the command, the summary and every table) and the CSVs."""
    out.mkdir(parents=True, exist_ok=True)
    # A check of its own (accuracy) gets its own page and summary beside perf.md's.
    page = "perf.md" if any(p.name in PARTS for p in parts) else f"{parts[0].name}.md"
    summary.to_csv(out / page.replace(".md", "_summary.csv").replace("perf_", ""), index=False)
    for part in parts:
        part.table.to_csv(out / f"{part.name}.csv", index=False)
    host = pd.DataFrame(list(machine().items()), columns=["", "machine"])
    lines = [
        "# What bench costs" if page == "perf.md" else "# bench against a bare PyTorch loop",
        "",
        f"Measured {when} with `{command}` (what `nox -s perf` runs; `bench/perf.py` says "
        "what each part measures). Every table is also a CSV beside this file.",
        "",
        host.to_markdown(index=False),
        "",
        "## Summary",
        "",
        markdown(summary),
    ]
    for part in parts:
        lines += [
            "",
            f"## {part.title}",
            "",
            part.about,
            "",
            markdown(part.table),
        ]
        lines += [f"\n{error}" for error in part.errors]
    (out / page).write_text("\n".join(lines) + "\n")
    say(f"wrote {out / page} and the CSVs beside it")


def parser() -> argparse.ArgumentParser:
    def show(value: Any) -> str:
        if value is None:
            return "the config's"
        return " ".join(map(str, value)) if isinstance(value, list) else str(value)

    def sizes(key: str) -> str:
        return f"(default: {show(FULL[key])}; with --quick: {show(QUICK[key])})"

    p = argparse.ArgumentParser(
        prog="python -m bench.perf",
        description="What bench costs: a bench run against a bare PyTorch loop, MLflow's share, "
        "augmentation throughput, a sweep's per-job overhead, the report over many runs. "
        "See the module's docstring (bench/perf.py) for what each part measures.",
    )
    p.add_argument(
        "what",
        nargs="+",
        choices=[*PARTS, "all", *CHECKS],
        help="the parts to time, or all of them; accuracy (not in all): the CIFAR-10 CPU "
        "study's accuracy against the bare loop's, on real CIFAR-10 (--cifar-root)",
    )
    p.add_argument("--quick", action="store_true", help="small sizes: a try-out of a few minutes")
    p.add_argument("--out", metavar="DIR", help="write perf.md and a CSV per table to DIR")
    p.add_argument(
        "--csv", metavar="PATH", help="write the table (of several parts: the summary) as CSV"
    )
    p.add_argument("--repeats", type=int, help=f"timed repeats of each measure {sizes('repeats')}")
    g = p.add_argument_group("train")
    g.add_argument(
        "--settings", nargs="+", choices=SETTINGS, default=list(SETTINGS), help="(default: both)"
    )
    g.add_argument("--digits-epochs", type=int, help=f"epochs of digits {sizes('digits_epochs')}")
    g.add_argument(
        "--cifar-epochs", type=int, help=f"epochs of cifar10_cpu {sizes('cifar_epochs')}"
    )
    g.add_argument(
        "--cifar-per-class",
        type=int,
        help=f"cifar10_cpu's training images per class {sizes('cifar_per_class')}",
    )
    g.add_argument(
        "--cifar-root",
        metavar="DIR",
        help="real CIFAR-10 in torchvision's layout (default: random images in it)",
    )
    g = p.add_argument_group("accuracy")
    g.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds (default: 0 1 2)")
    g.add_argument(
        "--schedules",
        nargs="+",
        default=["constant", "cosine"],
        help="schedules (default: constant cosine)",
    )
    g.add_argument(
        "--bench-store",
        metavar="URI",
        help="take bench's side from the finished runs of this MLflow store (the study's own) "
        "instead of training them again",
    )
    g = p.add_argument_group("augment")
    g.add_argument("--images", type=int, help=f"training images of the epoch {sizes('images')}")
    g.add_argument("--batch", type=int, default=128, help="batch size (default: 128)")
    g.add_argument(
        "--workers",
        type=int,
        default=min(8, os.cpu_count() or 1),
        help="the DataLoader's worker processes (default: one per core, at most 8)",
    )
    g.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch's CPU threads in this process (default: 1, as trainer.num_threads)",
    )
    g = p.add_argument_group("sweep")
    g.add_argument("--jobs", type=int, help=f"runs of the grid {sizes('jobs')}")
    g = p.add_argument_group("report")
    g.add_argument("--runs", type=int, nargs="+", help=f"sizes, in runs {sizes('runs')}")
    g.add_argument("--epochs", type=int, help=f"epochs per run {sizes('epochs')}")
    g.add_argument("--store", metavar="DIR", help="keep the store in DIR and reuse what it holds")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser().parse_args(argv)
    for key, value in (QUICK if args.quick else FULL).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    when = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    command = " ".join(["python -m bench.perf", *argv])
    parts = []
    wanted = [p for p in PARTS if p in args.what or "all" in args.what]
    wanted += [c for c in CHECKS if c in args.what]
    for name in wanted:
        if name == "accuracy":
            epochs = args.cifar_epochs if "--cifar-epochs" in argv else None
            part = check_accuracy(
                args.seeds, args.schedules, epochs, args.cifar_root, bench_store=args.bench_store
            )
        elif name == "train":
            part = time_train(
                args.settings,
                args.repeats,
                args.digits_epochs,
                args.cifar_epochs,
                args.cifar_root,
                args.cifar_per_class,
            )
        elif name == "augment":
            part = time_augment(args.images, args.batch, args.workers, args.threads, args.repeats)
        elif name == "sweep":
            part = time_sweep(args.jobs, args.repeats)
        else:
            part = time_reports(args.runs, args.epochs, args.store)
        print_part(part)
        parts.append(part)
    summary = pd.DataFrame([line for part in parts for line in part.summary])
    if len(parts) > 1:
        print("\nSummary")
        print(shown(summary).to_string(index=False))
    if args.csv:
        (summary if len(parts) > 1 else parts[0].table).to_csv(args.csv, index=False)
    if args.out:
        write_out(Path(args.out), parts, summary, command, when)
    return 0


if __name__ == "__main__":
    sys.exit(main())
