"""Everything that talks to MLflow: where runs are written and where they are read back.

Layout of the store:

- one MLflow experiment per bench experiment (``tracking.experiment`` in the config);
- one parent run per sweep (tag ``bench.kind=sweep``), its runs nested under it through the
  ``mlflow.parentRunId`` tag (tag ``bench.kind=run``);
- each run holds the flattened config as params plus ``total_steps`` and ``steps_per_epoch``, tags
  ``schedule`` and ``seed``, the metrics ``lr`` and ``train_loss_step`` at every optimizer step
  (step = 0-based optimizer step), ``train_loss``, ``val_acc`` and ``val_loss`` once per epoch
  (step = epoch number, 1 after the first epoch), ``test_acc`` once at the end, and the resolved
  config as ``config.yaml``; tags ``bench.key`` (its identity, ``bench.resume``), ``bench.owner``
  (the process running it) and, while it can be resumed, ``bench.checkpoint``;
- a run that a later sweep reused (skipped as finished, or resumed) carries the tag
  ``bench.sweep.<that sweep's parent id>`` and counts in that sweep too.

Every experiment carries the tag ``mlflow.experimentKind=custom_model_development``, so that the
MLflow 3 UI opens it on its training runs rather than on the GenAI overview.

Reading is done in bulk: one ``MlflowClient`` per store (``client``), one search for the runs, and
metric histories fetched for many runs per query where the store allows it (``_histories``).
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import gc
import json
import logging
import math
import os
import platform
import random
import signal
import sqlite3
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from mlflow.entities import Metric, Param, RunStatus, ViewType
from mlflow.tracking import MlflowClient

from bench import pending

log = logging.getLogger("bench")

KIND_TAG = "bench.kind"
PARENT_TAG = "mlflow.parentRunId"
ERROR_TAG = "bench.error"
OVERRIDES_TAG = "bench.overrides"
DIVERGED_TAG = "bench.diverged"
DIVERGED_STEP_TAG = "bench.diverged_step"
KEY_TAG = "bench.key"  # the run's identity (bench.resume.identity)
OWNER_TAG = "bench.owner"  # "<host> <pid> <process start>" of the process that runs it
CHECKPOINT_TAG = "bench.checkpoint"  # the file its training resumes from, while it has one
LINK_PREFIX = "bench.sweep."  # tag bench.sweep.<parent id>: the run also counts in that sweep
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"
LOSSES = ("train_loss", "val_loss")
EPOCH_METRICS = ("val_acc",)  # read back per epoch; the losses only as their last value
ENSEMBLE_METRICS = ("val_acc_ensemble", "test_acc_ensemble")

# Bulk reads (``_histories``): run ids per query (well under SQLite's limit on the values of an
# ``IN (...)`` list, 32766 since SQLite 3.32), and points per query. A query that would return
# more than BULK_PAGE points is cut short by the store without saying so; ``_histories`` notices
# (it asks for one point more) and asks again for the runs it did not get whole.
BULK_RUNS = 500
BULK_PAGE = 200_000


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


# ---------------------------------------------------------------------------------------------
# Several processes writing to one SQLite file
#
# A fresh store is created (MLflow's schema migrations) under a file lock next to it, so that
# processes starting together never race on the schema; it is switched to SQLite's write-ahead
# log, so that readers (a report, the UI) never block writers. A write that still meets
# "database is locked" (two writers upgrading their transactions at once, which SQLite answers
# at once, whatever its busy timeout) is tried again with a growing, jittered pause: a failed
# write was rolled back whole, so trying it again cannot duplicate anything.

LOCKED = ("database is locked", "database table is locked")
RETRY_SECONDS = 120.0


def _locked(error: BaseException | None) -> bool:
    while error is not None:
        if any(text in str(error) for text in LOCKED):
            return True
        error = error.__cause__ or error.__context__
    return False


# Set once a store call has succeeded, in this process or the one that started it: from then on
# a server that does not answer is an outage to wait through, not an address to correct.
ANSWERED = "BENCH_STORE_ANSWERED"


def retrying(function: Callable, *args, **kwargs):
    """``function(*args, **kwargs)``, tried again while the store answers "database is locked"
    (for up to ``RETRY_SECONDS``) or, a tracking server that has answered before, while it does
    not answer at all (for up to ``pending.WAIT_SECONDS``, saying so once; a server that never
    answered fails after MLflow's own retries: its address may be wrong); SIGINT and SIGTERM
    wait for each try, not for the pauses."""
    return _retrying(function, args, kwargs, pending.WAIT_SECONDS)


def _retrying(function: Callable, args, kwargs, server_wait: float):
    pause, start, warned = 0.05, time.monotonic(), False
    while True:
        try:
            with signals_deferred():
                result = function(*args, **kwargs)
            os.environ[ANSWERED] = "1"
            return result
        except Exception as e:
            elapsed = time.monotonic() - start
            outage = os.environ.get(ANSWERED) == "1" and pending.unreachable(e)
            if outage and elapsed < server_wait:
                if not warned:
                    log.warning(
                        "the tracking server does not answer (%s); waiting for it, up to %.0f min",
                        str(e).splitlines()[0][:200],
                        server_wait / 60,
                    )
                    warned = True
                pause = max(pause, pending.PROBE_SECONDS / 4)
            elif not _locked(e) or elapsed > RETRY_SECONDS:
                raise
        time.sleep(pause * (0.5 + random.random()))
        pause = min(pause * 2, pending.PROBE_SECONDS if warned else 2.0)


def _store_call(function: Callable) -> Callable:
    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        return retrying(function, *args, **kwargs)

    return wrapper


def sqlite_file(uri: str) -> Path | None:
    """The file of a ``sqlite:///`` store, else None."""
    if not uri.startswith("sqlite:///"):
        return None
    return Path(uri.removeprefix("sqlite:///").split("?")[0])


CLAIM_KIND = "claim"  # bench.kind of a claim's marker run on a tracking server
CLAIM_SETTLE_SECONDS = 2.0  # between writing a claim and reading the others
CLAIM_SECONDS = 300.0  # a claim counts this long: until its run is in the store, where it shows


@contextlib.contextmanager
def claimed(uri: str, key: str, experiment_id: str | None = None):
    """Claim the run of identity ``key`` in store ``uri`` for this process while the block runs:
    yields True when claimed, False when another process holds it (the same sweep started
    twice, here or on another machine). A SQLite store's claims are lock files beside it
    (``<store>.claims/<key>.lock``, released when the process ends however it ends). On a
    tracking server (``experiment_id`` given) a claim is a marker run, deleted at once so that
    no view shows it (tag ``bench.kind=claim``): each process writes its marker, waits
    ``CLAIM_SETTLE_SECONDS``, reads every live marker of the key (the last ``CLAIM_SECONDS``)
    and holds the claim if its own is the first written (start time, then run id: the same
    answer in every process). Past that window the run itself is in the store, where a later
    process finds it running."""
    from filelock import FileLock, Timeout

    path = sqlite_file(uri)
    if path is None:
        if experiment_id is None or not pending.is_server(uri):
            yield True
            return
        mine = _server_claim(uri, key, experiment_id)
        try:
            yield _first_claim(uri, key, experiment_id) == mine
        finally:
            _release_claim(uri, mine)
        return
    folder = path.with_name(f"{path.name}.claims")
    folder.mkdir(parents=True, exist_ok=True)
    lock = FileLock(folder / f"{key}.lock")
    try:
        lock.acquire(timeout=0)
    except Timeout:
        yield False
        return
    try:
        yield True
    finally:
        lock.release()


def _server_claim(uri: str, key: str, experiment_id: str) -> str:
    mc = client(uri)
    tags = {KIND_TAG: CLAIM_KIND, KEY_TAG: key, **owner()}
    marker = retrying(mc.create_run, experiment_id, run_name=f"claim {key[:12]}", tags=tags)
    retrying(mc.delete_run, marker.info.run_id)
    return marker.info.run_id


def _release_claim(uri: str, marker: str) -> None:
    """End a claim: its marker run marked FINISHED (a deleted run takes no change, so it is
    restored for a moment). A marker left behind stops counting after ``CLAIM_SECONDS``."""
    mc = client(uri)
    with contextlib.suppress(Exception):
        mc.restore_run(marker)
        mc.set_terminated(marker, status="FINISHED")
        mc.delete_run(marker)


def _first_claim(uri: str, key: str, experiment_id: str) -> str:
    """The run id of the first live claim of ``key``."""
    time.sleep(CLAIM_SETTLE_SECONDS)
    since = int((time.time() - CLAIM_SECONDS) * 1000)
    query = (
        f"{_equals('tags', KIND_TAG, CLAIM_KIND)} and {_equals('tags', KEY_TAG, key)} "
        f"and attributes.status = 'RUNNING' and attributes.start_time >= {since}"
    )
    found = retrying(client(uri).search_runs, [experiment_id], query, run_view_type=ViewType.ALL)
    return min(found, key=lambda r: (r.info.start_time, r.info.run_id)).info.run_id


class StoreError(RuntimeError):
    """A store that cannot be opened, with what to do about it."""


def _create_sqlite(path: Path) -> None:
    """A new SQLite store at ``path``, built whole under another name and renamed into place:
    a process killed while MLflow creates and migrates the schema leaves no half-built store
    where later commands would find it."""
    building = path.with_name(f".{path.name}.creating-{os.getpid()}")
    building.unlink(missing_ok=True)
    uri = f"sqlite:///{building}"
    try:
        MlflowClient(uri).search_experiments(max_results=1)  # creates and migrates the schema
        _dispose(uri)
        os.replace(building, path)
    finally:
        building.unlink(missing_ok=True)


def _dispose(uri: str) -> None:
    """Close MLflow's cached connections to the store ``uri``."""
    store = getattr(
        sys.modules.get("mlflow.store.tracking.sqlalchemy_store"), "SqlAlchemyStore", None
    )
    engine = getattr(store, "_engine_map", {}).pop(uri, None)
    if engine is not None:
        engine.dispose()


def _runs_in(path: Path) -> int | None:
    """How many runs a SQLite store holds: 0 where its schema has no runs table yet, None where
    the file cannot be read as a database at all (then nothing can say it holds none)."""
    try:
        with contextlib.closing(sqlite3.connect(path, timeout=60)) as db:
            return int(db.execute("SELECT COUNT(*) FROM runs").fetchone()[0])
    except sqlite3.OperationalError as e:
        return 0 if "no such table" in str(e) else None
    except sqlite3.DatabaseError:
        return None


def _open_sqlite(uri: str, path: Path) -> MlflowClient:
    """Open (creating it first if it is not there) the SQLite store at ``path``. A store whose
    schema was left half-built (by a process killed while creating it, before this version)
    and that holds no run is rebuilt; one that holds runs is never touched."""
    if not path.exists():
        _create_sqlite(path)
    try:
        mc = MlflowClient(uri)
        mc.search_experiments(max_results=1)
        return mc
    except Exception as e:
        _dispose(uri)
        n_runs = _runs_in(path)
        if n_runs != 0:
            holds = (
                "it cannot be read as a database" if n_runs is None else f"it holds {n_runs} runs"
            )
            raise StoreError(
                f"the MLflow store {path} cannot be opened ({type(e).__name__}: "
                f"{str(e).splitlines()[0]}); {holds}, so it is left as it is. Restore it from a "
                "copy, or move it away to start a new store there"
            ) from e
        aside = path.with_name(f"{path.name}.broken-{time.strftime('%Y%m%d-%H%M%S')}")
        path.replace(aside)
        for suffix in ("-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        log.warning(
            "The MLflow store %s was half-built (%s) and held no run: moved to %s and built again",
            path,
            type(e).__name__,
            aside.name,
        )
        _create_sqlite(path)
        return MlflowClient(uri)


@functools.lru_cache(maxsize=32)
def client(uri: str) -> MlflowClient:
    """The one ``MlflowClient`` of store ``uri`` in this process (``mc`` below). A SQLite store
    is opened (and, the first time, created whole: ``_open_sqlite``) under the lock file
    ``<store>.lock``."""
    from filelock import FileLock

    path = sqlite_file(uri)
    if path is None:
        return MlflowClient(uri)
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(f"{path}.lock"), signals_deferred():
        mc = _open_sqlite(uri, path)
        with contextlib.closing(sqlite3.connect(path, timeout=60)) as db:
            if db.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                db.execute("PRAGMA journal_mode=WAL")  # kept by the file from now on
    return mc


def close_stores() -> None:
    """Close the database connections that MLflow keeps open in this process. The last
    connection to a SQLite store to close folds its write-ahead log (``mlflow.db-wal``) into
    ``mlflow.db``, so that the file alone, copied elsewhere, holds every run."""
    for module in (
        "mlflow.store.tracking.sqlalchemy_store",
        "mlflow.store.model_registry.sqlalchemy_store",
        "mlflow.store.jobs.sqlalchemy_store",
    ):
        store = getattr(sys.modules.get(module), "SqlAlchemyStore", None)
        for engine in list(getattr(store, "_engine_map", {}).values()):  # MLflow's engine cache
            engine.dispose()


def exit_quickly() -> None:
    """At this process's exit, close the store's connections (``close_stores``), then leave the
    objects that torch, Lightning and MLflow made to the operating system: Python's last garbage
    collection would walk them all, 2-3 s after every command. Other atexit handlers (logging's
    flush among them) still run."""
    atexit.register(gc.freeze)
    atexit.register(close_stores)  # atexit runs last in, first out: this one first


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
    """The id of experiment ``name``, created (with the store itself) if it does not exist yet.
    The experiment gets the tag ``mlflow.experimentKind=custom_model_development`` (an existing
    one too, unless it already has a kind)."""
    mc = client(uri)
    experiment = mc.get_experiment_by_name(name)
    if experiment is None:
        try:
            return mc.create_experiment(name, tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND})
        except Exception:
            # Another process created it first.
            experiment = mc.get_experiment_by_name(name)
            if experiment is None:
                raise
    if experiment.lifecycle_stage == "deleted":
        mc.restore_experiment(experiment.experiment_id)
    if EXPERIMENT_KIND_TAG not in experiment.tags:
        mc.set_experiment_tag(experiment.experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
    return experiment.experiment_id


def start_sweep(
    uri: str, experiment_id: str, name: str, params: Mapping[str, Any], grid: list[list[str]]
) -> str:
    """Create a sweep's parent run, with the overrides of each of its runs as ``grid.json``;
    returns its id. (Each write is tried again on its own: trying the creation again after a
    later write failed would leave a second parent run.)"""
    mc = client(uri)
    tags = {KIND_TAG: "sweep", **owner()}
    run_id = retrying(mc.create_run, experiment_id, run_name=name, tags=tags).info.run_id
    retrying(mc.log_batch, run_id, params=[Param(k, str(v)) for k, v in params.items()])
    retrying(mc.log_text, run_id, json.dumps(grid, indent=1), "grid.json")
    return run_id


@_store_call
def end_run(uri: str, run_id: str, status: str = "FINISHED") -> None:
    client(uri).set_terminated(run_id, status=status)


@_store_call
def log_artifacts(uri: str, run_id: str, folder: str | os.PathLike) -> None:
    client(uri).log_artifacts(run_id, str(folder))


@_store_call
def log_metrics(uri: str, run_id: str, metrics: Mapping[str, float], step: int = 0) -> None:
    """Log ``metrics`` (name -> value) to run ``run_id`` in one batch, at ``step`` (the report's
    headline numbers on a sweep's parent run). A metric whose latest value is already the one
    given is not logged again, so a report made twice leaves one value per metric."""
    now = int(time.time() * 1000)
    latest = client(uri).get_run(run_id).data.metrics
    batch = [
        Metric(k, float(v), now, step) for k, v in metrics.items() if latest.get(k) != float(v)
    ]
    if batch:
        client(uri).log_batch(run_id, metrics=batch)


def browse_hint(uri: str, experiment_id: str) -> str:
    """How to see an experiment's runs in MLflow's UI, straight on its training-runs table
    (MLflow 3 otherwise opens on its GenAI overview)."""
    page = f"#/experiments/{experiment_id}/runs?workflowType=machine_learning"
    if uri.startswith(("http://", "https://")):
        return f"Browse the runs: {uri.rstrip('/')}/{page}"
    return (
        f"Browse the runs: mlflow ui --backend-store-uri {uri}, then http://127.0.0.1:5000/{page}"
    )


@_store_call
def set_tags(uri: str, run_id: str, tags: Mapping[str, str]) -> None:
    mlflow = client(uri)
    for key, value in tags.items():
        mlflow.set_tag(run_id, key, value)


# ---------------------------------------------------------------------------------------------
# Who runs what: owners, stale runs, runs seen before, runs counted in later sweeps


def _process_start(pid: int) -> str:
    """When process ``pid`` started (clock ticks since boot, from /proc), "" if unknown: with
    the pid, it tells a process from a later one that reuses its pid."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return stat.rsplit(")", 1)[1].split()[19]


def _slurm_job() -> str:
    """This process's SLURM job step (``<job id>.<step>``, ``<array job id>_<task id>.<step>``
    for an array task), "" outside SLURM. A job that SLURM requeues after a preemption keeps
    it; two steps running at once in one allocation do not share it."""
    job = os.environ.get("SLURM_JOB_ID", "")
    if os.environ.get("SLURM_ARRAY_JOB_ID"):
        job = f"{os.environ['SLURM_ARRAY_JOB_ID']}_{os.environ.get('SLURM_ARRAY_TASK_ID', '')}"
    return f"{job}.{os.environ.get('SLURM_STEP_ID', '')}" if job else ""


def owner() -> dict[str, str]:
    """The ``bench.owner`` tag of a run that this process runs: ``<host> <pid> <process start>``
    and, in a SLURM job, ``slurm:<job>``."""
    tag = f"{platform.node()} {os.getpid()} {_process_start(os.getpid())}".strip()
    if _slurm_job():
        tag += f" slurm:{_slurm_job()}"
    return {OWNER_TAG: tag}


def alive(owner_tag: str) -> bool | None:
    """Whether the process an owner tag names still runs: None when it ran on another machine
    (or the tag is unreadable), where this one cannot tell; False, wherever it ran, for an
    earlier start of this very SLURM job (requeued after a preemption)."""
    parts = [p for p in owner_tag.split() if not p.startswith("slurm:")]
    slurm = [p.removeprefix("slurm:") for p in owner_tag.split() if p.startswith("slurm:")]
    if len(parts) < 2 or not parts[1].isdigit():
        return None
    this_process = parts[0] == platform.node() and int(parts[1]) == os.getpid()
    if slurm and slurm[0] == _slurm_job() and not this_process:
        return False
    if parts[0] != platform.node():
        return None
    pid = int(parts[1])
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists, under another user
    started = parts[2] if len(parts) > 2 else ""
    return not started or _process_start(pid) in ("", started)


def _close(mc: MlflowClient, run_id: str, owner_tag: str) -> None:
    mc.set_tag(run_id, ERROR_TAG, f"stale: its process ({owner_tag}) ended without closing it")
    mc.set_terminated(run_id, status="KILLED")


@_store_call
def close_stale(uri: str, experiment_id: str) -> list[str]:
    """Mark KILLED every run of the experiment left RUNNING by a process of this machine that
    has died (killed, out of memory, power lost), or by an earlier start of this SLURM job;
    returns their names. Runs of other machines are left as they are: whether they still run
    cannot be told from here."""
    mc = client(uri)
    closed = []
    for run in _search(mc, experiment_id, "attributes.status = 'RUNNING'"):
        tag = run.data.tags.get(OWNER_TAG)
        if tag and alive(tag) is False:
            _close(mc, run.info.run_id, tag)
            closed.append(run.info.run_name)
    return closed


def previous_runs(uri: str, experiment_id: str, key: str | None = None) -> dict[str, list]:
    """The runs of the experiment that have identity ``key`` (None: any), by identity, as
    ``bench.resume.Previous``; those left RUNNING by a dead process are marked KILLED first."""
    from bench.resume import Previous

    query = _equals("tags", KIND_TAG, "run")
    if key is not None:
        query += f" and {_equals('tags', KEY_TAG, key)}"
    found: dict[str, list] = {}
    mc = client(uri)
    for run in _search(mc, experiment_id, query):
        tags = run.data.tags
        if KEY_TAG not in tags:
            continue
        status = run.info.status
        if status == "RUNNING" and alive(tags.get(OWNER_TAG, "")) is False:
            retrying(_close, mc, run.info.run_id, tags[OWNER_TAG])  # stale: it can go on
            status = "KILLED"
        parent = tags.get(PARENT_TAG, "")
        links = [k.removeprefix(LINK_PREFIX) for k in tags if k.startswith(LINK_PREFIX)]
        found.setdefault(tags[KEY_TAG], []).append(
            Previous(
                run_id=run.info.run_id,
                status=status,
                start_time=_seconds(run.info.start_time),
                sweep=parent,
                sweeps=tuple(s for s in (parent, *links) if s),
                checkpoint=tags.get(CHECKPOINT_TAG),
            )
        )
    return found


@_store_call
def link(uri: str, run_id: str, sweep: str) -> None:
    """Count run ``run_id`` in sweep ``sweep`` as well as in the sweep that started it."""
    client(uri).set_tag(run_id, f"{LINK_PREFIX}{sweep}", "reused")


def apply_write(mc: MlflowClient, run_id: str, write: Mapping[str, Any]) -> None:
    """One write to run ``run_id``, as ``RunRecorder`` makes them and ``bench.pending`` keeps
    them: ``{"op": ..., arguments}``."""
    op = write["op"]
    if op == "metrics":
        mc.log_batch(run_id, metrics=[Metric(*m) for m in write["metrics"]])
    elif op == "params":
        mc.log_batch(run_id, params=[Param(k, v) for k, v in write["params"].items()])
    elif op == "tags":
        for key, value in write["tags"].items():
            mc.set_tag(run_id, key, value)
    elif op == "delete_tag":
        if write["key"] in mc.get_run(run_id).data.tags:
            mc.delete_tag(run_id, write["key"])
    elif op == "text":
        mc.log_text(run_id, write["text"], write["artifact_file"])
    elif op == "artifact":
        mc.log_artifact(run_id, write["path"], write.get("artifact_path"))
    elif op == "terminated":
        mc.set_terminated(run_id, status=write["status"])
    else:
        raise ValueError(f"unknown write {op!r}")


def send_pending(folder: str | os.PathLike | None = None) -> None:
    """Send the writes that runs started in ``folder`` (default: this one) kept while their
    tracking server did not answer (``bench.pending``); one short try each, so that a server
    still down holds nothing up (the writes stay, and go with a later command)."""
    for journal in pending.journals(Path(folder) if folder else None):
        mc = client(journal.uri)
        n = len(journal)
        if journal.send(functools.partial(apply_write, mc, journal.run_id)):
            print(
                f"MLflow run {journal.run_id}: the {n} write(s) kept while the tracking server "
                f"{journal.uri} did not answer are sent",
                file=sys.stderr,
            )
        else:
            log.warning(
                "MLflow run %s: %d write(s) still wait for the tracking server %s (kept in %s)",
                journal.run_id,
                len(journal),
                journal.uri,
                journal.path,
            )


class RunRecorder:
    """One training run in MLflow (tag ``bench.kind``: ``run``, which reports read, or another
    kind they leave out). Per-step metrics are buffered and written in batches.

    With ``resume_run_id``, the recorder continues that run instead of creating one: it is
    marked RUNNING again, and metric points at steps the run already has are not written twice.

    On a tracking server, a write the server does not take because it does not answer (after
    MLflow's own retries) is kept on disk and sent, in order, once it answers again
    (``bench.pending``): the run goes on through an outage of any length.
    """

    def __init__(
        self,
        uri: str,
        experiment_id: str,
        run_name: str,
        tags: Mapping[str, str],
        parent_run_id: str | None = None,
        kind: str = "run",
        resume_run_id: str | None = None,
    ):
        self.client = client(uri)
        self.uri = uri
        self.status: str | None = None  # as ``finish`` left it
        all_tags = {KIND_TAG: kind, **tags, **owner()}
        self._logged: dict[str, int] = {}  # metric -> the last step the store has
        self._buffer: list[Metric] = []
        self.journal: pending.Journal | None = None
        if resume_run_id:
            self.run_id = resume_run_id
            self.journal = self._journal()
            run = retrying(self.client.get_run, resume_run_id)
            for key in run.data.metrics:
                history = retrying(self.client.get_metric_history, resume_run_id, key)
                self._logged[key] = max(m.step for m in history)
            self.set_tags(all_tags)
            if ERROR_TAG in run.data.tags:  # why it stopped before is no longer true
                retrying(self.client.delete_tag, resume_run_id, ERROR_TAG)
            retrying(self.client.update_run, resume_run_id, status="RUNNING")
        else:
            if parent_run_id:
                all_tags[PARENT_TAG] = parent_run_id
            run = retrying(self.client.create_run, experiment_id, run_name=run_name, tags=all_tags)
            self.run_id = run.info.run_id
            self.journal = self._journal()

    def _journal(self) -> pending.Journal | None:
        """Where this run's writes wait while its server does not answer (a server only)."""
        if not pending.is_server(self.uri):
            return None
        return pending.Journal(Path.cwd() / pending.FOLDER, self.uri, self.run_id)

    def _apply(self, write: Mapping[str, Any]) -> None:
        apply_write(self.client, self.run_id, write)

    def _write(self, op: str, **args: Any) -> None:
        """One write to the store; on a server that does not answer, kept in the journal."""
        journal = self.journal
        if journal is not None and len(journal) and not journal.send(self._apply):
            journal.add(op, **args)
            return
        try:
            _retrying(self._apply, ({"op": op, **args},), {}, server_wait=0)
        except Exception as e:
            if journal is None or not pending.unreachable(e):
                raise
            log.warning(
                "MLflow run %s: the tracking server %s does not answer; the run goes on, its "
                "writes kept in %s until the server answers",
                self.run_id,
                self.uri,
                journal.path,
            )
            journal.add(op, **args)

    def set_tags(self, tags: Mapping[str, str]) -> None:
        self._write("tags", tags={k: str(v) for k, v in tags.items()})

    def forget_checkpoint(self) -> None:
        """Drop the ``bench.checkpoint`` tag (its file is gone); a store error is logged."""
        try:
            self._write("delete_tag", key=CHECKPOINT_TAG)
        except Exception:
            log.exception("could not drop the checkpoint tag of MLflow run %s", self.run_id)

    def log_params(self, params: Mapping[str, Any]) -> None:
        self._write("params", params={k: str(v) for k, v in params.items()})

    def log_text(self, text: str, artifact_file: str) -> None:
        self._write("text", text=text, artifact_file=artifact_file)

    def log_artifact(self, path: str | os.PathLike, artifact_path: str | None = None) -> None:
        self._write("artifact", path=str(path), artifact_path=artifact_path)

    def add(self, metrics: Mapping[str, float], step: int) -> None:
        """Buffer metrics at ``step``; written at the next ``flush``."""
        now = int(time.time() * 1000)
        self._buffer += [
            Metric(k, float(v), now, step)
            for k, v in metrics.items()
            if step > self._logged.get(k, -1)
        ]

    def flush(self) -> None:
        if self._buffer:
            batch = [[m.key, m.value, m.timestamp, m.step] for m in self._buffer]
            self._write("metrics", metrics=batch)  # sent or journaled; an error keeps it here
            self._buffer = []

    def log(self, metrics: Mapping[str, float], step: int) -> None:
        self.add(metrics, step)
        self.flush()

    def finish(
        self, status: str = "FINISHED", error: str | None = None, details: str | None = None
    ) -> None:
        """End the run; a failed one keeps its error as tag ``bench.error`` and, with
        ``details`` (a traceback), as the artifact ``error.txt``. Writes kept through a server
        outage are sent first, waiting for the server (``bench.pending.Journal.wait``)."""
        self.flush()
        if error:
            self.set_tags({ERROR_TAG: error[:5000]})
        if details:
            self.log_text(details, "error.txt")
        self._write("terminated", status=status)
        self.status = status  # before a signal held back meanwhile is delivered
        if self.journal is not None and len(self.journal):
            self.journal.wait(self._apply)

    def finish_quietly(self, status: str, error: str, details: str | None = None) -> None:
        """``finish`` on the way out of a failure: a store error is logged, never raised, so
        that the failure that ended the run is the one that propagates."""
        try:
            self.finish(status, error=error, details=details)
        except Exception:
            log.exception("could not mark MLflow run %s %s", self.run_id, status)


# ---------------------------------------------------------------------------------------------
# Reading back

RUN_COLUMNS = [
    "run_id",
    "run_name",
    "status",
    "schedule",
    "seed",
    "sweep",
    "start_time",
    "end_time",
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
    (seconds since the epoch, NaN when unknown), ``diverged`` (the run has tag ``bench.diverged``,
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


def _search(mc: MlflowClient, experiment_id: str, filter_string: str, **kw) -> Iterator[Any]:
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


def _equals(kind: str, key: str, value: str) -> str:
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
        filter_string=_equals("tags", KIND_TAG, "sweep"),
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
        filter_string=f"{_equals('tags', KIND_TAG, 'sweep')} and attributes.run_id = '{run_id}'",
    )
    if not found:
        raise LookupError(
            f"no sweep {run_id!r} in experiment {experiment!r}: give the id of a sweep's parent "
            "run (the runs named sweep-<date>-<time> in MLflow), or 'latest'"
        )
    return run_id


def run_params(uri: str, run_id: str) -> dict[str, str]:
    return dict(client(uri).get_run(run_id).data.params)


def _seconds(ms: int | None) -> float:
    return ms / 1000 if ms else float("nan")


def sweep_info(uri: str, run_id: str) -> dict[str, Any]:
    """A sweep's parent run: its params (``command``, ...) plus ``start_time`` and ``end_time``
    (seconds since the epoch; ``end_time`` NaN while it runs) and ``status`` (these three win
    over params of the same name)."""
    run = client(uri).get_run(run_id)
    return {
        **run.data.params,
        "start_time": _seconds(run.info.start_time),
        "end_time": _seconds(run.info.end_time),
        "status": run.info.status,
    }


def _in_sweep(query: str, sweep: str) -> list[str]:
    """``query`` narrowed to the runs of ``sweep``: those started under it, and those it reused
    from earlier sweeps (two searches: MLflow's filters have no "or")."""
    return [
        f"{query} and {_equals('tags', PARENT_TAG, sweep)}",
        f"{query} and {_equals('tags', LINK_PREFIX + sweep, 'reused')}",
    ]


def _unique(runs: Iterator[Any]) -> list[Any]:
    return list({run.info.run_id: run for run in runs}.values())


def sweep_runs(uri: str, experiment_id: str, sweep: str) -> pd.DataFrame:
    """``run_id, run_name, status, overrides, error, reused`` of a sweep's runs (``reused``:
    started by an earlier sweep)."""
    queries = _in_sweep(_equals("tags", KIND_TAG, "run"), sweep)
    found = _unique(r for q in queries for r in _search(client(uri), experiment_id, q))
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


@_store_call
def kill_running(uri: str, experiment_id: str, sweep: str) -> None:
    """Mark KILLED the runs this sweep started that are still RUNNING (after an interrupt:
    its parallel workers stop with it)."""
    runs = sweep_runs(uri, experiment_id, sweep)
    for run in runs[(runs["status"] == "RUNNING") & ~runs["reused"]].itertuples():
        client(uri).set_tag(run.run_id, ERROR_TAG, "interrupted")
        client(uri).set_terminated(run.run_id, status="KILLED")


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
    query = [_equals("tags", KIND_TAG, "run")]
    query += [_equals("tags", k, v) for k, v in (tags or {}).items()]
    query += [_equals("params", k, v) for k, v in (params or {}).items()]
    queries = (
        [" and ".join(query)]
        if sweeps is None
        else [q for s in dict.fromkeys(sweeps) for q in _in_sweep(" and ".join(query), s)]
    )
    found = _unique(
        run
        for q in queries
        for run in _search(mc, experiment_id, q, order_by=["attributes.start_time ASC"])
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
                "start_time": _seconds(run.info.start_time),
                "end_time": _seconds(run.info.end_time),
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
