"""Writes to the MLflow store are never cut in half by Ctrl-C or SIGTERM; what is read back in
bulk is what was written."""

import contextlib
import functools
import math
import os
import signal
import sqlite3
import time

import pytest

from bench import tracking


@pytest.fixture(autouse=True)
def ctrl_c_raises():
    """Python's own Ctrl-C handler, whatever this process inherited (a job started in the
    background of a shell ignores SIGINT)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_signals_wait_for_the_store_call_to_end():
    done = []
    with pytest.raises(KeyboardInterrupt):
        with tracking.signals_deferred():
            os.kill(os.getpid(), signal.SIGINT)  # delivered at once without the deferral
            done.append("the write finished")
        done.append("not reached: the interrupt lands here")
    assert done == ["the write finished"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handler restored


def test_interrupted_run_is_marked_killed_in_the_store(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    experiment_id = tracking.ensure_experiment(uri, "e")
    recorder = tracking.RunRecorder(uri, experiment_id, "r", tags={})
    recorder.add({"lr": 0.1}, step=0)
    with pytest.raises(KeyboardInterrupt), tracking.signals_deferred():
        os.kill(os.getpid(), signal.SIGINT)
        recorder.flush()  # a real write, while the signal waits
    recorder.finish("KILLED", error="interrupted")  # the store is not left locked
    from mlflow.tracking import MlflowClient

    run = MlflowClient(uri).get_run(recorder.run_id)
    assert run.info.status == "KILLED"
    assert [m.value for m in MlflowClient(uri).get_metric_history(recorder.run_id, "lr")] == [0.1]


# ---------------------------------------------------------------------------------------------
# Reading back in bulk
#
# One store for the module (creating a SQLite store takes seconds): experiment "e" holds two
# sweeps, a run outside them, a failed run and an LR range test (another kind, never read).

START_MS = 1_700_000_000_000
EPOCHS = 4
LR_STEPS = 12


def _make_run(client, experiment_id, name, parent=None, status="FINISHED", lr=0.1, **extra):
    """A run as ``bench`` records it, with known timestamps: epoch e's ``val_acc`` comes e
    seconds after the start; ``extra`` tags."""
    from mlflow.entities import Metric, Param

    schedule, seed = name.split("-seed")
    start = START_MS + 60_000 * len(client.search_runs([experiment_id]))
    tags = {tracking.KIND_TAG: extra.pop("kind", "run"), "schedule": schedule, "seed": seed}
    if parent:
        tags[tracking.PARENT_TAG] = parent
    run_id = client.create_run(experiment_id, start, tags | extra, run_name=name).info.run_id
    params = {"schedule.name": schedule, "seed": seed, "optimizer.lr": str(lr)}
    client.log_batch(run_id, params=[Param(k, v) for k, v in params.items()])
    h = int(seed) / 100 + len(schedule) / 1000  # values that tell runs apart
    metrics = [Metric("lr", lr * (1 - s / LR_STEPS), start + 100 * s, s) for s in range(LR_STEPS)]
    for e in range(1, EPOCHS + 1):
        ms = start + 1000 * e
        metrics += [
            Metric("train_loss", 2 / e + h, ms - 10, e),
            Metric("val_acc", 0.5 + e / 10 + h, ms, e),
            Metric("val_loss", 1 / e + h, ms, e),
        ]
    metrics.append(Metric("test_acc", 0.9 + h, start + 1000 * (EPOCHS + 1), 0))
    client.log_batch(run_id, metrics=metrics)
    client.set_terminated(run_id, status, end_time=start + 1000 * (EPOCHS + 2))
    return run_id


@pytest.fixture(scope="module")
def runs_store(tmp_path_factory):
    from mlflow.entities import Metric

    uri = f"sqlite:///{tmp_path_factory.mktemp('store') / 'mlflow.db'}"
    client = tracking.client(uri)
    experiment_id = tracking.ensure_experiment(uri, "e")
    a = tracking.start_sweep(uri, experiment_id, "sweep-a", {"command": "bench a"}, [])
    b = tracking.start_sweep(uri, experiment_id, "sweep-b", {"command": "bench b"}, [])
    ids = {
        "cosine-seed0": _make_run(client, experiment_id, "cosine-seed0", a),
        "cosine-seed1": _make_run(client, experiment_id, "cosine-seed1", a),
        "step-seed0": _make_run(client, experiment_id, "step-seed0", a),
        "constant-seed0": _make_run(client, experiment_id, "constant-seed0", b, lr=0.2),
        "step-seed1": _make_run(client, experiment_id, "step-seed1", b, status="FAILED"),
        "polynomial-seed0": _make_run(
            client, experiment_id, "polynomial-seed0", **{tracking.DIVERGED_TAG: "true"}
        ),
    }
    _make_run(client, experiment_id, "finder-seed0", a, kind="lr_find")
    # A step logged twice (the later value counts) and a NaN.
    start = client.get_run(ids["cosine-seed1"]).info.start_time
    client.log_batch(
        ids["cosine-seed1"],
        metrics=[
            Metric("val_acc", 0.123, start + 2500, 2),
            Metric("val_loss", float("nan"), start + 3500, 3),
        ],
    )
    return uri, a, b, ids


def _per_run(uri, run_ids, key):
    """What one ``get_metric_history`` call per run gives."""
    client = tracking.client(uri)
    return [
        (r, m.step, m.value, m.timestamp)
        for r in run_ids
        for m in client.get_metric_history(r, key)
    ]


def _same(points, expected):
    """The same points per run (in the same order), NaN equal to NaN."""

    def by_run(points):
        runs = {}
        for p in points:
            runs.setdefault(p[0], []).append(
                tuple("nan" if isinstance(x, float) and math.isnan(x) else x for x in p)
            )
        return runs

    assert by_run(points) == by_run(expected)
    assert len(points) == len(expected)


@pytest.mark.parametrize("reader", ["columns", "bulk", "per run"])
@pytest.mark.parametrize("runs, page", [(500, 200_000), (2, 5), (1, 3)])
def test_bulk_reading_gives_what_per_run_reading_gives(runs_store, monkeypatch, reader, runs, page):
    uri, _, _, ids = runs_store
    monkeypatch.setattr(tracking.reading, "BULK_RUNS", runs)
    monkeypatch.setattr(tracking.reading, "BULK_PAGE", page)  # a run has 4 epochs and 12 LR steps
    answers = []  # points per bulk query

    def spy(read):
        return lambda *args: answers.append(len(points := read(*args))) or points

    readers = {
        "columns": lambda store: spy(functools.partial(tracking.reading._read_columns, store)),
        "bulk": lambda store: spy(functools.partial(tracking.reading._read_bulk, store)),
        "per run": lambda store: None,
    }
    monkeypatch.setattr(tracking.reading, "_bulk_reader", readers[reader])
    run_ids = list(ids.values())
    for key in ("val_acc", "val_loss", "train_loss", "lr", "test_acc", "absent"):
        _same(
            tracking.reading._histories(tracking.client(uri), run_ids, key),
            _per_run(uri, run_ids, key),
        )
    if reader != "per run":
        assert (max(answers) > page) == (page < 100)  # small pages were cut short, and read again


def test_a_sqlite_store_is_read_by_columns(runs_store):
    uri = runs_store[0]
    read = tracking.reading._bulk_reader(tracking.client(uri)._tracking_client.store)
    assert read.func is tracking.reading._read_columns


def test_load_runs_frames(runs_store):
    uri, a, b, ids = runs_store
    data = tracking.load_runs(uri, "e")
    runs = data.runs.set_index("run_name")
    assert list(data.runs.columns) == tracking.RUN_COLUMNS
    assert set(runs.index) == {n for n in ids}  # the LR range test is left out
    assert list(data.runs["start_time"]) == sorted(data.runs["start_time"])
    cosine = runs.loc["cosine-seed0"]
    assert (cosine["schedule"], cosine["seed"], cosine["sweep"]) == ("cosine", 0, a)
    assert cosine["end_time"] - cosine["start_time"] == pytest.approx(EPOCHS + 2)
    assert cosine["test_acc"] == pytest.approx(0.906)
    assert cosine["train_loss_final"] == pytest.approx(2 / EPOCHS + 0.006)
    assert cosine["params"]["optimizer.lr"] == "0.1"
    assert cosine["tags"]["schedule"] == "cosine"
    assert runs["diverged"].to_dict() == {n: n == "polynomial-seed0" for n in ids}
    assert runs.loc["polynomial-seed0", "sweep"] == ""
    assert math.isnan(runs.loc["cosine-seed0", "val_acc_ensemble"])

    epochs = data.epochs
    assert list(epochs.columns) == tracking.EPOCH_COLUMNS
    assert ids["step-seed1"] not in set(epochs["run_id"])  # failed: listed, no history
    assert len(epochs) == 5 * EPOCHS
    one = epochs[epochs["run_id"] == ids["cosine-seed0"]]
    assert list(one["epoch"]) == list(range(1, EPOCHS + 1))
    assert list(one["val_acc"]) == pytest.approx([0.5 + e / 10 + 0.006 for e in range(1, 5)])
    assert list(one["time_s"]) == pytest.approx([1.0, 2.0, 3.0, 4.0])
    for _, run in epochs.groupby("run_id"):
        assert (run["time_s"] >= 0).all() and run["time_s"].is_monotonic_increasing
    twice = epochs[epochs["run_id"] == ids["cosine-seed1"]].set_index("epoch")
    assert twice.loc[2, "val_acc"] == 0.123  # the value logged last
    assert math.isfinite(runs.loc["cosine-seed1", "val_loss_final"])  # a NaN before the last


def test_load_runs_filters(runs_store):
    uri, a, b, ids = runs_store

    def names(**kw):
        return set(tracking.load_runs(uri, "e", **kw).runs["run_name"])

    assert names(sweeps=[a]) == {"cosine-seed0", "cosine-seed1", "step-seed0"}
    assert names(sweeps=[a, b]) == names() - {"polynomial-seed0"}
    assert names(sweeps=[]) == set()
    assert names(tags={"schedule": "step"}) == {"step-seed0", "step-seed1"}
    assert names(params={"optimizer.lr": "0.2"}) == {"constant-seed0"}
    assert names(sweeps=[a], tags={"seed": "0"}, params={"schedule.name": "cosine"}) == {
        "cosine-seed0"
    }
    assert names(tags={"schedule": "it's"}) == set()  # a quote in a value
    empty = tracking.load_runs(uri, "e", sweeps=[])
    assert list(empty.epochs.columns) == tracking.EPOCH_COLUMNS and empty.epochs.empty
    with pytest.raises(LookupError):
        tracking.load_runs(uri, "no such experiment")


def test_load_lr(runs_store):
    uri, _, _, ids = runs_store
    run_ids = [ids["constant-seed0"], ids["cosine-seed0"]]
    lr = tracking.load_lr(uri, run_ids)
    assert list(lr.columns) == tracking.LR_COLUMNS
    assert list(lr["run_id"]) == [run_ids[0]] * LR_STEPS + [run_ids[1]] * LR_STEPS
    assert list(lr["step"]) == list(range(LR_STEPS)) * 2
    expected = [0.2 * (1 - s / LR_STEPS) for s in range(LR_STEPS)]
    expected += [0.1 * (1 - s / LR_STEPS) for s in range(LR_STEPS)]
    assert list(lr["lr"]) == pytest.approx(expected)
    assert tracking.load_lr(uri, []).empty


def test_experiment_kind_tag(runs_store):
    uri = runs_store[0]
    client = tracking.client(uri)
    kind = tracking.EXPERIMENT_KIND_TAG
    assert client.get_experiment_by_name("e").tags[kind] == "custom_model_development"
    old = client.create_experiment("made before the tag")
    assert kind not in client.get_experiment(old).tags
    assert tracking.ensure_experiment(uri, "made before the tag") == old
    assert client.get_experiment(old).tags[kind] == "custom_model_development"
    other = client.create_experiment("genai", tags={kind: "genai_development"})
    tracking.ensure_experiment(uri, "genai")
    assert client.get_experiment(other).tags[kind] == "genai_development"  # a kind stays


def test_log_metrics_and_sweep_info(runs_store):
    uri, a, _, _ = runs_store
    client = tracking.client(uri)
    assert tracking.client(uri) is client
    tracking.log_metrics(uri, a, {"best_test_acc": 0.91, "n_runs": 3})
    assert client.get_run(a).data.metrics == {"best_test_acc": 0.91, "n_runs": 3.0}
    info = tracking.sweep_info(uri, a)
    assert info["command"] == "bench a"
    assert info["status"] == "RUNNING" and math.isnan(info["end_time"])
    assert info["start_time"] == pytest.approx(time.time(), abs=600)
    tracking.end_run(uri, a)
    info = tracking.sweep_info(uri, a)
    assert info["status"] == "FINISHED" and info["end_time"] >= info["start_time"]


def test_a_run_whose_last_loss_is_not_finite_is_diverged(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    experiment_id = tracking.ensure_experiment(uri, "e")
    for last in ({"train_loss": float("inf")}, {"val_loss": float("nan")}, {"val_loss": 0.3}):
        recorder = tracking.RunRecorder(uri, experiment_id, "r", tags={"schedule": "constant"})
        recorder.log({"train_loss": 0.5, "val_loss": 0.4}, step=1)
        recorder.log(last, step=2)
        recorder.finish()
    rows = tracking.load_runs(uri, "e").runs
    assert rows["diverged"].tolist() == [True, True, False]


# ---------------------------------------------------------------------------------------------
# Several writers, dead owners, resumed runs

WRITER = """
import sys
from bench import tracking

