"""How long a report takes over many runs: ``python -m bench.perf report``.

Builds synthetic runs in a real SQLite MLflow store, shaped like the runs ``bench`` records (see
``bench.tracking``): one experiment per size, a sweep's parent run with every run nested under it,
tags ``bench.kind=run``, ``schedule`` and ``seed``, the flattened config as params, ``val_acc``,
``val_loss`` and ``train_loss`` per epoch (step = epoch, 1..E), ``lr`` at every optimizer step
(LR_STEPS_PER_EPOCH per epoch) and ``test_acc`` at the end, status FINISHED. Then it times

- ``load``: ``bench.tracking.load_runs`` of the whole experiment, in this process (whose MLflow
  client is already open: a fresh process first spends a second or two opening the store);
- ``report``: ``bench.report.main([... "--all" ...])``, the whole report (its loading included),
  in this process too; an error there is printed for that row and the next size goes on.

and prints one row per size: runs, epochs, create s, load s, report s (``--csv PATH`` writes the
same table). With ``--store DIR`` the store is kept in DIR and a size already built there is
reused (its create s is then empty); without it the store lives in a temporary folder.

    python -m bench.perf report --runs 100 1000 --epochs 100 --store /tmp/perf
"""

from __future__ import annotations

import argparse
import contextlib
import io
import math
import multiprocessing
import os
import random
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pandas as pd
from mlflow.entities import Metric, Param
from mlflow.tracking import MlflowClient

from bench import tracking

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


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.perf", description=__doc__.split("\n")[0])
    p.add_argument("what", choices=["report"], help="what to time (the report)")
    p.add_argument("--runs", type=int, nargs="+", default=[100, 1000], help="sizes, in runs")
    p.add_argument("--epochs", type=int, default=100, help="epochs per run (default: 100)")
    p.add_argument("--store", metavar="DIR", help="keep the store in DIR and reuse what it holds")
    p.add_argument("--csv", metavar="PATH", help="also write the table as CSV")
    args = p.parse_args(argv)

    with contextlib.ExitStack() as stack:
        folder = args.store or stack.enter_context(tempfile.TemporaryDirectory(prefix="perf-"))
        folder = Path(folder).resolve()
        folder.mkdir(parents=True, exist_ok=True)
        uri = f"sqlite:///{folder / 'mlflow.db'}"
        print(f"store: {uri}", file=sys.stderr)
        rows, errors = [], []
        for runs in args.runs:
            created = build(uri, runs, args.epochs)
            loaded = time_load(uri, runs, args.epochs)
            reported = time_report(uri, runs, args.epochs, folder / "reports")
            if isinstance(reported, str):
                errors.append(f"report of {runs} runs failed: {reported}")
                reported = float("nan")
            rows.append(
                {
                    "runs": runs,
                    "epochs": args.epochs,
                    "create s": float("nan") if created is None else created,
                    "load s": loaded,
                    "report s": reported,
                }
            )
            print(f"{runs} runs done", file=sys.stderr)
    table = pd.DataFrame(rows)
    print(table.to_string(index=False, float_format=lambda x: f"{x:.2f}", na_rep="-"))
    for error in errors:
        print(error)
    if args.csv:
        table.to_csv(args.csv, index=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
