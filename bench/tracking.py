"""Everything that talks to MLflow: where runs are written and where they are read back.

Layout of the store:

- one MLflow experiment per bench experiment (``tracking.experiment`` in the config);
- one parent run per sweep (tag ``bench.kind=sweep``), its runs nested under it through the
  ``mlflow.parentRunId`` tag (tag ``bench.kind=run``);
- each run holds the flattened config as params plus ``total_steps`` and ``steps_per_epoch``, tags
  ``schedule`` and ``seed``, the metrics ``lr`` and ``train_loss_step`` at every optimizer step
  (step = 0-based optimizer step), ``train_loss``, ``val_acc`` and ``val_loss`` once per epoch
  (step = epoch number, 1 after the first epoch), ``test_acc`` once at the end, and the resolved
  config as ``config.yaml``.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from mlflow.entities import Metric, Param, RunStatus, ViewType
from mlflow.tracking import MlflowClient

log = logging.getLogger("bench")

KIND_TAG = "bench.kind"
PARENT_TAG = "mlflow.parentRunId"
ERROR_TAG = "bench.error"
OVERRIDES_TAG = "bench.overrides"
EPOCH_METRICS = ("val_acc", "val_loss")
ENSEMBLE_METRICS = ("val_acc_ensemble", "test_acc_ensemble")


# ---------------------------------------------------------------------------------------------
# Signals never land inside a store call
#
# Ctrl-C (SIGINT) or SIGTERM raised in the middle of a SQLAlchemy transaction can leave the
# transaction open and SQLite's lock held, so that the next write (marking the run KILLED) fails
# with "database is locked". Every function here that writes to the store therefore holds these
# signals back while it runs and delivers them, to whatever handler was there, once the call is
# over. (Reads are left interruptible: a long report stops at once on Ctrl-C.)

_DEFERRED = (signal.SIGINT, signal.SIGTERM)
_held = threading.local()


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """Hold SIGINT and SIGTERM until the block ends, then deliver them. Nests; does nothing
    outside the main thread (where Python runs no signal handler anyway)."""
    if threading.current_thread() is not threading.main_thread() or getattr(_held, "on", False):
        yield
        return
    received: list[int] = []
    previous = {s: signal.getsignal(s) for s in _DEFERRED}
    for s in _DEFERRED:
        signal.signal(s, lambda signum, frame: received.append(signum))
    _held.on = True
    try:
        yield
    finally:
        _held.on = False
        for s, handler in previous.items():
            signal.signal(s, signal.SIG_DFL if handler is None else handler)
        for s in received:
            signal.raise_signal(s)


def _store_call(function: Callable) -> Callable:
    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        with signals_deferred():
            return function(*args, **kwargs)

    return wrapper


def resolve_uri(uri: str | None = None, cwd: str | os.PathLike | None = None) -> str:
    """The tracking URI: ``uri`` if given, else ``$MLFLOW_TRACKING_URI``, else
    ``sqlite:///<cwd>/mlflow.db``. A SQLite file is made absolute against ``cwd`` (so that a job
    running in another folder writes to the same store)."""
    base = Path(cwd or os.getcwd()).resolve()
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{base / 'mlflow.db'}"
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        uri = f"sqlite:///{base / uri.removeprefix('sqlite:///')}"  # a relative file: anchor it
    return uri


def flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """``{"optimizer": {"lr": 0.1}}`` -> ``{"optimizer.lr": "0.1"}``; lists stay whole."""
    flat: dict[str, str] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat |= flatten(value, prefix=f"{name}.")
        else:
            flat[name] = str(value)
    return flat


@_store_call
def ensure_experiment(uri: str, name: str) -> str:
    """The id of experiment ``name``, created (with the store itself) if it does not exist yet."""
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        if experiment.lifecycle_stage == "deleted":
            client.restore_experiment(experiment.experiment_id)
        return experiment.experiment_id
    try:
        return client.create_experiment(name)
    except Exception:
        # Another process created it first.
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            raise
        return experiment.experiment_id


@_store_call
def start_sweep(
    uri: str, experiment_id: str, name: str, params: Mapping[str, Any], grid: list[list[str]]
) -> str:
    """Create a sweep's parent run, with the overrides of each of its runs as ``grid.json``;
    returns its id."""
    client = MlflowClient(uri)
    run = client.create_run(experiment_id, run_name=name, tags={KIND_TAG: "sweep"})
    client.log_batch(run.info.run_id, params=[Param(k, str(v)) for k, v in params.items()])
    client.log_text(run.info.run_id, json.dumps(grid, indent=1), "grid.json")
    return run.info.run_id


@_store_call
def end_run(uri: str, run_id: str, status: str = "FINISHED") -> None:
    MlflowClient(uri).set_terminated(run_id, status=status)


@_store_call
def log_artifacts(uri: str, run_id: str, folder: str | os.PathLike) -> None:
    MlflowClient(uri).log_artifacts(run_id, str(folder))


class RunRecorder:
    """One training run in MLflow (tag ``bench.kind``: ``run``, which reports read, or another
    kind they leave out). Per-step metrics are buffered and written in batches."""

    def __init__(
        self,
        uri: str,
        experiment_id: str,
        run_name: str,
        tags: Mapping[str, str],
        parent_run_id: str | None = None,
        kind: str = "run",
    ):
        self.client = MlflowClient(uri)
        all_tags = {KIND_TAG: kind, **tags}
        if parent_run_id:
            all_tags[PARENT_TAG] = parent_run_id
        with signals_deferred():
            run = self.client.create_run(experiment_id, run_name=run_name, tags=all_tags)
        self.run_id = run.info.run_id
        self._buffer: list[Metric] = []

    @_store_call
    def log_params(self, params: Mapping[str, Any]) -> None:
        self.client.log_batch(self.run_id, params=[Param(k, str(v)) for k, v in params.items()])

    @_store_call
    def log_text(self, text: str, artifact_file: str) -> None:
        self.client.log_text(self.run_id, text, artifact_file)

    @_store_call
    def log_artifact(self, path: str | os.PathLike, artifact_path: str | None = None) -> None:
        self.client.log_artifact(self.run_id, str(path), artifact_path)

    def add(self, metrics: Mapping[str, float], step: int) -> None:
        """Buffer metrics at ``step``; written at the next ``flush``."""
        now = int(time.time() * 1000)
        self._buffer += [Metric(k, float(v), now, step) for k, v in metrics.items()]

    @_store_call
    def flush(self) -> None:
        if self._buffer:
            self.client.log_batch(self.run_id, metrics=self._buffer)
            self._buffer = []

    def log(self, metrics: Mapping[str, float], step: int) -> None:
        self.add(metrics, step)
        self.flush()

    @_store_call
    def finish(
        self, status: str = "FINISHED", error: str | None = None, details: str | None = None
    ) -> None:
        """End the run; a failed one keeps its error as tag ``bench.error`` and, with
        ``details`` (a traceback), as the artifact ``error.txt``."""
        self.flush()
        if error:
            self.client.set_tag(self.run_id, ERROR_TAG, error[:5000])
        if details:
            self.client.log_text(self.run_id, details, "error.txt")
        self.client.set_terminated(self.run_id, status=status)

    def finish_quietly(self, status: str, error: str, details: str | None = None) -> None:
        """``finish`` on the way out of a failure: a store error is logged, never raised, so
        that the failure that ended the run is the one that propagates."""
        try:
            self.finish(status, error=error, details=details)
        except Exception:
            log.exception("could not mark MLflow run %s %s", self.run_id, status)


# ---------------------------------------------------------------------------------------------
# Reading back


@dataclass
class Runs:
    """Tidy frames of one experiment's runs.

    ``runs``: one row per run (``run_id, run_name, status, schedule, seed, sweep, test_acc``,
    the snapshot ensemble's ``val_acc_ensemble, test_acc_ensemble, n_snapshots`` (NaN, NaN, 0
    without one), and ``params``, the run's MLflow params as a dict);
    ``epochs``: finished runs' ``val_acc`` and ``val_loss`` per epoch
    (``run_id, schedule, seed, epoch, val_acc, val_loss``);
    ``lr``: finished runs' learning rate per optimizer step (``run_id, schedule, seed, step, lr``).
    """

    experiment: str
    runs: pd.DataFrame
    epochs: pd.DataFrame
    lr: pd.DataFrame

    @property
    def finished(self) -> pd.DataFrame:
        return self.runs[self.runs["status"] == "FINISHED"]


def experiment_names(uri: str) -> list[str]:
    return [e.name for e in MlflowClient(uri).search_experiments()]


def _search(client: MlflowClient, experiment_id: str, filter_string: str, **kw) -> Iterator[Any]:
    token = None
    while True:
        page = client.search_runs(
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


def _experiment_id(client: MlflowClient, uri: str, experiment: str) -> str:
    found = client.get_experiment_by_name(experiment)
    if found is None or found.lifecycle_stage == "deleted":
        known = ", ".join(experiment_names(uri)) or "none"
        raise LookupError(f"no experiment {experiment!r} in {uri}; experiments there: {known}")
    return found.experiment_id


def latest_sweep(uri: str, experiment: str) -> str:
    """The id of the experiment's most recently started sweep."""
    client = MlflowClient(uri)
    experiment_id = _experiment_id(client, uri, experiment)
    found = client.search_runs(
        [experiment_id],
        filter_string=f"tags.`{KIND_TAG}` = 'sweep'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    if not found:
        raise LookupError(f"experiment {experiment!r} in {uri} has no sweep yet")
    return found[0].info.run_id


def check_sweep(uri: str, experiment: str, run_id: str) -> str:
    """``run_id`` if it is a sweep's parent run in ``experiment``; else LookupError."""
    client = MlflowClient(uri)
    experiment_id = _experiment_id(client, uri, experiment)
    found = client.search_runs(
        [experiment_id],
        filter_string=f"tags.`{KIND_TAG}` = 'sweep' and attributes.run_id = '{run_id}'",
    )
    if not found:
        raise LookupError(
            f"no sweep {run_id!r} in experiment {experiment!r}: give the id of a sweep's parent "
            "run (the runs named sweep-<date>-<time> in MLflow), or 'latest'"
        )
    return run_id


def run_params(uri: str, run_id: str) -> dict[str, str]:
    return dict(MlflowClient(uri).get_run(run_id).data.params)


def sweep_runs(uri: str, experiment_id: str, sweep: str) -> pd.DataFrame:
    """``run_id, run_name, status, overrides, error`` of a sweep's runs."""
    client = MlflowClient(uri)
    rows = [
        {
            "run_id": r.info.run_id,
            "run_name": r.info.run_name,
            "status": r.info.status,
            "overrides": r.data.tags.get(OVERRIDES_TAG, ""),
            "error": r.data.tags.get(ERROR_TAG, ""),
        }
        for r in _search(
            client, experiment_id, f"tags.`{KIND_TAG}` = 'run' and tags.`{PARENT_TAG}` = '{sweep}'"
        )
    ]
    return pd.DataFrame(rows, columns=["run_id", "run_name", "status", "overrides", "error"])


def load_runs(uri: str, experiment: str, sweep: str | None = None) -> Runs:
    """Read an experiment's runs (or one sweep's) back from MLflow as tidy frames.

    Every run is listed in ``runs`` with its status; only finished runs get their histories.
    """
    client = MlflowClient(uri)
    experiment_id = _experiment_id(client, uri, experiment)
    query = f"tags.`{KIND_TAG}` = 'run'"
    if sweep:
        query += f" and tags.`{PARENT_TAG}` = '{sweep}'"
    rows, epochs, lrs = [], [], []
    for run in _search(client, experiment_id, query, order_by=["attributes.start_time ASC"]):
        run_id, status = run.info.run_id, run.info.status
        schedule = run.data.tags.get("schedule", "?")
        seed = int(run.data.tags.get("seed", -1))
        rows.append(
            {
                "run_id": run_id,
                "run_name": run.info.run_name,
                "status": status,
                "schedule": schedule,
                "seed": seed,
                "sweep": run.data.tags.get(PARENT_TAG, ""),
                "test_acc": run.data.metrics.get("test_acc", float("nan")),
                **{k: run.data.metrics.get(k, float("nan")) for k in ENSEMBLE_METRICS},
                "n_snapshots": int(run.data.params.get("n_snapshots", 0)),
                "params": dict(run.data.params),
            }
        )
        if status != RunStatus.to_string(RunStatus.FINISHED):
            continue
        per_epoch: dict[int, dict[str, float]] = {}
        for key in EPOCH_METRICS:
            for m in client.get_metric_history(run_id, key):
                per_epoch.setdefault(m.step, {})[key] = m.value
        epochs += [
            {"run_id": run_id, "schedule": schedule, "seed": seed, "epoch": e, **values}
            for e, values in sorted(per_epoch.items())
        ]
        lrs += [
            {"run_id": run_id, "schedule": schedule, "seed": seed, "step": m.step, "lr": m.value}
            for m in sorted(client.get_metric_history(run_id, "lr"), key=lambda m: m.step)
        ]
    return Runs(
        experiment=experiment,
        runs=pd.DataFrame(
            rows,
            columns=[
                "run_id",
                "run_name",
                "status",
                "schedule",
                "seed",
                "sweep",
                "test_acc",
                *ENSEMBLE_METRICS,
                "n_snapshots",
                "params",
            ],
        ),
        epochs=pd.DataFrame(
            epochs, columns=["run_id", "schedule", "seed", "epoch", *EPOCH_METRICS]
        ),
        lr=pd.DataFrame(lrs, columns=["run_id", "schedule", "seed", "step", "lr"]),
    )
