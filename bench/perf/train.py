"""``train``: a bench run against a bare PyTorch loop doing the same training, MLflow's share
of the run; and ``accuracy``, the two on real CIFAR-10."""

from __future__ import annotations

import math
import os
import random
import shutil
import statistics
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench import tracking
from bench.perf.common import (
    MLFLOW_SHARE_TARGET,
    RATIO_TARGETS,
    Part,
    compose,
    measure,
    say,
    stats,
    write_cifar10,
)
from bench.perf.timers import file_timer, store_timer


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
    included, as in a bench run), training images, optimizer steps, final accuracies and the
    seconds of each epoch (``epoch_s``, its validation pass included)."""
    import torch
    from hydra.utils import instantiate
    from torch.nn import functional as F
    from torch.optim.lr_scheduler import LambdaLR

    from bench import devices, models, spec
    from bench.data import augment, contract

    start = time.perf_counter()
    # The trainer's "auto" values as a bench run settles them on this machine (precision,
    # channels_last, deterministic), then applied here by hand.
    checked = devices.settle(spec.of(config))
    trainer = {**checked.trainer, **checked.own["trainer"]}
    data, opt = checked.data, checked.optimizer
    if trainer.get("compile"):
        raise ValueError("the bare loop does not compile the network (trainer.compile)")
    if trainer.get("num_threads") is not None:
        torch.set_num_threads(trainer["num_threads"])
    device = torch.device("cuda" if devices.uses_cuda(checked.trainer) else "cpu")
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

    ends = [time.perf_counter()]
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
        _, val_acc = evaluate("val")  # reads its results back: the epoch's work is done
        ends.append(time.perf_counter())
    _, test_acc = evaluate("test")
    wall = time.perf_counter() - start
    return {
        "wall": wall,
        "images": n,
        "steps": total,
        "val_acc": val_acc,
        "test_acc": test_acc,
        "epoch_s": list(np.diff(ends)),  # each epoch, its validation pass included
    }


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
            "Lightning, MLflow) and by the bare loop written in `bench/perf/train.py`, on real "
            f"CIFAR-10 from {root}. The two draw their random numbers in different orders, so "
            "they are two samples of the same training; the summary gives bench - bare, paired "
            "by seed."
        ),
        summary=summary,
    )
