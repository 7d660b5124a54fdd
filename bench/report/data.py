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
same report. In ``runs.json`` a missing number is ``null`` and an infinite one ``"inf"`` or
``"-inf"``, so any JSON reader loads it."""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from bench import rules, tracking
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
    (folder / "runs.json").write_text(json.dumps(records, indent=1, default=str) + "\n")
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


def locate(source: Path) -> tuple[Path, Path]:
    """The data folder and the report folder of ``source``, which names either (a report's
    folder holds ``data/``; a data folder holds ``report.json``), as absolute paths."""
    source = Path(source).resolve()
    if (source / "report.json").is_file() and not (source / FOLDER).is_dir():
        return source, source.parent
    return source / FOLDER, source


def load(folder: Path) -> Saved:
    """What ``save`` wrote into ``folder``; a ``LookupError`` that says what is wrong when it
    holds no report's data (a report written before reports kept it, say) or data that cannot
    be read."""
    if not folder.parent.is_dir():
        raise LookupError(f"no such folder: {folder.parent}")
    missing = [name for name in FILES if not (folder / name).is_file()]
    if missing:
        raise LookupError(
            f"{folder.parent} holds no report's data (missing: {', '.join(missing)} in "
            f"{FOLDER}/); a report keeps it there since this version: draw the report from the "
            "MLflow store once"
        )
    try:
        about = json.loads((folder / "report.json").read_text())
        runs = pd.DataFrame(json.loads((folder / "runs.json").read_text()))
        for column, dtype in about["numeric"].items():
            runs[column] = pd.to_numeric(runs[column]).astype(dtype)
        exact = {"float_precision": "round_trip"}
        epochs = pd.read_csv(folder / "epochs.csv", dtype={"run_id": str, "schedule": str}, **exact)
        lr = pd.read_csv(folder / "lr.csv", dtype={"run_id": str}, **exact)
        options = _options(about["options"])
        data = tracking.Runs(about["experiment"], runs, epochs)
        return Saved(data, lr, about["scope"], list(about["commands"]), options)
    except (ValueError, KeyError, TypeError) as e:  # JSONDecodeError is a ValueError
        raise LookupError(f"{folder}: the report's data cannot be read: {e!r}") from e


def _options(saved: dict) -> Options:
    """``Options`` as ``save`` wrote them; a field this version does not know is left out."""
    known = {f.name for f in dataclasses.fields(Options)}
    options = {k: v for k, v in saved.items() if k in known}
    options["claims"] = tuple(claims_mod.Claim(**c) for c in options.get("claims", ()))
    for key in ("formats", "looks"):
        if key in options:
            options[key] = tuple(options[key])
    if "width" in options and not rules.FIGURE_WIDTH[0](options["width"]):
        raise ValueError(f"width {options['width']!r}: allowed: {rules.FIGURE_WIDTH[1]}")
    return Options(**options)


def _plain(value: object) -> object:
    """A value JSON writes exactly: NaN as null, infinities as "inf" and "-inf", numpy scalars
    as Python numbers."""
    if hasattr(value, "item") and not isinstance(value, (dict, list, str)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else str(value)
    return value
