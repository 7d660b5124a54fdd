"""``sweep``: the per-job overhead of a real ``bench-train -m`` grid, and the start-up of
``--help`` and of a bad-input error."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
from mlflow.tracking import MlflowClient

from bench import tracking
from bench.perf.common import ERROR_TARGET, FIRST_RUN_TARGET, Part, measure, say, stats


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


IMPORTS = """
import time
marks = [time.perf_counter()]
import torch
marks.append(time.perf_counter())
import pytorch_lightning
marks.append(time.perf_counter())
import mlflow
marks.append(time.perf_counter())
print(*(b - a for a, b in zip(marks, marks[1:])))
"""


def import_seconds(repeats: int) -> tuple[float, float, float]:
    """What a fresh process takes to import torch, then Lightning (torchmetrics and torchvision
    with it), then MLflow, which every run needs before it starts: the medians of ``repeats``."""
    import statistics

    times = []
    for _ in range(max(repeats, 1)):
        done = subprocess.run([sys.executable, "-c", IMPORTS], capture_output=True, text=True)
        times.append([float(v) for v in done.stdout.split()])
    return tuple(statistics.median(column) for column in zip(*times, strict=True))


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
        say("sweep: importing torch, Lightning and MLflow in a fresh process")
        torch_s, lightning_s, mlflow_s = import_seconds(repeats)
    imports = torch_s + lightning_s + mlflow_s
    rows = [
        {"measure": f"sweep of {jobs} runs: wall time (s)", "value": wall},
        {"measure": "sweep: time until its first run started (s)", "value": first},
        {"measure": "sweep: the runs' own time, MLflow start to end (s)", "value": own},
        {"measure": "sweep: mean run, MLflow start to end (s)", "value": own / jobs},
        {"measure": "sweep: per-job overhead, (wall - own) / N (s)", "value": per_job},
        {"measure": "sweep: from one run's end to the next's start (s)", "value": between},
        {"measure": "sweep: after the last run ended (s)", "value": after},
    ]
    for what, (median, low, high) in startup.items():
        rows.append(
            {"measure": f"{what}, start to exit (s)", "value": median, "min": low, "max": high}
        )
    rows += [
        {"measure": "import torch, in a fresh process (s)", "value": torch_s},
        {"measure": "then import pytorch_lightning (s)", "value": lightning_s},
        {"measure": "then import mlflow (s)", "value": mlflow_s},
    ]
    # min and max only where a measure was repeated (the start-up rows); NaN elsewhere
    table = pd.DataFrame(rows, columns=["measure", "value", "min", "max"])
    summary = [
        measure(f"sweep of {jobs} one-epoch runs: wall time (s)", wall),
        measure(
            "sweep: time until the first run started (s)",
            first,
            f"<= {FIRST_RUN_TARGET:g}",
            first <= FIRST_RUN_TARGET,
            why=(
                f"{imports:.1f} s of it is importing what a run needs, measured in a fresh "
                f"process: torch {torch_s:.1f} s, then Lightning {lightning_s:.1f} s (it imports "
                f"torchmetrics and torchvision), then MLflow {mlflow_s:.1f} s; the other "
                f"{first - imports:.1f} s: Hydra composing the {jobs} runs' configs, bench "
                "checking each of them, creating the store (a copy of the empty one kept in "
                "~/.cache/bench, after the first) and the sweep's parent run"
            ),
        ),
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
            "whole command; the bad input must exit with 2 before any run. The imports: a fresh "
            "`python -c` importing torch, then pytorch_lightning, then mlflow (median)."
        ),
        summary=summary,
        errors=errors,
    )
