"""Synthetic runs shaped like the runs ``bench`` records: params from the real config
(``compose`` and ``tracking.flatten``), the LR trace from ``bench.schedules``, plausible
learning curves."""

from __future__ import annotations

import functools
import math
import multiprocessing
import os
import random
import time
from concurrent.futures import ProcessPoolExecutor

from mlflow.entities import Metric, Param
from mlflow.tracking import MlflowClient

from bench import schedules, tracking
from bench.perf.common import compose

SCHEDULES = ("constant", "step", "cosine", "cosine_restarts", "polynomial")


LR_STEPS_PER_EPOCH = 10  # optimizer steps per epoch: the ``lr`` points of a run


BASE_LR = 0.1


BATCH = 1000  # metrics per log_batch (MLflow's limit)


WORKERS = min(4, os.cpu_count() or 1)  # processes that write runs (SQLite takes one write at once)


START = 1_700_000_000_000  # ms: when the first synthetic run starts


SECONDS_PER_EPOCH = 3.0


def experiment_name(runs: int, epochs: int) -> str:
    return f"perf-{runs}x{epochs}"


@functools.cache
def run_params(schedule: str, epochs: int) -> dict[str, str]:
    """A run's params as ``bench`` records them: the flattened config of the digits default
    (``tracking.flatten`` of the composed config) with this schedule and length, plus what the
    run adds; the seed and the run's name are set per run."""
    config = compose([f"schedule={schedule}", f"trainer.max_epochs={epochs}"])
    config["optimizer"]["lr"] = BASE_LR
    params = tracking.flatten(config)
    return params | {
        "num_classes": "10",
        "total_steps": str(LR_STEPS_PER_EPOCH * epochs),
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
        metrics.append(Metric("lr", schedules.lr_at(step, steps, BASE_LR, schedule), ms, step))
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
        params = run_params(schedule, epochs) | {
            "seed": str(seed),
            "run_name": f"{schedule}-seed{seed}",
        }
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
