"""A report's own data, kept in its folder (``data/``): the runs, their validation curves and
the LR traces it was drawn from, with what it compared. ``bench-report --from FOLDER`` draws the
report again from them, without the MLflow store: a new figure style, another baseline or
headline, on another machine. Plain files a reader can load too:

- ``runs.json``: one record per run, as ``bench.tracking.load_runs`` gives it (its params and
  tags as objects);
- ``epochs.csv``: the finished runs' validation curves (``run_id, schedule, seed, epoch,
  val_acc, ...``);
- ``lr.csv``: the LR at every optimizer step of the runs the LR figure draws (``run_id, step,
  lr``);
- ``report.json``: the experiment, the scope and commands named under "What was run", and the
  report's options (baseline, headline metric, extra claims, figure formats, looks).

Numbers are written so that they read back exactly: a report drawn again from its data is the
same report."""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from bench import tracking
from bench.analysis import claims as claims_mod
from bench.report.options import Options

FOLDER = "data"
FILES = ("runs.json", "epochs.csv", "lr.csv", "report.json")


@dataclass
class Saved:
    """What a report was drawn from."""

    data: tracking.Runs
    lr: pd.DataFrame
    scope: str
    commands: list[str]
    options: Options


def save(folder: Path, saved: Saved) -> None:
    """Write ``saved`` into ``folder`` (made here)."""
    folder.mkdir(parents=True, exist_ok=True)
    records = [{k: _plain(v) for k, v in row.items()} for row in saved.data.runs.to_dict("records")]
    (folder / "runs.json").write_text(json.dumps(records, indent=1) + "\n")
    saved.data.epochs.to_csv(folder / "epochs.csv", index=False)
    saved.lr.to_csv(folder / "lr.csv", index=False)
    options = dataclasses.asdict(saved.options)
    runs = saved.data.runs
    about = {
        "experiment": saved.data.experiment,
        # JSON has one kind of number and writes NaN as null: the runs' numeric columns' types
        "numeric": {c: str(t) for c, t in runs.dtypes.items() if t.kind in "iuf"},
        "scope": saved.scope,
        "commands": list(saved.commands),
        "options": {k: list(v) if isinstance(v, tuple) else v for k, v in options.items()},
    }
    (folder / "report.json").write_text(json.dumps(about, indent=1) + "\n")


def load(folder: Path) -> Saved:
    """What ``save`` wrote into ``folder``; a ``LookupError`` naming the missing file when a
    folder holds no report's data (a report written before reports kept it, say)."""
    missing = [name for name in FILES if not (folder / name).is_file()]
    if missing:
        raise LookupError(
            f"{folder} holds no report's data (missing: {', '.join(missing)}); a report keeps "
            f"it in its {FOLDER}/ folder: draw the report from the MLflow store once"
        )
    about = json.loads((folder / "report.json").read_text())
    runs = pd.DataFrame(json.loads((folder / "runs.json").read_text()))
    for column, dtype in about["numeric"].items():
        runs[column] = pd.to_numeric(runs[column]).astype(dtype)
    exact = {"float_precision": "round_trip"}
    epochs = pd.read_csv(folder / "epochs.csv", dtype={"run_id": str, "schedule": str}, **exact)
    lr = pd.read_csv(folder / "lr.csv", dtype={"run_id": str}, **exact)
    opts = about["options"]
    options = Options(
        baseline=opts["baseline"],
        metric=opts["metric"],
        claims=tuple(claims_mod.Claim(**c) for c in opts["claims"]),
        formats=tuple(opts["formats"]),
        looks=tuple(opts["looks"]),
        stopping=opts["stopping"],
        made=opts["made"],
    )
    data = tracking.Runs(about["experiment"], runs, epochs)
    return Saved(data, lr, about["scope"], list(about["commands"]), options)


def _plain(value: object) -> object:
    """A value JSON writes exactly: NaN as null, numpy scalars as Python numbers."""
    if hasattr(value, "item") and not isinstance(value, (dict, list, str)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else value
    return value