uri, name = sys.argv[1], sys.argv[2]
experiment_id = tracking.ensure_experiment(uri, "e")
recorder = tracking.RunRecorder(uri, experiment_id, name, tags={"schedule": "constant"})
for step in range(40):
    recorder.add({"lr": step, "train_loss_step": 2 * step}, step=step)
    if step % 4 == 3:
        recorder.flush()
        recorder.log_params({f"p{step}": step})
recorder.finish()
"""


def test_eight_processes_write_to_one_fresh_store_at_once(tmp_path):
    """Eight processes create the store (MLflow's schema migrations), the experiment and their
    runs at the same moment and write batches: no process dies, no run or point is lost."""
    import subprocess
    import sys

    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, uri, f"w{i}"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in range(8)
    ]
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0] * 8, "\n".join(outputs)[-3000:]
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("e").experiment_id])
    assert sorted(r.info.run_name for r in runs) == [f"w{i}" for i in range(8)]
    for run in runs:
        assert run.info.status == "FINISHED"
        assert len(run.data.params) == 10
        for key in ("lr", "train_loss_step"):
            steps = sorted(m.step for m in client.get_metric_history(run.info.run_id, key))
            assert steps == list(range(40))
    journal = client._tracking_client.store.engine.connect().exec_driver_sql("PRAGMA journal_mode")
    assert journal.scalar() == "wal"


def test_a_locked_store_is_tried_again_and_other_errors_are_not():
    from sqlalchemy.exc import OperationalError

    calls = []

    def locked_twice():
        calls.append(1)
        if len(calls) < 3:
            raise OperationalError("INSERT ...", {}, Exception("database is locked"))
        return "written"

    assert tracking.retrying(locked_twice) == "written"
    assert len(calls) == 3

    def broken():
        calls.append(1)
        raise ValueError("no such column")

    calls.clear()
    with pytest.raises(ValueError):
        tracking.retrying(broken)
    assert len(calls) == 1


def test_a_run_left_running_by_a_dead_process_is_marked_killed(tmp_path):
    import platform
    import subprocess
    import sys

    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    experiment_id = tracking.ensure_experiment(uri, "e")
    # A process that starts a run and dies without closing it.
    dead = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, os; from bench import tracking; "
            "r = tracking.RunRecorder(sys.argv[1], sys.argv[2], 'dead', tags={}); "
            "print(r.run_id); os._exit(9)",
            uri,
            experiment_id,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert dead.returncode == 9, dead.stderr[-2000:]
    dead_id = dead.stdout.split()[-1]
    alive = tracking.RunRecorder(uri, experiment_id, "alive", tags={})  # this process: alive
    elsewhere = tracking.RunRecorder(uri, experiment_id, "elsewhere", tags={})
    tracking.set_tags(uri, elsewhere.run_id, {tracking.OWNER_TAG: "other-host 1234 5"})

    assert tracking.close_stale(uri, experiment_id) == ["dead"]
    client = MlflowClient(uri)
    status = {r.info.run_name: r.info.status for r in client.search_runs([experiment_id])}
    assert status == {"dead": "KILLED", "alive": "RUNNING", "elsewhere": "RUNNING"}
    assert "ended without closing it" in client.get_run(dead_id).data.tags[tracking.ERROR_TAG]
    assert tracking.alive(f"{platform.node()} {os.getpid()}") is True
    assert tracking.alive("other-host 1234 5") is None
    alive.finish()
    elsewhere.finish()


def test_a_resumed_run_writes_no_step_twice(tmp_path):
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    experiment_id = tracking.ensure_experiment(uri, "e")
    first = tracking.RunRecorder(uri, experiment_id, "r", tags={})
    first.log({"lr": 0.1, "val_acc": 0.5}, step=0)
    first.log({"lr": 0.1}, step=1)
    first.finish("KILLED", error="interrupted")

    again = tracking.RunRecorder(uri, experiment_id, "r", tags={}, resume_run_id=first.run_id)
    assert MlflowClient(uri).get_run(first.run_id).info.status == "RUNNING"
    for step in (1, 2, 3):  # the resumed training replays step 1 before going on
        again.add({"lr": 0.2, "val_acc": 0.9}, step=step)
    again.finish()
    client = MlflowClient(uri)
    lr = sorted((m.step, m.value) for m in client.get_metric_history(first.run_id, "lr"))
    assert lr == [(0, 0.1), (1, 0.1), (2, 0.2), (3, 0.2)]
    acc = sorted(m.step for m in client.get_metric_history(first.run_id, "val_acc"))
    assert acc == [0, 1, 2, 3]
    assert len(client.search_runs([experiment_id])) == 1
    assert client.get_run(first.run_id).info.status == "FINISHED"


def test_a_sweep_folder_in_use_by_a_live_sweep_is_not_taken(tmp_path):
    from bench import sweep

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    experiment_id = tracking.ensure_experiment(uri, "e")
    parent = tracking.start_sweep(uri, experiment_id, "sweep-1", {}, [])  # this process: alive
    folder = tmp_path / "multirun" / "same"
    sweep.Sweep(uri, experiment_id, "e", parent, 2).save(folder)
    with pytest.raises(SystemExit) as stopped:
        sweep._claim(folder)
    assert stopped.value.code == 2
    tracking.end_run(uri, parent, "KILLED")  # once it has ended, a new sweep may use the folder
    sweep._claim(folder)


def test_a_signal_held_back_while_finishing_leaves_the_run_finished(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    experiment_id = tracking.ensure_experiment(uri, "e")
    recorder = tracking.RunRecorder(uri, experiment_id, "r", tags={})
    with pytest.raises(KeyboardInterrupt), tracking.signals_deferred():
        os.kill(os.getpid(), signal.SIGINT)
        recorder.finish()
    assert recorder.status == "FINISHED"  # what bench.run reads before marking it KILLED


def test_a_sweep_counts_runs_it_reused_and_stops_only_its_own(tmp_path):
    from mlflow.tracking import MlflowClient

    from bench import sweep

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    experiment_id = tracking.ensure_experiment(uri, "e")
    earlier = tracking.start_sweep(uri, experiment_id, "sweep-1", {}, [])
    later = tracking.start_sweep(uri, experiment_id, "sweep-2", {}, [])
    done = tracking.RunRecorder(uri, experiment_id, "done", tags={}, parent_run_id=earlier)
    done.finish()
    elsewhere = tracking.RunRecorder(uri, experiment_id, "elsewhere", {}, parent_run_id=earlier)
    tracking.RunRecorder(uri, experiment_id, "own", tags={}, parent_run_id=later)
    for reused in (done, elsewhere):
        tracking.link(uri, reused.run_id, later)

    runs = tracking.sweep_runs(uri, experiment_id, later)
    assert dict(zip(runs["run_name"], runs["reused"], strict=True)) == {
        "done": True,
        "elsewhere": True,
        "own": False,
    }
    finished, running_elsewhere, failed = sweep._summary(
        sweep.Sweep(uri, experiment_id, "e", later, 3)
    )
    assert (finished, running_elsewhere) == (1, 1)
    assert [f.split(" ")[0] for f in failed] == ["own"]  # still RUNNING, and this sweep's own

    tracking.kill_running(uri, experiment_id, later)  # after an interrupt
    status = {
        r.info.run_name: r.info.status for r in MlflowClient(uri).search_runs([experiment_id])
    }
    assert (status["own"], status["elsewhere"], status["done"]) == ("KILLED", "RUNNING", "FINISHED")
    assert len(tracking.load_runs(uri, "e", sweeps=[later]).runs) == 3
    assert len(tracking.load_runs(uri, "e", sweeps=[earlier]).runs) == 2


def test_a_requeued_slurm_job_takes_over_the_run_its_earlier_start_left(tmp_path, monkeypatch):
    from conftest import compose_run

    from bench import cli, resume, run

    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    monkeypatch.setenv("SLURM_STEP_ID", "0")
    assert tracking.owner()[tracking.OWNER_TAG].endswith(" slurm:4242.0")
    earlier_start = "node-a 1234 5 slurm:4242.0"  # the same job step, before SLURM requeued it
    assert tracking.alive(earlier_start) is False
    assert tracking.alive("node-a 1234 5 slurm:4243.0") is None  # another job: cannot tell
    assert tracking.alive("node-a 1234 5 slurm:4242.1") is None  # another step running now
    assert tracking.alive(tracking.owner()[tracking.OWNER_TAG]) is True  # this process

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    experiment_id = tracking.ensure_experiment(uri, "digits")
    config = compose_run("trainer.max_epochs=2")
    left = tracking.RunRecorder(
        uri, experiment_id, "cosine-seed0", tags={tracking.KEY_TAG: run.identity(config)}
    )
    tracking.set_tags(uri, left.run_id, {tracking.OWNER_TAG: earlier_start})
    decision = cli._decide(config, uri, experiment_id, None, "cosine-seed0")
    assert decision.action == resume.RUN  # not "running now": its process is gone
    from mlflow.tracking import MlflowClient

    assert MlflowClient(uri).get_run(left.run_id).info.status == "KILLED"


def test_a_half_built_store_without_runs_is_rebuilt_and_kept_aside(tmp_path):
    """What a process killed inside MLflow's schema creation left, before stores were built
    aside: some tables, no run. Opening it rebuilds it; the old file is kept beside it."""
    import sqlite3

    path = tmp_path / "mlflow.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE evaluation_datasets (x INTEGER)")
        db.execute("CREATE TABLE experiments (experiment_id INTEGER)")
    uri = f"sqlite:///{path}"
    experiment = tracking.ensure_experiment(uri, "after")
    assert tracking.client(uri).get_experiment(experiment).name == "after"
    assert len(list(tmp_path.glob("mlflow.db.broken-*"))) == 1


def test_a_store_that_is_not_a_database_is_left_alone_and_named(tmp_path):
    path = tmp_path / "mlflow.db"
    junk = os.urandom(50_000)
    path.write_bytes(junk)
    with pytest.raises(tracking.StoreError, match="it cannot be read as a database, so it is left"):
        tracking.client(f"sqlite:///{path}")
    assert path.read_bytes() == junk and not list(tmp_path.glob("mlflow.db.broken-*"))


def test_a_store_killed_while_it_is_created_is_never_left_half_built(tmp_path):
    """SIGKILL at several moments of a new store's creation (MLflow's import, its tables, its
    migrations): afterwards the store is absent or whole, and the next command opens it."""
    import subprocess
    import sys

    for delay in (1.5, 2.5, 3.5, 4.5):
        folder = tmp_path / str(delay)
        uri = f"sqlite:///{folder / 'mlflow.db'}"
        create = f"from bench import tracking; tracking.client({uri!r})"
        # No template kept yet: MLflow builds the schema (and the template is written after).
        cache = {**os.environ, tracking.CACHE_ENV: str(folder / "cache")}
        process = subprocess.Popen([sys.executable, "-c", create], env=cache)
        time.sleep(delay)
        process.kill()
        process.wait()
        assert tracking.ensure_experiment(uri, "after")  # the next command opens it
        assert not list(folder.glob("mlflow.db.broken-*")), delay  # nothing half-built there
        for kept in (folder / "cache").glob("*"):  # a template is whole, or not there at all
            assert kept.name.startswith("empty-store-mlflow-"), kept
            with contextlib.closing(sqlite3.connect(kept)) as db:
                assert db.execute("SELECT COUNT(*) FROM experiments").fetchone() == (0,)


def test_a_new_store_is_copied_from_a_template_of_the_schema(tmp_path, monkeypatch):
    """The first new store is built by MLflow and kept, empty, as the template; the next is a
    copy of it: the same schema, and its Default experiment where MLflow would put it."""
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv(tracking.CACHE_ENV, str(tmp_path / "cache"))
    built, copied = tmp_path / "built" / "mlflow.db", tmp_path / "copied" / "mlflow.db"
    for path in (built, copied):
        path.parent.mkdir()
        monkeypatch.chdir(path.parent)
        tracking.ensure_experiment(f"sqlite:///{path}", "e")
        if path == built:
            kept = tracking.store_template()
            assert kept.is_file() and kept.parent == tmp_path / "cache"
            kept.touch()
            mtime = kept.stat().st_mtime_ns

    def schema(path):
        with contextlib.closing(sqlite3.connect(path)) as db:
            tables = db.execute("SELECT name, sql FROM sqlite_master ORDER BY name").fetchall()
            return tables, db.execute("SELECT * FROM alembic_version").fetchall()

    assert schema(copied) == schema(built)
    assert tracking.store_template().stat().st_mtime_ns == mtime  # read, not written again
    for path in (built, copied):
        experiments = MlflowClient(f"sqlite:///{path}").search_experiments()
        where = {e.name: e.artifact_location for e in experiments}
        assert where == {
            "Default": str(path.parent / "mlruns" / "0"),
            "e": str(path.parent / "mlruns" / "1"),
        }
    # Without a cache (set empty) every store is built by MLflow, and nothing is kept.
    monkeypatch.setenv(tracking.CACHE_ENV, "")
    assert tracking.store_template() is None
    tracking.ensure_experiment(f"sqlite:///{tmp_path / 'plain.db'}", "e")


def test_a_run_is_claimed_by_one_process_at_a_time(tmp_path):
    """The claim on a run's identity is held by the process that got it, while it lives: a
    second process is told no; once the first ends (here: killed), the claim is free."""
    import subprocess
    import sys

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    hold = (
        "import sys, time\nfrom bench import tracking\n"
        f"with tracking.claimed({uri!r}, 'k1') as mine:\n"
        "    print(mine, flush=True)\n    time.sleep(60)\n"
    )
    holder = subprocess.Popen([sys.executable, "-c", hold], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "True"
        with tracking.claimed(uri, "k1") as mine:
            assert mine is False
        with tracking.claimed(uri, "k2") as other:
            assert other is True  # another identity is free
    finally:
        holder.kill()
        holder.wait()
    with tracking.claimed(uri, "k1") as mine:
        assert mine is True
