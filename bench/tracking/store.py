"""The store itself: where it is, opening it (a SQLite file created under a lock, a
tracking server), every call retried while SQLite is locked or the server is away, and no
signal landing inside a store call."""

from __future__ import annotations

import atexit
import contextlib
import functools
import gc
import logging
import os
import random
import signal
import sqlite3
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from mlflow.tracking import MlflowClient

from bench import pending
from bench.tracking.tags import EXPERIMENT_KIND, EXPERIMENT_KIND_TAG

log = logging.getLogger("bench")


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
    return retry_call(function, args, kwargs, pending.WAIT_SECONDS)


def retry_call(function: Callable, args, kwargs, server_wait: float):
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


def store_call(function: Callable) -> Callable:
    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        return retrying(function, *args, **kwargs)

    return wrapper


def sqlite_file(uri: str) -> Path | None:
    """The file of a ``sqlite:///`` store, else None."""
    if not uri.startswith("sqlite:///"):
        return None
    return Path(uri.removeprefix("sqlite:///").split("?")[0])


class StoreError(RuntimeError):
    """A store that cannot be opened, with what to do about it."""


CACHE_ENV = "BENCH_CACHE"  # where bench keeps an empty store to copy; "" keeps none


def store_template() -> Path | None:
    """An empty SQLite store of this MLflow version's schema, kept to copy from: MLflow takes
    seconds to create and migrate a new store's schema, a copy milliseconds. In ``$BENCH_CACHE``
    (default ``$XDG_CACHE_HOME/bench``, else ``~/.cache/bench``); None when that is set empty."""
    import mlflow

    folder = os.environ.get(CACHE_ENV)
    if folder is None:
        folder = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "bench"
    return Path(folder) / f"empty-store-mlflow-{mlflow.__version__}.db" if folder else None


def _keep_template(store: Path, kept: Path) -> None:
    """Keep a copy of the new, empty ``store`` as the template, without its Default experiment
    (MLflow makes that on opening a store that has none, with the artifact location of the
    folder it is then in); written aside and renamed, so a half-written one is never read.
    Where the cache cannot be written, nothing is kept."""
    aside = kept.with_name(f".{kept.name}.{os.getpid()}")
    try:
        kept.parent.mkdir(parents=True, exist_ok=True)
        with (
            contextlib.closing(sqlite3.connect(store)) as source,
            contextlib.closing(sqlite3.connect(aside)) as copy,
        ):
            source.backup(copy)
            copy.execute("DELETE FROM experiment_tags")
            copy.execute("DELETE FROM experiments")
            copy.commit()
        os.replace(aside, kept)
    except (OSError, sqlite3.Error) as e:
        log.debug("no store template kept at %s: %s", kept, e)
    finally:
        aside.unlink(missing_ok=True)


def _create_sqlite(path: Path) -> None:
    """A new SQLite store at ``path``, built whole under another name and renamed into place:
    a process killed while MLflow creates and migrates the schema leaves no half-built store
    where later commands would find it. Copied from the template (``store_template``) where one is
    kept; else built by MLflow, and kept as the template."""
    building = path.with_name(f".{path.name}.creating-{os.getpid()}")
    building.unlink(missing_ok=True)
    uri = f"sqlite:///{building}"
    kept = store_template()
    try:
        copied = False
        if kept is not None and kept.is_file():
            try:
                with (
                    contextlib.closing(
                        sqlite3.connect(f"{kept.resolve().as_uri()}?mode=ro", uri=True)
                    ) as source,
                    contextlib.closing(sqlite3.connect(building)) as copy,
                ):
                    source.backup(copy)
                copied = True
            except sqlite3.Error as e:  # an unreadable template: build the store instead
                log.debug("store template %s unreadable: %s", kept, e)
                building.unlink(missing_ok=True)
        MlflowClient(uri).search_experiments(max_results=1)  # creates and migrates the schema,
        _dispose(uri)  # or, on a copy, checks it and adds the Default experiment
        if not copied and kept is not None:
            _keep_template(building, kept)
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


@store_call
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
