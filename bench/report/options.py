"""What a report compares (``Options``: the baseline, the headline metric, the claims, the
figures' formats and width) and what it found (``Report``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from bench import analysis, plots
from bench.analysis import claims as claims_mod

HEADLINES = ("final_val_acc", "best_val_acc", "test_acc")


METRIC_NAMES = {
    "final_val_acc": "final val acc",
    "best_val_acc": "best val acc",
    "test_acc": "test acc",
}


FORMATS = ("png", "svg", "pdf")


@dataclass
class Options:
    """What a report compares: the ``baseline`` schedule, the ``metric`` of the headline table
    and the claims, extra ``claims`` (``report.claims`` in config), figure ``formats`` and
    ``width`` (inches: the width the figures are printed at, ``bench.plots.WIDTH`` or
    ``bench.plots.COLUMN``)."""

    baseline: str = analysis.BASELINE
    metric: str = analysis.HEADLINE
    claims: Sequence[claims_mod.Claim] = ()
    formats: Sequence[str] = ("png", "svg")
    width: float = plots.WIDTH
    # Seeds run in rounds until decided (``bench.sequential``): the seeds per arm at each look,
    # and why the rounds stopped; empty for a report of a fixed set of seeds.
    looks: Sequence[int] = ()
    stopping: str = ""
    # How a study made its runs, when a driver made them in rounds (``bench.budget``): said
    # under "What was run".
    made: str = ""


def options_from(config: dict) -> Options:
    """The ``report`` node of a run config (checked by ``bench.config``) as ``Options``."""
    return Options(
        baseline=config.get("baseline", analysis.BASELINE),
        metric=config.get("metric", analysis.HEADLINE),
        claims=claims_mod.parse(config.get("claims") or []),
        formats=tuple(config.get("formats") or ("png", "svg")),
        width=float(config.get("width") or plots.WIDTH),
    )


@dataclass
class Report:
    folder: Path
    accuracy: pd.DataFrame
    stability: pd.DataFrame
    claims: pd.DataFrame
    n_finished: int
    n_unfinished: int
    warnings: list[str]
    options: Options = field(default_factory=Options)
    ensemble: pd.DataFrame | None = None
    claims_at_best_lr: pd.DataFrame | None = None  # where the base LR is swept
    view: str | None = None  # the key of the sweep's saved view in MLflow's UI, when one was saved
