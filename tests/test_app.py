"""The real applications end to end: Hydra multirun -> Lightning -> MLflow (SQLite) -> report."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from bench import config as bench_config
from bench import schedules

BIN = Path(sys.executable).parent


def run_cmd(cmd: str, *args: str, cwd: Path, env: dict | None = None, timeout: int = 300):
    return subprocess.run(
        [str(BIN / cmd), *args],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


run = run_cmd


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """A tiny sweep through bench-train -m, then bench-report on it."""
    root = tmp_path_factory.mktemp("sweep")
    train = run(
        "bench-train",
        "-m",
        "schedule=constant,cosine",
        "seed=0",
        "trainer.max_epochs=2",
        "schedule.warmup_fraction=0.1",
        cwd=root,
        env={"MLFLOW_TRACKING_URI": ""},  # the default: ./mlflow.db where the command runs
    )
    assert train.returncode == 0, train.stderr[-3000:]
    report = run("bench-report", "--sweep", "latest", cwd=root)
    assert report.returncode == 0, report.stderr[-3000:]
    # The store's file alone, copied before anything else opens it: the commands closed their
    # connections at exit, so nothing of theirs is left in a write-ahead log beside it.
    (root / "copied").mkdir()
    shutil.copy(root / "mlflow.db", root / "copied" / "mlflow.db")
    client = MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("digits")
    runs = client.search_runs([experiment.experiment_id])
    return root, train, report, client, runs


def test_the_store_file_alone_holds_every_run_after_the_commands_exit(sweep):
    root, _, _, client, runs = sweep
    copied = MlflowClient(f"sqlite:///{root / 'copied' / 'mlflow.db'}")
    experiment = copied.get_experiment_by_name("digits")
    assert experiment is not None
    again = {r.info.run_id: r for r in copied.search_runs([experiment.experiment_id])}
    assert set(again) == {r.info.run_id for r in runs}
    for r in runs:
        assert again[r.info.run_id].info.status == r.info.status
        assert again[r.info.run_id].data.metrics == r.data.metrics


def sweep_report(root: Path) -> Path:
    """The report a `bench` sweep wrote into its own folder."""
    [folder] = root.glob("multirun/*/*/report")
    return folder


def children(runs):
    return [r for r in runs if r.data.tags.get("bench.kind") == "run"]


def test_sweep_nests_named_runs_under_one_parent(sweep):
    _, _, _, _, runs = sweep
    parents = [r for r in runs if r.data.tags.get("bench.kind") == "sweep"]
    assert len(parents) == 1
    assert parents[0].info.status == "FINISHED"
    kids = children(runs)
    assert sorted(r.info.run_name for r in kids) == ["constant-seed0", "cosine-seed0"]
    for r in kids:
        assert r.info.status == "FINISHED"
        assert r.data.tags["mlflow.parentRunId"] == parents[0].info.run_id
        assert r.data.tags["schedule"] == r.info.run_name.split("-")[0]
        assert r.data.tags["seed"] == "0"


def test_run_params_and_config_artifact(sweep):
    _, _, _, client, runs = sweep
    for r in children(runs):
        params = r.data.params
        assert params["schedule.name"] == r.data.tags["schedule"]
        assert params["optimizer.lr"] == "0.05"
        assert params["trainer.max_epochs"] == "2"
        assert int(params["total_steps"]) == 2 * int(params["steps_per_epoch"]) > 0
        assert params["num_classes"] == "10" and params["image_size"] == "8"
        assert [params[f"n_{s}"] for s in ("train", "val", "test")] == ["1149", "288", "360"]
        assert [a.path for a in client.list_artifacts(r.info.run_id)] == [
            "config.yaml",
            "weights.pt",
        ]


def test_final_weights_start_the_next_run(sweep, tmp_path):
    import torch

    from bench import models

    root, _, _, client, runs = sweep
    run = children(runs)[0]
    # Saved beside the run's own Hydra folder and as an MLflow artifact: the same tensors.
    local = next(root.glob("multirun/*/*/0/weights.pt"))
    logged = Path(client.download_artifacts(run.info.run_id, "weights.pt", str(tmp_path)))
    saved = torch.load(local, weights_only=True)
    assert set(saved) == set(torch.load(logged, weights_only=True))
    net = models.small_cnn(num_classes=10, in_channels=1, image_size=8, weights=str(local))
    body = {k: v for k, v in net.state_dict().items() if not k.startswith("fc.")}
    assert all(torch.equal(v, saved[k]) for k, v in body.items())


def test_lr_trace_equals_the_schedule_at_every_step(sweep):
    _, _, _, client, runs = sweep
    for r in children(runs):
        total = int(r.data.params["total_steps"])
        history = sorted(client.get_metric_history(r.info.run_id, "lr"), key=lambda m: m.step)
        assert [m.step for m in history] == list(range(total))
        expected = schedules.make(r.data.tags["schedule"], base=0.05, warmup_fraction=0.1)
        assert [m.value for m in history] == pytest.approx(
            [expected(t, total) for t in range(total)]
        )
        losses = client.get_metric_history(r.info.run_id, "train_loss_step")
        assert sorted(m.step for m in losses) == list(range(total))


def test_one_val_point_per_epoch_and_a_test_accuracy(sweep):
    _, _, _, client, runs = sweep
    for r in children(runs):
        for key in ("val_acc", "val_loss", "train_loss"):
            history = client.get_metric_history(r.info.run_id, key)
            assert sorted(m.step for m in history) == [1, 2]
        assert all(0 <= m.value <= 1 for m in client.get_metric_history(r.info.run_id, "val_acc"))
        assert 0.5 < r.data.metrics["test_acc"] <= 1  # two epochs learn digits well past chance


def test_report_files_match_mlflow(sweep):
    root, _, report, client, runs = sweep
    folder = root / "reports" / "digits"  # bench-report's default, never results/
    names = {p.name for p in folder.iterdir()}
    for stem in ("val_acc_curves", "lr_traces", "final_acc_per_seed", "forest", "stability"):
        assert {f"{stem}.png", f"{stem}.svg"} <= names
    for table in ("accuracy", "stability", "claims"):
        assert {f"{table}.csv", f"{table}.md", f"{table}.tex"} <= names
    assert "report.md" in names
    assert (folder / "val_acc_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    accuracy = pd.read_csv(folder / "accuracy.csv")
    assert set(accuracy["metric"]) == {"final_val_acc", "best_val_acc", "test_acc"}
    by = accuracy.set_index(["metric", "schedule"])
    assert list(by.loc["final_val_acc"].index) == ["constant", "cosine"]
    for r in children(runs):
        final = max(client.get_metric_history(r.info.run_id, "val_acc"), key=lambda m: m.step)
        schedule = r.data.tags["schedule"]
        assert by.loc[("final_val_acc", schedule), "n_runs"] == 1
        assert by.loc[("final_val_acc", schedule), "mean"] == pytest.approx(final.value)
        assert by.loc[("test_acc", schedule), "mean"] == pytest.approx(r.data.metrics["test_acc"])
    stability = pd.read_csv(folder / "stability.csv")
    assert list(stability["schedule"]) == ["constant", "cosine"]
    assert "final val acc" in report.stdout and "cosine" in report.stdout
    text = (folder / "report.md").read_text()
    for section in ("## What was run", "## Verdicts", "## Accuracy", "## Stability"):
        assert section in text
    assert "Δ vs constant (pt)" in text and "diff_mean" not in text  # headers for readers
    assert "`bench-train -m schedule=constant,cosine" in text  # the command that ran
    assert "**Versions**: `python " in text and "torch " in text


def test_report_regenerates_byte_for_byte(sweep, tmp_path):
    from bench import report

    root, _, _, _, _ = sweep
    uri = f"sqlite:///{root / 'mlflow.db'}"
    first = report.make(uri, "digits", tmp_path / "a").folder
    second = report.make(uri, "digits", tmp_path / "b").folder
    files = sorted(str(p.relative_to(first)) for p in first.rglob("*") if p.is_file())
    # 3 tables x (csv, md, tex), 6 figures x (png, svg), report.md, and the 4 files of data/
    assert files == sorted(str(p.relative_to(second)) for p in second.rglob("*") if p.is_file())
    assert len(files) == 26 and "data/runs.json" in files
    for name in files:
        assert (first / name).read_bytes() == (second / name).read_bytes(), name


def test_report_is_logged_to_the_sweep_parent(sweep):
    _, _, _, client, runs = sweep
    parent = next(r for r in runs if r.data.tags.get("bench.kind") == "sweep")
    logged = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"accuracy.csv", "stability.csv", "claims.csv", "report.md", "forest.png"} <= logged
    # The parent's row in MLflow's UI answers the question without expanding it.
    metrics = client.get_run(parent.info.run_id).data.metrics
    kids = {r.data.tags["schedule"]: r for r in children(runs)}
    # In the report's units (%, points), rounded: no float noise in the UI.
    assert metrics["cosine.diff_vs_baseline_pt"] == pytest.approx(
        metrics["cosine.final_val_acc_pct"] - metrics["constant.final_val_acc_pct"], abs=0.011
    )
    final = client.get_metric_history(kids["cosine"].info.run_id, "val_acc")[-1].value
    assert metrics["cosine.final_val_acc_pct"] == round(100 * final, 2)
    assert all(v == round(v, 2) for v in metrics.values())
    tags = client.get_run(parent.info.run_id).data.tags
    assert tags["bench.report.baseline"] == "constant"  # what diff_vs_baseline is from
    # Named by when and what it compared; described by its result.
    assert re.fullmatch(r"\d\d-\d\d \d\d:\d\d schedule×2", parent.info.run_name)
    note = tags["mlflow.note.content"]
    assert note.startswith("2 finished runs. Final val acc, mean over seeds: ")
    assert f"constant {metrics['constant.final_val_acc_pct']:.2f}%" in note
    diff = metrics["cosine.diff_vs_baseline_pt"]
    assert f"cosine vs constant: {diff:+.2f} pt (paired over 1 seed)." in note  # no interval
    assert "Claims: " in note and "nan" not in note
    # Runs carry schedule and seed as params (the UI groups by params), and the experiment
    # carries MLflow's mark of a model-training experiment.
    assert {r.data.params["schedule"] for r in kids.values()} == {"constant", "cosine"}
    assert all(r.data.params["seed"] == "0" for r in kids.values())
    experiment = client.get_experiment(parent.info.experiment_id)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"


def saved_view(client, parent) -> dict:
    """The sweep's saved view of MLflow's runs page, as the UI reads it: its state, its name."""
    experiment = client.get_experiment(parent.info.experiment_id)
    envelope = json.loads(experiment.tags[f"mlflow.sharedViewState.bench-{parent.info.run_id}"])
    assert isinstance(envelope["createdAt"], int) and isinstance(envelope["state"], str)
    return json.loads(envelope["state"]) | {"name": envelope["name"]}


def test_the_report_saves_the_sweeps_comparison_as_a_view_of_mlflows_ui(sweep):
    _, _, _, client, runs = sweep
    parent = next(r for r in runs if r.data.tags.get("bench.kind") == "sweep")
    view = saved_view(client, parent)
    assert view["name"] == parent.info.run_name  # listed under "Views" by the sweep's name
    # Its filter finds exactly the sweep's runs, grouped by schedule, the mean of each group.
    shown = client.search_runs([parent.info.experiment_id], view["searchFilter"])
    assert {r.info.run_id for r in shown} == {r.info.run_id for r in children(runs)}
    assert view["groupBy"]["groupByKeys"] == [{"mode": "param", "groupByData": "schedule"}]
    assert view["groupBy"]["aggregateFunction"] == "average"
    assert {"metrics.`val_acc`", "params.`schedule`", "params.`seed`"} <= set(
        view["selectedColumns"]
    )
    charts = {c["metricKey"]: c for c in view["compareRunCharts"]}
    assert list(charts)[0] == "val_acc" and charts["val_acc"]["type"] == "LINE"
    # val_acc drawn on the data's range, every epoch of every run inside it.
    accuracies = [
        m.value for r in children(runs) for m in client.get_metric_history(r.info.run_id, "val_acc")
    ]
    low, high = charts["val_acc"]["range"]["yMin"], charts["val_acc"]["range"]["yMax"]
    assert low < min(accuracies) and max(accuracies) < high <= 1.0
    assert high - low < 1.0 or min(accuracies) < 0.01


def test_progress_names_run_of_total_and_epoch(sweep):
    _, train, _, _, _ = sweep
    out = train.stdout + train.stderr
    assert "[1/2] constant-seed0 epoch 1/2" in out
    assert "[2/2] cosine-seed0 epoch 2/2" in out
    assert "Sweep done: 2 of 2 runs finished." in out


def test_failed_run_does_not_stop_the_sweep(tmp_path):
    # lr=1e30 diverges at once, and anomaly detection turns the NaN into an exception.
    result = run(
        "bench",
        "schedule=constant",
        "seed=0",
        "optimizer.lr=1e30,0.05",
        "+trainer.detect_anomaly=true",
        "trainer.max_epochs=1",
        cwd=tmp_path,
        env={"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'store.db'}"},
    )
    assert result.returncode == 1
    assert "Sweep done: 1 of 2 runs finished." in result.stdout
    assert "constant-seed0 [schedule=constant seed=0 optimizer.lr=1e+30" in result.stderr
    assert "FAILED: RuntimeError" in result.stderr

    client = MlflowClient(f"sqlite:///{tmp_path / 'store.db'}")
    runs = client.search_runs([client.get_experiment_by_name("digits").experiment_id])
    status = {r.data.params.get("optimizer.lr"): r.info.status for r in children(runs)}
    assert status == {"1e+30": "FAILED", "0.05": "FINISHED"}
    parent = next(r for r in runs if r.data.tags.get("bench.kind") == "sweep")
    assert parent.info.status == "FAILED"
    failed = next(r for r in children(runs) if r.info.status == "FAILED")
    assert "error.txt" in {a.path for a in client.list_artifacts(failed.info.run_id)}
    # The report still covers the finished run and counts the failed one.
    accuracy = pd.read_csv(sweep_report(tmp_path) / "accuracy.csv")
    assert accuracy[["n_runs", "n_unfinished"]].values.tolist() == [[1, 1]] * 3
    stability = pd.read_csv(sweep_report(tmp_path) / "stability.csv")
    assert stability[["n_runs", "n_failed"]].values.tolist() == [[1, 1]]
    assert not (tmp_path / "results").exists()  # a sweep never touches the curated report


def test_parallel_jobs_share_one_store_and_parent(tmp_path):
    # Hydra's joblib launcher runs the jobs in two worker processes at once, each in its own
    # job folder: the store stays in the launch folder all the same.
    result = run(
        "bench-train",
        "-m",
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
        "hydra.job.chdir=true",
        "schedule=constant,cosine,step",
        "trainer.max_epochs=1",
        cwd=tmp_path,
        env={"MLFLOW_TRACKING_URI": ""},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Sweep done: 3 of 3 runs finished." in result.stdout
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("digits").experiment_id])
    parent = next(r for r in runs if r.data.tags.get("bench.kind") == "sweep")
    kids = children(runs)
    assert sorted(r.info.run_name for r in kids) == ["constant-seed0", "cosine-seed0", "step-seed0"]
    assert {r.data.tags["mlflow.parentRunId"] for r in kids} == {parent.info.run_id}
    assert {r.info.status for r in kids} == {"FINISHED"}
    assert [p.name for p in tmp_path.rglob("mlflow.db")] == ["mlflow.db"]

    # The same config and seed give the same numbers whichever launcher runs it: joblib's
    # workers get cores // n_jobs CPU threads where a plain run would get one per core (here:
    # one more than the workers'), and CPU sums split by thread, so the run sets its own count.
    import joblib

    alone = run(
        "bench-train",
        "schedule=cosine",
        "trainer.max_epochs=1",
        cwd=tmp_path,
        env={
            "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'alone.db'}",
            "OMP_NUM_THREADS": str(max(joblib.cpu_count() // 2, 1) + 1),
        },
    )
    assert alone.returncode == 0, alone.stderr[-3000:]
    single = MlflowClient(f"sqlite:///{tmp_path / 'alone.db'}")
    [solo] = single.search_runs([single.get_experiment_by_name("digits").experiment_id])
    [cosine] = [r for r in kids if r.info.run_name == "cosine-seed0"]
    for key in ("train_loss_step", "train_loss", "lr", "val_loss", "val_acc"):
        got = [(m.step, m.value) for m in client.get_metric_history(cosine.info.run_id, key)]
        want = [(m.step, m.value) for m in single.get_metric_history(solo.info.run_id, key)]
        assert sorted(got) == sorted(want), key
    assert len(single.get_metric_history(solo.info.run_id, "train_loss_step")) > 10


def test_report_defaults_to_the_latest_sweep_and_pools_on_request(sweep, tmp_path):
    root, _, _, _, _ = sweep
    shutil.copy(root / "mlflow.db", tmp_path / "mlflow.db")
    shutil.copytree(root / "mlruns", tmp_path / "mlruns")
    # A second sweep repeats one run of the first exactly.
    again = run(
        "bench-train",
        "-m",
        "schedule=constant",
        "seed=0",
        "trainer.max_epochs=2",
        "schedule.warmup_fraction=0.1",
        "rerun=true",  # without it, the finished run would be skipped
        cwd=tmp_path,
        env={"MLFLOW_TRACKING_URI": ""},
    )
    assert again.returncode == 0, again.stderr[-3000:]
    assert "finished before" not in again.stdout + again.stderr

    latest = run("bench-report", cwd=tmp_path)
    assert latest.returncode == 0, latest.stderr[-3000:]
    table = pd.read_csv(tmp_path / "reports" / "digits" / "accuracy.csv")
    table = table[table["metric"] == "final_val_acc"]
    assert table[["schedule", "n_runs"]].values.tolist() == [["constant", 1]]
    assert "Warning" not in latest.stdout

    # Pooled, the repeated (schedule, seed) counts once: by its latest run.
    pooled = run("bench-report", "--all", "--out", "pooled", cwd=tmp_path)
    assert pooled.returncode == 0, pooled.stderr[-3000:]
    table = pd.read_csv(tmp_path / "pooled" / "accuracy.csv")
    table = table[table["metric"] == "final_val_acc"]
    assert table[["schedule", "n_runs"]].values.tolist() == [["constant", 1], ["cosine", 1]]
    assert "1 finished run(s) repeat a (setting, schedule, seed)" in pooled.stdout
    text = (tmp_path / "pooled" / "report.md").read_text()
    assert "all its runs" in text and "**Warning:** 1 finished run(s) repeat" in text

    # Two sweeps merged, filtered by a tag: the same cells, counted once.
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment_id = client.get_experiment_by_name("digits").experiment_id
    found = client.search_runs([experiment_id], "tags.`bench.kind` = 'sweep'")
    sweeps = [r.info.run_id for r in found]
    assert len(sweeps) == 2
    merged = run(
        "bench-report",
        *[a for s in sweeps for a in ("--sweep", s)],
        "--tag",
        "schedule=constant",
        "--out",
        "merged",
        cwd=tmp_path,
    )
    assert merged.returncode == 0, merged.stderr[-3000:]
    table = pd.read_csv(tmp_path / "merged" / "accuracy.csv")
    assert set(table["schedule"]) == {"constant"} and set(table["n_runs"]) == {1}
    assert "tag schedule=constant" in (tmp_path / "merged" / "report.md").read_text()

    unknown = run("bench-report", "--sweep", "deadbeef", cwd=tmp_path)
    assert unknown.returncode == 2
    assert "no sweep 'deadbeef' in experiment 'digits'" in unknown.stderr


def signal_when(args: list[str], cwd: Path, when: str, signum: int | None) -> tuple[int, str]:
    """Start ``bench-train`` with ``args``, send it ``signum`` (None: SIGKILL) once a line of its
    output contains ``when``; its exit code and output."""
    proc = subprocess.Popen(
        [str(BIN / "bench-train"), *args],
        cwd=cwd,
        env={**os.environ, "MLFLOW_TRACKING_URI": ""},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        # Ctrl-C must reach it even when this test runs in a background job, which ignores it.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = threading.Timer(300, proc.kill)  # a hang fails the test instead of stalling it
    deadline.start()
    seen = []
    try:
        for line in proc.stdout:
            seen.append(line)
            if when in line:
                proc.send_signal(signum or signal.SIGKILL)
                break
        output = "".join(seen) + proc.communicate(timeout=120)[0]
    finally:
        deadline.cancel()
        proc.kill()
    return proc.returncode, output


def statuses(root: Path) -> dict[str, str]:
    client = MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("digits").experiment_id])
    return {
        "sweep" if r.data.tags.get("bench.kind") == "sweep" else r.info.run_name: r.info.status
        for r in runs
    }


@pytest.mark.parametrize(
    ("signum", "when", "first"),
    [
        (signal.SIGINT, "[1/2] constant-seed0 epoch 3/", "KILLED"),  # Ctrl-C inside a run
        (signal.SIGTERM, "[1/2] constant-seed0 epoch 3/", "KILLED"),  # kill, a scheduler's stop
        (signal.SIGTERM, "[1/2] constant-seed0: val_acc=", "FINISHED"),  # between two runs
    ],
)
def test_a_signal_stops_the_sweep_and_marks_it_killed(tmp_path, signum, when, first):
    code, output = signal_when(
        ["-m", "schedule=constant,cosine", "trainer.max_epochs=6"], tmp_path, when, signum
    )
    assert code == 128 + signum, output[-3000:]
    name = signal.Signals(signum).name
    assert f"bench-train: stopped by {name}" in output
    assert "run the same command again to go on" in output
    assert "Traceback" not in output
    status = statuses(tmp_path)
    assert status.pop("constant-seed0") == first
    assert status.pop("sweep") == "KILLED"
    assert status in ({}, {"cosine-seed0": "KILLED"})  # between runs the next may have begun


def test_a_killed_sweep_run_again_resumes_where_it_stopped(tmp_path):
    from conftest import compose_run

    from bench import resume, run, tracking

    args = [
        "-m",
        "schedule=constant,cosine",
        "trainer.max_epochs=4",
        "trainer.checkpoint_seconds=0",
    ]
    code, output = signal_when(args, tmp_path, "[2/2] cosine-seed0 epoch 2/4", None)
    assert code == -signal.SIGKILL
    assert statuses(tmp_path) == {
        "constant-seed0": "FINISHED",
        "cosine-seed0": "RUNNING",  # its process is gone
        "sweep": "RUNNING",
    }
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    [killed] = client.search_runs(
        [client.get_experiment_by_name("digits").experiment_id],
        "attributes.run_name = 'cosine-seed0'",
    )
    checkpoint = Path(killed.data.tags["bench.checkpoint"])
    assert checkpoint.name == f"{killed.info.run_id}.ckpt" and checkpoint.is_file()  # its own
    # The report marks what a dead process left RUNNING as KILLED, and never counts it.
    report = run_cmd("bench-report", cwd=tmp_path)
    assert report.returncode == 0, report.stderr[-3000:]
    assert statuses(tmp_path) == {
        "constant-seed0": "FINISHED",
        "cosine-seed0": "KILLED",
        "sweep": "KILLED",
    }
    accuracy = pd.read_csv(tmp_path / "reports" / "digits" / "accuracy.csv")
    assert accuracy[["schedule", "n_runs", "n_unfinished"]].drop_duplicates().values.tolist() == [
        ["constant", 1, 0],
        ["cosine", 0, 1],
    ]

    again = run_cmd("bench-train", *args, cwd=tmp_path, env={"MLFLOW_TRACKING_URI": ""})
    assert again.returncode == 0, again.stderr[-3000:]
    out = again.stdout + again.stderr
    assert "[1/2] constant-seed0: finished before as run" in out
    assert "[2/2] cosine-seed0: resumes run" in out
    assert "[2/2] cosine-seed0 epoch 1/4" not in out  # epochs 1 and 2 are not trained again
    assert "[2/2] cosine-seed0 epoch 3/4" in out
    assert "Sweep done: 2 of 2 runs finished." in out

    # One run per cell, no step written twice, and the resumed run is the run that was never
    # stopped: the same config and seed trained in one go give the same numbers.
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment_id = client.get_experiment_by_name("digits").experiment_id
    kids = children(client.search_runs([experiment_id]))
    assert sorted((r.info.run_name, r.info.status) for r in kids) == [
        ("constant-seed0", "FINISHED"),
        ("cosine-seed0", "FINISHED"),
    ]
    cosine = next(r for r in kids if r.info.run_name == "cosine-seed0")
    assert tracking.CHECKPOINT_TAG not in cosine.data.tags
    assert not list(tmp_path.rglob("*.ckpt"))  # a finished run keeps no checkpoint
    reference_uri = f"sqlite:///{tmp_path / 'reference.db'}"
    config = compose_run("schedule=cosine", "trainer.max_epochs=4")
    assert cosine.data.tags[tracking.KEY_TAG] == resume.identity(config)
    run.train(
        bench_config.validate(config),
        tracking_uri=reference_uri,
        experiment_id=tracking.ensure_experiment(reference_uri, "digits"),
    )
    reference = MlflowClient(reference_uri)
    [ref] = reference.search_runs([reference.get_experiment_by_name("digits").experiment_id])
    for key in ("lr", "train_loss_step", "train_loss", "val_acc", "val_loss", "test_acc"):
        got = [(m.step, m.value) for m in client.get_metric_history(cosine.info.run_id, key)]
        want = [(m.step, m.value) for m in reference.get_metric_history(ref.info.run_id, key)]
        assert sorted(got) == sorted(want), key

    # The re-run's own report counts both cells; a sweep's report includes the runs it reused.
    latest = run_cmd("bench-report", "--out", "latest", cwd=tmp_path)
    assert latest.returncode == 0, latest.stderr[-3000:]
    accuracy = pd.read_csv(tmp_path / "latest" / "accuracy.csv")
    assert set(accuracy["n_runs"]) == {1} and set(accuracy["schedule"]) == {"constant", "cosine"}


def test_cifar10_study_on_real_images_from_an_image_folder(cifar_subset, tmp_path):
    result = run(
        "bench",
        "experiment=cifar10_cpu",
        "data=image_folder",
        f"data.root={cifar_subset}",
        "data.val_size=100",
        "data.train_per_class=20",
        "data.test_per_class=10",
        "trainer.max_epochs=2",
        "schedule=constant,cosine",
        "seed=0",
        cwd=tmp_path,
        env={"MLFLOW_TRACKING_URI": ""},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Sweep done: 2 of 2 runs finished." in result.stdout
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    runs = children(
        client.search_runs([client.get_experiment_by_name("cifar10_cpu").experiment_id])
    )
    for r in runs:
        p = r.data.params
        assert (p["num_classes"], p["in_channels"], p["image_size"]) == ("10", "3", "32")
        assert (p["n_train"], p["n_val"], p["n_test"]) == ("200", "100", "100")
        assert p["model._target_"] == "bench.models.resnet" and p["data.root"] == str(cifar_subset)
        assert 0 <= r.data.metrics["test_acc"] <= 1
    accuracy = pd.read_csv(sweep_report(tmp_path) / "accuracy.csv")
    assert list(accuracy["schedule"].unique()) == ["constant", "cosine"]


def test_transfer_study_starts_from_the_source_runs_weights(cifar_archive, tmp_path):
    common = [f"data.root={cifar_archive}", "data.val_size=10", "trainer.max_epochs=1"]
    common += ["data.train_per_class=null", "data.test_per_class=null"]
    source = run("bench-train", "experiment=transfer_cpu_source", *common, cwd=tmp_path)
    assert source.returncode == 0, source.stderr[-3000:]
    weights = tmp_path / "transfer_source" / "weights.pt"
    assert weights.is_file()

    target = run(
        "bench",
        "experiment=transfer_cpu",
        *common,
        "schedule=constant,cosine",
        "seed=0",
        "finetune.freeze_epochs=0",
        cwd=tmp_path,
    )
    assert target.returncode == 0, target.stderr[-3000:]
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    source_run = client.search_runs(
        [client.get_experiment_by_name("transfer_cpu_source").experiment_id]
    )[0]
    assert source_run.data.params["num_classes"] == "5"
    assert (
        source_run.data.params["data.classes"]
        == "['airplane', 'automobile', 'bird', 'cat', 'deer']"
    )
    runs = children(
        client.search_runs([client.get_experiment_by_name("transfer_cpu").experiment_id])
    )
    assert sorted(r.info.run_name for r in runs) == ["constant-seed0", "cosine-seed0"]
    for r in runs:
        assert r.info.status == "FINISHED"
        assert r.data.params["model.weights"] == str(weights)
        assert r.data.params["num_classes"] == "5"


def test_a_grid_over_a_setting_is_reported_per_setting(tmp_path):
    result = run(
        "bench",
        "schedule=constant,cosine",
        "seed=0,1",
        "optimizer.lr=0.05,0.1",
        "trainer.max_epochs=1",
        cwd=tmp_path,
        env={"MLFLOW_TRACKING_URI": ""},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    folder = sweep_report(tmp_path)
    accuracy = pd.read_csv(folder / "accuracy.csv")
    accuracy = accuracy[accuracy["metric"] == "final_val_acc"]
    assert accuracy[["setting", "schedule", "n_runs"]].values.tolist() == [
        ["optimizer.lr=0.05", "constant", 2],
        ["optimizer.lr=0.05", "cosine", 2],
        ["optimizer.lr=0.1", "constant", 2],
        ["optimizer.lr=0.1", "cosine", 2],
    ]
    assert pd.read_csv(folder / "stability.csv")["setting"].nunique() == 2
    names = {p.name for p in folder.iterdir()}
    for stem in ("val_acc_curves", "lr_traces", "final_acc_per_seed", "forest"):
        assert {f"{stem}-1.png", f"{stem}-2.png"} <= names
    # The base LR is swept: accuracy against it, and each schedule at its own best LR.
    assert {"lr_sensitivity.csv", "lr_sensitivity.png", "at_best_lr.csv", "ranks.csv"} <= names
    sensitivity = pd.read_csv(folder / "lr_sensitivity.csv")
    assert sorted(set(sensitivity["lr"])) == [0.05, 0.1] and set(sensitivity["n_runs"]) == {2}
    text = (folder / "report.md").read_text()
    assert "### Setting 2: optimizer.lr=0.1" in text and "Settings** that vary (2)" in text
    assert "## Base LR" in text and "## Across settings" in text
    assert "optimizer.lr=0.1" in result.stdout  # the terminal table names the setting
    # The address bench prints opens the sweep's comparison in MLflow's UI, grouped by
    # schedule and by the setting that varies.
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("digits")
    parent = client.search_runs(
        [experiment.experiment_id], "tags.`bench.kind` = 'sweep'", max_results=1
    )[0]
    address = result.stdout.strip().splitlines()[-1].rsplit(" ", 1)[-1]
    assert address == (
        f"http://127.0.0.1:5000/#/experiments/{experiment.experiment_id}/runs?"
        f"workflowType=machine_learning&viewStateShareKey=bench-{parent.info.run_id}"
        "&compareRunsMode=CHART"
    )
    view = saved_view(client, parent)
    keys = [k["groupByData"] for k in view["groupBy"]["groupByKeys"]]
    assert keys == ["schedule", "optimizer.lr"]
    assert "params.`optimizer.lr`" in view["selectedColumns"]


def test_new_schedules_and_schedule_free_run_on_the_cifar_preset(cifar_archive, tmp_path):
    common = [f"data.root={cifar_archive}", "data.val_size=20", "trainer.max_epochs=1", "seed=0"]
    # batch 16: 9 steps, enough for every phase of one_cycle, wsd and cyclic (checked before runs)
    common += ["data.train_per_class=null", "data.test_per_class=null", "data.batch_size=16"]
    new = "linear,exponential,one_cycle,wsd,cyclic,cosine_restarts"
    scheduled = run("bench", "experiment=cifar10_cpu", *common, f"schedule={new}", cwd=tmp_path)
    assert scheduled.returncode == 0, scheduled.stderr[-3000:]
    free = run(
        "bench",
        "experiment=cifar10_cpu",
        *common,
        "schedule=constant",
        "optimizer=sgd_schedulefree,adamw_schedulefree",
        cwd=tmp_path,
    )
    assert free.returncode == 0, free.stderr[-3000:]
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    runs = children(
        client.search_runs([client.get_experiment_by_name("cifar10_cpu").experiment_id])
    )
    assert sorted(r.data.tags["schedule"] for r in runs) == sorted(
        [*new.split(","), "sgd_schedulefree", "adamw_schedulefree"]
    )
    assert all(r.info.status == "FINISHED" for r in runs)
    plain = [r for r in runs if r.data.params["optimizer._target_"] == "torch.optim.SGD"]
    assert len(plain) == 6 and all(r.data.params["optimizer.nesterov"] == "True" for r in plain)
    # Pooled, the schedule-free runs sit beside the schedules in one table, with the ensemble's.
    report = run("bench-report", "--experiment", "cifar10_cpu", "--all", cwd=tmp_path)
    assert report.returncode == 0, report.stderr[-3000:]
    accuracy = pd.read_csv(tmp_path / "reports" / "cifar10_cpu" / "accuracy.csv")
    assert accuracy["setting"].isna().all()  # one setting
    assert set(accuracy["schedule"]) == {*new.split(","), "sgd_schedulefree", "adamw_schedulefree"}
    ensemble = pd.read_csv(tmp_path / "reports" / "cifar10_cpu" / "ensemble.csv")
    assert list(ensemble["schedule"]) == ["cosine_restarts"]
    assert ensemble["n_snapshots"].tolist() == [3]


def test_a_sweep_whose_end_fails_exits_non_zero_and_keeps_its_runs(tmp_path):
    """The report cannot be written (its folder would be inside a file): the runs are kept and
    finished, but the command does not pass for a success."""
    (tmp_path / "afile").write_text("")
    result = run(
        "bench",
        "schedule=constant",
        "seed=0",
        "trainer.max_epochs=1",
        "report.dir=afile/x",
        cwd=tmp_path,
        env={"MLFLOW_TRACKING_URI": ""},
    )
    assert result.returncode == 1
    assert "the sweep's runs ended, but its end failed: NotADirectoryError" in result.stderr
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    runs = children(client.search_runs([client.get_experiment_by_name("digits").experiment_id]))
    assert [r.info.status for r in runs] == ["FINISHED"]


def test_a_report_made_again_leaves_one_value_per_parent_metric(sweep):
    root, _, _, client, runs = sweep
    again = run("bench-report", "--sweep", "latest", "--out", "again", cwd=root)
    assert again.returncode == 0, again.stderr[-3000:]
    [parent] = [r for r in runs if r.data.tags.get("bench.kind") == "sweep"]
    metrics = client.get_run(parent.info.run_id).data.metrics
    assert metrics  # the report's headline numbers
    for key in metrics:
        assert len(client.get_metric_history(parent.info.run_id, key)) == 1, key


def test_a_report_is_drawn_again_from_its_own_data_without_the_store(sweep, tmp_path):
    """The report of a real sweep keeps its runs in data/; drawn again from them alone, in a
    folder with no MLflow store, it is the same report (every table and report.md)."""
    root = sweep[0]
    source = root / "reports" / "digits"
    shutil.copytree(source, tmp_path / "copy")
    again = run("bench-report", "--from", "copy", cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert not (tmp_path / "mlflow.db").exists()
    tables = sorted(p.name for p in source.iterdir() if p.suffix in (".md", ".csv", ".tex"))
    assert "report.md" in tables and "accuracy.csv" in tables
    for name in tables:
        assert (tmp_path / "copy" / name).read_text() == (source / name).read_text(), name
    moved = run(
        "bench-report", "--from", "copy", "--baseline", "cosine", "--out", "b", cwd=tmp_path
    )
    assert moved.returncode == 0, moved.stderr[-3000:]
    assert "differences are from **cosine**" in (tmp_path / "b" / "report.md").read_text()


def test_the_same_sweep_started_twice_at_once_trains_each_run_once(tmp_path):
    args = ["bench", "schedule=constant,cosine", "seed=0", "trainer.max_epochs=2"]
    env = {**os.environ, "MLFLOW_TRACKING_URI": ""}
    first, second = (
        subprocess.Popen(
            [str(BIN / args[0]), *args[1:]],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    )
    outputs = [p.communicate(timeout=300) for p in (first, second)]
    assert first.returncode == 0 and second.returncode == 0, [o[1][-2000:] for o in outputs]
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    runs = children(client.search_runs([client.get_experiment_by_name("digits").experiment_id]))
    keys = [r.data.tags["bench.key"] for r in runs]
    assert len(keys) == len(set(keys)) == 2  # one run per identity, whichever sweep ran it
    assert all(r.info.status == "FINISHED" for r in runs)


def test_a_sweeps_name_says_when_and_what_its_grid_varies():
    import time

    from bench.sweep import sweep_name

    jobs = [
        [f"schedule={s}", f"seed={i}", "trainer.max_epochs=3"]
        for s in ("constant", "cosine")
        for i in range(3)
    ]
    when = time.strptime("2026-12-06 21:30", "%Y-%m-%d %H:%M")
    assert sweep_name(jobs, when) == "12-06 21:30 schedule×2 seed×3"
    assert sweep_name([["seed=0", "+optimizer.lr=0.1"]], when) == "12-06 21:30 1 run"
