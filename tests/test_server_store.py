"""Runs recorded on a real ``mlflow server``: a server that stops answering mid-run, for longer
than MLflow's own retries (the run goes on, its writes kept on disk, ``bench.pending``, and sent
once the server is back), and one identity trained once when two sweeps race for it."""

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from bench import pending, tracking

BIN = Path(sys.executable).parent
SERVER_START_S = 180  # mlflow server takes 10-20 s to answer on 2 busy cores, more under load


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(folder: Path, port: int) -> subprocess.Popen:
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server"]
        + ["--backend-store-uri", f"sqlite:///{folder / 'server.db'}"]
        + ["--artifacts-destination", str(folder / "artifacts")]
        + ["--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + SERVER_START_S
    while time.monotonic() < deadline:
        assert server.poll() is None, "mlflow server exited"
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                return server
        except OSError:
            time.sleep(0.5)
    server.kill()
    pytest.fail(f"mlflow server did not answer within {SERVER_START_S} s")


def stop_server(server: subprocess.Popen) -> None:
    os.killpg(server.pid, 9)  # gone at once, as a crashed or restarted server is
    server.wait(timeout=30)


def test_a_runs_writes_outlive_a_server_outage_and_reach_the_server_when_it_is_back(
    tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    # MLflow's own retries would cover a short outage; with none, any outage is a long one.
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setattr(pending, "PROBE_SECONDS", 0.0)
    monkeypatch.setattr(pending, "WAIT_SECONDS", 1.0)
    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    server = start_server(tmp_path, port)
    try:
        experiment = tracking.ensure_experiment(uri, "outage")
        recorder = tracking.RunRecorder(uri, experiment, run_name="cosine-seed0", tags={})
        recorder.log({"val_acc": 0.25}, step=1)
    finally:
        stop_server(server)
    # The server is gone: nothing raises, the run goes on.
    recorder.log({"val_acc": 0.5, "val_loss": 1.5}, step=2)
    weights = tmp_path / "weights.pt"
    weights.write_bytes(b"final weights")
    recorder.log_artifact(weights)
    weights.unlink()  # (a temporary file: the journal holds a copy)
    recorder.set_tags({"bench.diverged": "false"})
    recorder.finish("FINISHED")  # waits WAIT_SECONDS for the server, then leaves the journal
    assert recorder.status == "FINISHED"
    [journal] = pending.journals(tmp_path)
    assert [w["op"] for w in journal.writes] == ["metrics", "artifact", "tags", "terminated"]

    server = start_server(tmp_path, port)
    try:
        # The next command in this folder sends them first, whatever it was asked to do.
        done = subprocess.run(
            [str(BIN / "bench-report"), "--experiment", "outage"],
            cwd=tmp_path,
            env={**os.environ, "MLFLOW_TRACKING_URI": uri},
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert f"MLflow run {recorder.run_id}: the 4 write(s) kept while" in done.stderr, (
            done.stderr
        )
        client = MlflowClient(uri)
        run = client.get_run(recorder.run_id)
        history = sorted(
            client.get_metric_history(recorder.run_id, "val_acc"), key=lambda m: m.step
        )
        artifacts = [a.path for a in client.list_artifacts(recorder.run_id)]
    finally:
        stop_server(server)
    assert run.info.status == "FINISHED"
    assert [(m.step, m.value) for m in history] == [(1, 0.25), (2, 0.5)]
    assert run.data.metrics["val_loss"] == 1.5 and run.data.tags["bench.diverged"] == "false"
    assert artifacts == ["weights.pt"]
    assert pending.journals(tmp_path) == []
    assert not (tmp_path / pending.FOLDER / recorder.run_id).exists()


def test_what_counts_as_the_server_not_answering():
    from mlflow.exceptions import MlflowException

    down = MlflowException(
        "API request to http://127.0.0.1:1/api/2.0/mlflow/runs/log-batch failed with exception "
        "HTTPConnectionPool(host='127.0.0.1', port=1): Max retries exceeded"
    )
    refused_write = MlflowException("INVALID_PARAMETER_VALUE: Changing param values is not allowed")
    assert pending.unreachable(down)
    assert not pending.unreachable(refused_write)
    assert not pending.unreachable(ValueError("database is locked"))


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """One server for the tests below (each uses experiments of its own)."""
    folder = tmp_path_factory.mktemp("server")
    port = free_port()
    process = start_server(folder, port)
    yield f"http://127.0.0.1:{port}"
    stop_server(process)


def test_a_claim_on_a_server_is_held_by_the_first_process_until_it_ends(server):
    experiment = tracking.ensure_experiment(server, "claims")
    with (
        tracking.claimed(server, "key-a", experiment) as first,
        tracking.claimed(server, "key-a", experiment) as second,
        tracking.claimed(server, "key-b", experiment) as other,
    ):
        assert (first, second, other) == (True, False, True)
    with tracking.claimed(server, "key-a", experiment) as again:
        assert again  # the earlier claims ended with their blocks
    # The markers never show among the experiment's runs.
    assert MlflowClient(server).search_runs([experiment]) == []


def test_two_identical_sweeps_on_a_server_train_each_run_once(server, tmp_path):
    env = {**os.environ, "MLFLOW_TRACKING_URI": server}
    sweeps = []
    for name in ("a", "b"):
        folder = tmp_path / name
        folder.mkdir()
        sweeps.append(
            subprocess.Popen(
                [str(BIN / "bench-train"), "-m", "schedule=constant,cosine"]
                + ["trainer.max_epochs=2", "tracking.experiment=race"],
                cwd=folder,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
    outputs = [s.communicate(timeout=600)[0] for s in sweeps]
    assert [s.returncode for s in sweeps] == [0, 0], outputs
    client = MlflowClient(server)
    experiment = client.get_experiment_by_name("race")
    found = client.search_runs([experiment.experiment_id], "tags.`bench.kind` = 'run'")
    assert sorted(r.data.tags["schedule"] for r in found) == ["constant", "cosine"]
    assert {r.info.status for r in found} == {"FINISHED"}


def test_a_journal_sends_each_write_once_across_processes(tmp_path):
    """Writes sent before the server went away again are not sent again by the next process;
    the journal is appended to, never rewritten, and goes once everything is sent."""
    import requests

    journal = pending.Journal(tmp_path / pending.FOLDER, "http://server", "run1")
    for step in range(4):
        journal.add("metrics", metrics=[["val_acc", 0.5, 0, step]])
    written = journal.path.read_text()
    sent = []

    def down_after_two(write):
        if len(sent) == 2:
            raise requests.exceptions.ConnectionError("refused")
        sent.append(write["metrics"][0][3])

    assert not journal.send(down_after_two, quick=False)
    assert journal.path.read_text() == written  # not rewritten
    [again] = pending.journals(tmp_path)  # the next command, in the same folder
    assert [w["metrics"][0][3] for w in again.writes] == [2, 3]
    assert again.send(lambda write: sent.append(write["metrics"][0][3]), quick=False)
    assert sent == [0, 1, 2, 3]
    assert pending.journals(tmp_path) == [] and not journal.folder.exists()
