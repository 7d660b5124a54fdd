"""Reading runs back in bulk: one search for the runs, metric histories for many runs per
query where the store allows it (``_histories``), as the tidy frames the analysis takes."""

from __future__ import annotations

import functools
import json
import logging
import math
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
from mlflow.entities import RunStatus, ViewType
from mlflow.tracking import MlflowClient

from bench.tracking.store import client
from bench.tracking.tags import (
    BRANCHED_AT_TAG,
    BRANCHES_TAG,
    DIVERGED_TAG,
    ENSEMBLE_METRICS,
    EPOCH_METRICS,
    ERROR_TAG,
    KIND_TAG,
    LINK_PREFIX,
    LOSSES,
    OVERRIDES_TAG,
    PARENT_TAG,
)

log = logging.getLogger("bench")


# Bulk reads (``_histories``): run ids per query (well under SQLite's limit on the values of an
# ``IN (...)`` list, 32766 since SQLite 3.32), and points per query. A query that would return
# more than BULK_PAGE points is cut short by the store without saying so; ``_histories`` notices
# (it asks for one point more) and asks again for the runs it did not get whole.
BULK_RUNS = 500


BULK_PAGE = 200_000


RUN_COLUMNS = [
    "run_id",
    "run_name",
    "status",
    "schedule",
    "seed",
    "sweep",
    "start_time",
    "end_time",
    "trained_from",
    "diverged",
    "test_acc",
    "train_loss_final",
    "val_loss_final",
    *ENSEMBLE_METRICS,
    "n_snapshots",
    "params",
    "tags",
]


EPOCH_COLUMNS = ["run_id", "schedule", "seed", "epoch", *EPOCH_METRICS, "time_s"]


LR_COLUMNS = ["run_id", "step", "lr"]


@dataclass
class Runs:
    """Tidy frames of one experiment's runs.

    ``runs``: one row per run, in the order they started: ``run_id, run_name, status, schedule,
    seed, sweep`` (the parent run's id, "" for a run outside a sweep), ``start_time, end_time``
    (seconds since the epoch, NaN when unknown), ``trained_from`` (when it began training: its
    start, or for a run branched from another's checkpoint, whose start is back-dated, the
    moment it branched), ``diverged`` (the run has tag ``bench.diverged``,
    other than "false" or "0", or its last ``train_loss`` or ``val_loss`` is NaN or infinite),
    ``test_acc``, ``train_loss_final`` and ``val_loss_final`` (the
    last ``train_loss`` and ``val_loss``), the
    snapshot ensemble's ``val_acc_ensemble, test_acc_ensemble, n_snapshots`` (NaN, NaN, 0 without
    one), ``params`` and ``tags``, the run's MLflow params and tags as dicts; missing metrics NaN;
    ``epochs``: finished runs only, one row per epoch that logged ``val_acc``
    (``run_id, schedule, seed, epoch, val_acc, time_s``), where ``time_s``
    is the seconds from the run's start to its ``val_acc`` of that epoch; runs in the order of
    ``runs``, epochs ascending. Per-step learning rates are not here: ``load_lr``.
    """

    experiment: str
    runs: pd.DataFrame
    epochs: pd.DataFrame

    @property
    def finished(self) -> pd.DataFrame:
        return self.runs[self.runs["status"] == "FINISHED"]


def experiment_names(uri: str) -> list[str]:
    return [e.name for e in client(uri).search_experiments()]


def search(mc: MlflowClient, experiment_id: str, filter_string: str, **kw) -> Iterator[Any]:
    token = None
    while True:
        page = mc.search_runs(
            [experiment_id],
            filter_string=filter_string,
            run_view_type=ViewType.ACTIVE_ONLY,
            max_results=1000,
            page_token=token,
            **kw,
        )
        yield from page
        token = page.token
        if not token:
            return


def _experiment_id(mc: MlflowClient, uri: str, experiment: str) -> str:
    found = mc.get_experiment_by_name(experiment)
    if found is None or found.lifecycle_stage == "deleted":
        known = ", ".join(experiment_names(uri)) or "none"
        raise LookupError(f"no experiment {experiment!r} in {uri}; experiments there: {known}")
    return found.experiment_id


def experiment_id(uri: str, experiment: str) -> str:
    """The id of an existing experiment; LookupError naming the ones there are if none."""
    return _experiment_id(client(uri), uri, experiment)


def _quote(value: str) -> str:
    """A string value of an MLflow search filter."""
    value = str(value)
    if "'" not in value:
        return f"'{value}'"
    if '"' not in value:
        return f'"{value}"'
    raise ValueError(f"MLflow cannot search for a value with both kinds of quotes: {value!r}")


