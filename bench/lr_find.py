"""The LR range test (Smith, 2017): ``bench-lr-find``.

For a few hundred steps the learning rate grows exponentially from ``lr_find.min_lr`` to
``lr_find.max_lr`` while the training loss of every step is recorded (Lightning's
``Tuner.lr_find`` runs the ramp and stops it early once the loss passes
``early_stop_threshold`` times its lowest). The curve is the loss smoothed by an exponential
moving average (beta 0.98, bias-corrected). From it:

- ``steepest``: the LR where the smoothed loss falls fastest per factor of LR (the most negative
  slope against log LR, leaving out the first ``SKIP_BEGIN`` steps and the last);
- ``min_loss``: the LR of the lowest smoothed loss, past which training turns unstable.

(Lightning's own suggestion takes the slope against the LR itself, which on an exponential ramp
favours the smallest LRs, so bench computes its own from the raw losses.)

The suggested base LR per schedule family (a starting point for a grid over ``optimizer.lr``, not
a substitute for one):

- a fixed LR (``constant``, and the schedule-free optimizers, which hold theirs): ``steepest``;
- a peak the schedule decays or cycles from (every other schedule): ``max(steepest,
  min_loss / 10)``, the larger of the two usual rules of thumb, since such a schedule spends few
  steps at its peak.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytorch_lightning as pl
from pytorch_lightning.tuner import Tuner

from bench import schedules

log = logging.getLogger("bench")

FIXED = ("constant", *[name for name, _ in schedules.SCHEDULE_FREE.values()])
BETA = 0.98
SKIP_BEGIN = 10


def smooth(losses: Sequence[float], beta: float = BETA) -> np.ndarray:
    """Exponential moving average of ``losses``, bias-corrected: ``avg_n / (1 - beta^n)`` after
    n values. A non-finite loss makes every later value non-finite."""
    out, avg = [], 0.0
    for n, loss in enumerate(losses, 1):
        avg = beta * avg + (1 - beta) * loss
        out.append(avg / (1 - beta**n))
    return np.array(out, dtype=float)


def steepest_lr(lrs: Sequence[float], smoothed: Sequence[float], skip_begin: int = SKIP_BEGIN):
    """The LR where ``smoothed`` falls fastest against log LR, among the finite points after
    the first ``skip_begin`` and before the last; None with fewer than 3 such points."""
    lrs, smoothed = np.asarray(lrs, dtype=float), np.asarray(smoothed, dtype=float)
    keep = np.arange(len(lrs))[skip_begin:-1]
    keep = keep[np.isfinite(smoothed[keep])]
    if len(keep) < 3:
        return None
    slope = np.gradient(smoothed[keep], np.log(lrs[keep]))
    return float(lrs[keep][np.argmin(slope)])


def min_loss_lr(lrs: Sequence[float], smoothed: Sequence[float]) -> float:
    """The LR at the lowest finite smoothed loss."""
    smoothed = np.asarray(smoothed, dtype=float)
    finite = np.flatnonzero(np.isfinite(smoothed))
    return float(np.asarray(lrs, dtype=float)[finite[np.argmin(smoothed[finite])]])


def suggestions(steepest: float, min_loss: float) -> pd.DataFrame:
    """The suggested base LR for every schedule and schedule-free optimizer, with its rule."""
    peak = max(steepest, min_loss / 10)
    rows = [
        {"schedule": name, "family": "fixed LR", "suggested_lr": steepest, "rule": "steepest"}
        for name in FIXED
    ]
    rows += [
        {
            "schedule": name,
            "family": "decaying or cyclical",
            "suggested_lr": peak,
            "rule": "max(steepest, min_loss / 10)",
        }
        for name in schedules.SCHEDULES
        if name not in FIXED
    ]
    return pd.DataFrame(rows, columns=["schedule", "family", "suggested_lr", "rule"])


def record_losses(module: pl.LightningModule) -> list[float]:
    """Make ``module`` keep the raw loss of every training step in the list returned. (The
    range test replaces the trainer's callbacks with its own, so a callback would not see them.)"""
    losses: list[float] = []
    training_step = module.training_step

    def recording(*args, **kwargs):
        loss = training_step(*args, **kwargs)
        losses.append(float(loss.detach()))
        return loss

    module.training_step = recording
    return losses


def run(
    config: Mapping[str, Any],
    *,
    tracking_uri: str,
    experiment_id: str,
    output_dir: str | Path,
    overrides: list[str] | None = None,
) -> pd.DataFrame:
    """The range test of ``config`` (resolved, plain data; its ``lr_find`` node sets the range).
    Writes ``lr_find.csv`` (the curve), ``suggestions.csv`` and ``lr_find.png/.svg`` to
    ``output_dir``, records them in an MLflow run named ``lr-find`` (tag ``bench.kind=lr_find``,
    so reports leave it out) with the curve as metrics ``lr_find_lr`` and ``lr_find_loss`` per
    step, and returns the suggestions."""
    from bench import config as bench_config
    from bench import devices, lightning, plots, tracking
    from bench import run as bench_run

    run = devices.settle(bench_config.validate(config))
    lightning.quiet_lightning()
    bench_run.set_threads(config)
    pl.seed_everything(config["seed"], workers=True, verbose=False)
    settings = config["lr_find"]
    recorder = tracking.RunRecorder(
        tracking_uri,
        experiment_id,
        run_name="lr-find",
        tags={tracking.OVERRIDES_TAG: " ".join(overrides or [])},
        kind="lr_find",
    )
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    try:
        settled = {**config, "trainer": {**run.trainer, **run.own["trainer"]}}
        recorder.log_params(tracking.flatten(settled))
        datamodule, module = bench_run.build(run)
        raw = record_losses(module)
        with tempfile.TemporaryDirectory() as scratch:
            trainer = pl.Trainer(
                **run.trainer
                | {
                    "max_epochs": -1,  # as many epochs as the range test's steps take
                    "max_steps": settings["steps"],
                    "logger": False,
                    "enable_progress_bar": False,
                    "enable_checkpointing": False,
                    "default_root_dir": scratch,
                }
            )
            finder = Tuner(trainer).lr_find(
                module,
                datamodule=datamodule,
                min_lr=settings["min_lr"],
                max_lr=settings["max_lr"],
                num_training=settings["steps"],
                early_stop_threshold=settings["early_stop_threshold"],
                update_attr=False,
            )
        lrs = finder.results["lr"][: len(raw)]
        curve = pd.DataFrame({"lr": lrs, "raw_loss": raw, "loss": smooth(raw)})
        min_loss = min_loss_lr(curve["lr"], curve["loss"])
        steepest = steepest_lr(curve["lr"], curve["loss"])
        if steepest is None:  # too few steps for a slope
            steepest = min_loss / 10
        found = suggestions(steepest, min_loss)
        curve.rename_axis("step").to_csv(out / "lr_find.csv")
        found.to_csv(out / "suggestions.csv", index=False)
        plots.save(plots.lr_range_test(curve, steepest, min_loss), out, "lr_find")
        for step, row in curve.iterrows():
            values = {"lr_find_lr": row["lr"]}
            if np.isfinite(row["loss"]):
                values["lr_find_loss"] = row["loss"]
            recorder.add(values, step=int(step))
        recorder.flush()
        recorder.log(
            {"lr_steepest": steepest, "lr_min_loss": min_loss, "steps_run": len(curve)}, step=0
        )
        for name in ("lr_find.csv", "suggestions.csv", "lr_find.png", "lr_find.svg"):
            recorder.log_artifact(out / name)
        recorder.finish("FINISHED")
    except (KeyboardInterrupt, SystemExit):
        recorder.finish_quietly("KILLED", error="interrupted")
        raise
    except BaseException as e:
        recorder.finish_quietly("FAILED", error=f"{type(e).__name__}: {e}")
        raise
    log.info(
        "LR range test over %d steps: steepest %.3g, min loss at %.3g (%s)",
        len(curve),
        steepest,
        min_loss,
        out,
    )
    return found