def equals(kind: str, key: str, value: str) -> str:
    """``tags.`key` = 'value'``: an exact match in an MLflow search filter."""
    if "`" in key:
        raise ValueError(f"MLflow cannot search for a name with a backtick: {key!r}")
    return f"{kind}.`{key}` = {_quote(value)}"


def latest_sweep(uri: str, experiment: str) -> str:
    """The id of the experiment's most recently started sweep."""
    mc = client(uri)
    experiment_id = _experiment_id(mc, uri, experiment)
    found = mc.search_runs(
        [experiment_id],
        filter_string=equals("tags", KIND_TAG, "sweep"),
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    if not found:
        raise LookupError(f"experiment {experiment!r} in {uri} has no sweep yet")
    return found[0].info.run_id


def check_sweep(uri: str, experiment: str, run_id: str) -> str:
    """``run_id`` if it is a sweep's parent run in ``experiment``; else LookupError."""
    mc = client(uri)
    experiment_id = _experiment_id(mc, uri, experiment)
    found = mc.search_runs(
        [experiment_id],
        filter_string=f"{equals('tags', KIND_TAG, 'sweep')} and attributes.run_id = '{run_id}'",
    )
    if not found:
        raise LookupError(
            f"no sweep {run_id!r} in experiment {experiment!r}: give the id of a sweep's parent "
            "run (the runs named sweep-<date>-<time> in MLflow), or 'latest'"
        )
    return run_id


def seconds_of(ms: int | None) -> float:
    return ms / 1000 if ms else float("nan")


def sweep_info(uri: str, run_id: str) -> dict[str, Any]:
    """A sweep's parent run: its params (``command``, ...) plus ``run_name``, ``start_time`` and
    ``end_time`` (seconds since the epoch; ``end_time`` NaN while it runs) and ``status`` (these
    four win over params of the same name)."""
    run = client(uri).get_run(run_id)
    return {
        **run.data.params,
        "run_name": run.info.run_name,
        "start_time": seconds_of(run.info.start_time),
        "end_time": seconds_of(run.info.end_time),
        "status": run.info.status,
    }


def _in_sweep(query: str, sweep: str) -> list[str]:
    """``query`` narrowed to the runs of ``sweep``: those started under it, and those it reused
    from earlier sweeps (two searches: MLflow's filters have no "or")."""
    return [
        f"{query} and {equals('tags', PARENT_TAG, sweep)}",
        f"{query} and {equals('tags', LINK_PREFIX + sweep, 'reused')}",
    ]


def _unique(runs: Iterator[Any]) -> list[Any]:
    return list({run.info.run_id: run for run in runs}.values())


def sweep_runs(uri: str, experiment_id: str, sweep: str) -> pd.DataFrame:
    """``run_id, run_name, status, overrides, error, reused`` of a sweep's runs (``reused``:
    started by an earlier sweep)."""
    queries = _in_sweep(equals("tags", KIND_TAG, "run"), sweep)
    found = _unique(r for q in queries for r in search(client(uri), experiment_id, q))
    rows = [
        {
            "run_id": r.info.run_id,
            "run_name": r.info.run_name,
            "status": r.info.status,
            "overrides": r.data.tags.get(OVERRIDES_TAG, ""),
            "error": r.data.tags.get(ERROR_TAG, ""),
            "reused": r.data.tags.get(PARENT_TAG) != sweep,
        }
        for r in found
    ]
    columns = ["run_id", "run_name", "status", "overrides", "error", "reused"]
    return pd.DataFrame(rows, columns=columns)


Point = tuple[str, int, float, int]  # run_id, step, value, timestamp (ms)


def _read_columns(store: Any, run_ids: list[str], key: str, limit: int) -> list[Point]:
    """``SqlAlchemyStore.get_metric_history_bulk`` (same filter, order and limit, same hook for
    workspaces), through the store's session, but reading four columns instead of building an
    ORM object and an MLflow entity per point: ten times faster, which a report over 1,000 runs
    needs (~100,000 points per metric)."""
    from mlflow.entities.entity_type import EntityAssociationType
    from mlflow.store.tracking.dbmodels.models import SqlMetric

    with store.ManagedSessionMaker() as session:
        run_ids = store._filter_entity_ids(session, EntityAssociationType.RUN, list(run_ids))
        rows = (
            session.query(
                SqlMetric.run_uuid,
                SqlMetric.step,
                SqlMetric.value,
                SqlMetric.timestamp,
                SqlMetric.is_nan,
            )
            .filter(SqlMetric.key == key, SqlMetric.run_uuid.in_(run_ids))
            .order_by(SqlMetric.run_uuid, SqlMetric.timestamp, SqlMetric.step, SqlMetric.value)
            .limit(limit)
            .all()
        )
    nan = float("nan")
    return [(r, s, nan if is_nan else v, t) for r, s, v, t, is_nan in rows]


def _read_bulk(store: Any, run_ids: list[str], key: str, limit: int) -> list[Point]:
    """The store's own ``get_metric_history_bulk``."""
    return [
        (m.run_id, m.step, m.value, m.timestamp)
        for m in store.get_metric_history_bulk(run_ids, key, limit)
    ]


def _bulk_reader(store: Any) -> Callable[[list[str], str, int], list[Point]] | None:
    """How to read a metric of many runs in one query from ``store``: ``_read_columns`` for a
    SQLAlchemy store (SQLite, PostgreSQL, ...), ``_read_bulk`` for another store that has
    ``get_metric_history_bulk``, None for the others (REST, ...)."""
    try:
        from mlflow.store.tracking.dbmodels.models import SqlMetric  # noqa: F401
        from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

        if isinstance(store, SqlAlchemyStore):
            return functools.partial(_read_columns, store)
    except ImportError:  # an MLflow laid out otherwise: its public bulk call still serves
        pass
    if hasattr(store, "get_metric_history_bulk"):
        return functools.partial(_read_bulk, store)
    return None


def _histories(mc: MlflowClient, run_ids: Sequence[str], key: str) -> list[Point]:
    """Every point of metric ``key`` of these runs: each run's points together, in the order
    ``get_metric_history`` gives them (by timestamp, step, value); read for many runs a query.

    The bulk query (``_bulk_reader``: that of ``get_metric_history_bulk``) asks for BULK_RUNS runs
    at a time and has no paging: it returns the first ``limit`` points, ordered by run id, and
    leaves out the others without a word. So it asks for BULK_PAGE + 1 points; when they all come
    back, the answer was cut short: the runs before the last one in it came whole and are kept,
    and the others are asked again. A run with more than BULK_PAGE points of its own is read
    alone (``get_metric_history``, unpaged). A store without a bulk query is read run by run.
    """

    def one_run(run_id: str) -> list[Point]:
        return [(run_id, m.step, m.value, m.timestamp) for m in mc.get_metric_history(run_id, key)]

    run_ids = list(dict.fromkeys(run_ids))
    read = _bulk_reader(mc._tracking_client.store)
    if read is None:
        return [p for run_id in run_ids for p in one_run(run_id)]
    found: list[Point] = []
    for start in range(0, len(run_ids), BULK_RUNS):
        chunk = run_ids[start : start + BULK_RUNS]
        while chunk:
            points = read(chunk, key, BULK_PAGE + 1)
            if len(points) <= BULK_PAGE:  # the whole answer
                found += points
                break
            cut = points[-1][0]  # this run, at least, came back in part
            whole = {p[0] for p in points} - {cut}
            if whole:
                found += [p for p in points if p[0] in whole]
            else:  # a run with more than a page of points
                found += one_run(cut)
                whole = {cut}
            chunk = [run_id for run_id in chunk if run_id not in whole]
    return found


def _per_step(
    mc: MlflowClient, run_ids: Sequence[str], key: str, with_time: bool = False
) -> pd.DataFrame:
    """``run_id, step, <key>`` (and ``<key>_ms``, the point's timestamp, with ``with_time``): one
    row per run and step, the value logged last when a step has several."""
    frame = pd.DataFrame.from_records(
        _histories(mc, run_ids, key), columns=["run_id", "step", key, f"{key}_ms"]
    )
    frame = frame.astype({"step": "int64", key: "float64", f"{key}_ms": "int64"})
    if not with_time:
        frame = frame.drop(columns=f"{key}_ms")
    # Each run's points come by timestamp: the last of a step is the one logged last.
    return frame.drop_duplicates(["run_id", "step"], keep="last")


def _not_finite(value: float) -> bool:
    """NaN or infinite; MLflow's SQL stores keep an infinity as the largest float."""
    return not math.isfinite(value) or abs(value) >= sys.float_info.max


def _is_true(value: str | None) -> bool:
    return value is not None and value.strip().lower() not in ("false", "0")


def load_runs(
    uri: str,
    experiment: str,
    sweeps: Sequence[str] | None = None,
    tags: Mapping[str, str] | None = None,
    params: Mapping[str, str] | None = None,
) -> Runs:
    """Read an experiment's runs back from MLflow as tidy frames (``Runs``).

    ``sweeps``: only the runs of these sweeps, nested under their parent runs or reused by them
    from earlier sweeps (an empty list: no run);
    ``tags``, ``params``: only the runs with exactly these tag and param values. Every run
    (tag ``bench.kind=run``) is listed in ``runs`` with its status; only finished runs get their
    per-epoch histories, read in bulk (``_histories``).
    """
    mc = client(uri)
    experiment_id = _experiment_id(mc, uri, experiment)
    query = [equals("tags", KIND_TAG, "run")]
    query += [equals("tags", k, v) for k, v in (tags or {}).items()]
    query += [equals("params", k, v) for k, v in (params or {}).items()]
    queries = (
        [" and ".join(query)]
        if sweeps is None
        else [q for s in dict.fromkeys(sweeps) for q in _in_sweep(" and ".join(query), s)]
    )
    found = _unique(
        run
        for q in queries
        for run in search(mc, experiment_id, q, order_by=["attributes.start_time ASC"])
    )
    if len(queries) > 1:
        found.sort(key=lambda run: run.info.start_time or 0)
    nan = float("nan")
    rows = []
    for run in found:
        tags_, metrics = dict(run.data.tags), run.data.metrics
        rows.append(
            {
                "run_id": run.info.run_id,
                "run_name": run.info.run_name,
                "status": run.info.status,
                "schedule": tags_.get("schedule", "?"),
                "seed": int(tags_.get("seed", -1)),
                "sweep": tags_.get(PARENT_TAG, ""),
                "start_time": seconds_of(run.info.start_time),
                "end_time": seconds_of(run.info.end_time),
                "trained_from": seconds_of(
                    int(tags_[BRANCHED_AT_TAG]) if BRANCHED_AT_TAG in tags_ else run.info.start_time
                ),
                # A NaN or infinite loss stays so once it appears: the last value tells.
                "diverged": _is_true(tags_.get(DIVERGED_TAG))
                or any(_not_finite(metrics[k]) for k in LOSSES if k in metrics),
                "test_acc": metrics.get("test_acc", nan),
                "train_loss_final": metrics.get("train_loss", nan),
                "val_loss_final": metrics.get("val_loss", nan),
                **{k: metrics.get(k, nan) for k in ENSEMBLE_METRICS},
                "n_snapshots": int(run.data.params.get("n_snapshots", 0)),
                "params": dict(run.data.params),
                "tags": tags_,
            }
        )
    runs = pd.DataFrame(rows, columns=RUN_COLUMNS)
    finished = runs[runs["status"] == RunStatus.to_string(RunStatus.FINISHED)]
    return Runs(experiment=experiment, runs=runs, epochs=_epochs(mc, finished))


def _epochs(mc: MlflowClient, finished: pd.DataFrame) -> pd.DataFrame:
    """The ``epochs`` frame of ``Runs`` for the runs of ``finished`` (a ``runs`` frame)."""
    run_ids = list(finished["run_id"])
    epochs = _per_step(mc, run_ids, "val_acc", with_time=True)
    info = finished.set_index("run_id")
    start_ms = epochs["run_id"].map(info["start_time"]) * 1000
    epochs["time_s"] = (epochs["val_acc_ms"] - start_ms) / 1000
    epochs["schedule"] = epochs["run_id"].map(info["schedule"])
    epochs["seed"] = epochs["run_id"].map(info["seed"]).astype("int64")
    epochs["order"] = epochs["run_id"].map({r: i for i, r in enumerate(run_ids)})
    epochs = epochs.sort_values(["order", "step"]).rename(columns={"step": "epoch"})
    return epochs[EPOCH_COLUMNS].reset_index(drop=True)


def load_lr(uri: str, run_ids: Sequence[str]) -> pd.DataFrame:
    """``run_id, step, lr``: the learning rate of each optimizer step of these runs (step =
    0-based optimizer step), runs in the order given, steps ascending; read in bulk."""
    run_ids = list(dict.fromkeys(run_ids))
    lr = _per_step(client(uri), run_ids, "lr")
    lr["order"] = lr["run_id"].map({r: i for i, r in enumerate(run_ids)})
    return lr.sort_values(["order", "step"])[LR_COLUMNS].reset_index(drop=True)


def elapsed_ms(uri: str, run_id: str, epoch: int) -> int:
    """Milliseconds from the start of run ``run_id`` to its validation after ``epoch`` (0 when
    the run has none recorded there)."""
    mc = client(uri)
    start = mc.get_run(run_id).info.start_time
    points = [m for m in mc.get_metric_history(run_id, "val_acc") if m.step == epoch]
    return max(0, points[-1].timestamp - start) if points else 0


def branch_point(uri: str, sweep: str, seed: int, epoch: int) -> str | None:
    """The checkpoint that the finished run of ``seed`` in sweep ``sweep`` kept at ``epoch``
    (``trainer.keep_epochs``; tag ``bench.branches``), or None."""
    mc = client(uri)
    experiment_id = mc.get_run(sweep).info.experiment_id
    for q in _in_sweep(equals("tags", KIND_TAG, "run"), sweep):
        for r in search(mc, experiment_id, q):
            kept = r.data.tags.get(BRANCHES_TAG)
            if r.info.status == "FINISHED" and r.data.tags.get("seed") == str(seed) and kept:
                path = json.loads(kept).get(str(epoch))
                if path:
                    return path
    return None
