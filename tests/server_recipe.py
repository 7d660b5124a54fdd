"""The README's recipe for many machines, run for real: ``nox -s server``.

1. Sets up PostgreSQL (Debian's ``postgresql`` package: ``initdb``, ``pg_ctl``) in a temporary
   folder, listening on loopback only, with a database ``mlflow``.
2. Serves it with ``mlflow server --backend-store-uri postgresql://...`` on 127.0.0.1, artifacts
   in the same folder (the README's command, on loopback).
3. Starts ``--sweeps`` (8) ``bench`` sweeps at once, each from a folder of its own, all with
   ``MLFLOW_TRACKING_URI`` naming the server: every sweep a grid of ``constant,cosine`` on seed i.
4. Once the first epochs are in, stops the server for ``--outage`` seconds (longer than MLflow's
   own retries, which the sweeps get shortened to ``MLFLOW_HTTP_REQUEST_MAX_RETRIES=2``, so that
   the runs in flight must keep their writes on disk: ``bench.pending``), then starts it again.
5. Checks that nothing was lost: every sweep exited 0, every run and parent run is FINISHED,
   every run holds a ``val_acc`` point per epoch, an ``lr`` point per optimizer step and its
   ``test_acc``, and no writes are left pending. Prints one line per check and a summary; exits
   1 if any check fails.

Run as root (a container), PostgreSQL's programs run as the ``postgres`` user. Not part of CI.

    python tests/server_recipe.py                # what nox -s server runs
    python tests/server_recipe.py --keep DIR     # keep the database, store and logs in DIR
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

PG_BIN = Path("/usr/lib/postgresql/15/bin")
SERVER_START_S = 120  # mlflow server migrates a fresh database first: slow on 2 busy cores
EPOCHS = 40


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pg_program(name: str) -> str:
    found = shutil.which(name)
    return found or str(PG_BIN / name)


def as_postgres(command: list[str]) -> list[str]:
    """``command`` run as the ``postgres`` user where this process is root (initdb refuses
    root)."""
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


def say(line: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {line}", flush=True)


def start_postgres(folder: Path, port: int) -> str:
    data = folder / "pgdata"
    if os.geteuid() == 0:
        folder.chmod(0o777)  # the postgres user writes its data and socket here
    subprocess.run(
        as_postgres([pg_program("initdb"), "-D", str(data), "-U", "bench", "--auth=trust"]),
        check=True,
        capture_output=True,
    )
    options = f"-h 127.0.0.1 -p {port} -k {folder}"
    subprocess.run(
        as_postgres(
            [pg_program("pg_ctl"), "-D", str(data), "-o", options, "-l", str(folder / "pg.log")]
            + ["-w", "start"]
        ),
        check=True,
        capture_output=True,
    )
    subprocess.run(
        ["psql", "-h", "127.0.0.1", "-p", str(port), "-U", "bench", "-d", "postgres"]
        + ["-c", "CREATE DATABASE mlflow"],
        check=True,
        capture_output=True,
    )
    return f"postgresql://bench@127.0.0.1:{port}/mlflow"


def stop_postgres(folder: Path) -> None:
    subprocess.run(
        as_postgres([pg_program("pg_ctl"), "-D", str(folder / "pgdata"), "-m", "fast", "stop"]),
        capture_output=True,
    )


def start_server(backend: str, folder: Path, port: int) -> subprocess.Popen:
    log = open(folder / "mlflow-server.log", "a")  # noqa: SIM115 (the server's lifetime)
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", backend]
        + ["--artifacts-destination", str(folder / "artifacts")]
        + ["--host", "127.0.0.1", "--port", str(port), "--workers", "2"],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    started = time.monotonic()
    while time.monotonic() - started < SERVER_START_S:
        if server.poll() is not None:
            raise RuntimeError(f"mlflow server exited {server.returncode}; see {log.name}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                say(f"mlflow server answers on port {port} ({time.monotonic() - started:.0f} s)")
                return server
        except OSError:
            time.sleep(1)
    raise RuntimeError(f"mlflow server did not answer within {SERVER_START_S} s")


def stop_server(server: subprocess.Popen) -> None:
    if server.poll() is None:
        os.killpg(server.pid, 15)
        server.wait(timeout=60)


def epochs_in(uri: str) -> int:
    """The val_acc points recorded so far, over every run of the store."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    total = 0
    for experiment in client.search_experiments():
        for run in client.search_runs([experiment.experiment_id]):
            if "val_acc" in run.data.metrics:
                total += len(client.get_metric_history(run.info.run_id, "val_acc"))
    return total


def check(uri: str, sweeps: int, codes: list[int], folders: list[Path]) -> list[tuple[str, bool]]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    [experiment] = [e for e in client.search_experiments() if e.name == "server"]
    found = client.search_runs([experiment.experiment_id], max_results=1000)
    parents = [r for r in found if r.data.tags.get("bench.kind") == "sweep"]
    runs = [r for r in found if r.data.tags.get("bench.kind") == "run"]
    checks = [(f"every sweep exited 0 (codes {codes})", all(c == 0 for c in codes))]
    checks.append(
        (
            f"{len(parents)} parent runs, all FINISHED",
            len(parents) == sweeps and all(r.info.status == "FINISHED" for r in parents),
        )
    )
    checks.append(
        (
            f"{len(runs)} runs of {2 * sweeps}, all FINISHED",
            len(runs) == 2 * sweeps and all(r.info.status == "FINISHED" for r in runs),
        )
    )
    short = []
    for run in runs:
        steps = int(run.data.params.get("total_steps", -1))
        val = client.get_metric_history(run.info.run_id, "val_acc")
        lr = client.get_metric_history(run.info.run_id, "lr")
        if (
            sorted(m.step for m in val) != list(range(1, EPOCHS + 1))
            or sorted(m.step for m in lr) != list(range(steps))
            or "test_acc" not in run.data.metrics
        ):
            short.append(f"{run.info.run_name} ({len(val)} val_acc, {len(lr)} of {steps} lr)")
    checks.append(
        (
            f"every run holds {EPOCHS} val_acc points, an lr point per step and test_acc"
            + (f"; short: {', '.join(short)}" if short else ""),
            not short,
        )
    )
    left = [p for f in folders for p in (f / "mlflow-pending").glob("*/writes.jsonl")]
    checks.append((f"no writes left pending ({len(left)} journals)", not left))
    return checks


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sweeps", type=int, default=8, help="sweeps writing at once (8)")
    parser.add_argument("--outage", type=float, default=60.0, help="seconds the server is down")
    parser.add_argument("--keep", type=Path, help="keep the database, store and logs here")
    args = parser.parse_args(argv)
    folder = args.keep or Path(tempfile.mkdtemp(prefix="bench-server-"))
    folder.mkdir(parents=True, exist_ok=True)
    backend = start_postgres(folder, free_port())
    say(f"PostgreSQL on 127.0.0.1: {backend}")
    try:
        return run(backend, folder, args)
    finally:
        stop_postgres(folder)


def run(backend: str, folder: Path, args: argparse.Namespace) -> int:
    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    server = start_server(backend, folder, port)
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": uri,
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",  # give up within seconds: the journal's case
        "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    }
    folders, sweeps = [], []
    for i in range(args.sweeps):
        work = folder / f"sweep{i}"
        work.mkdir(exist_ok=True)
        folders.append(work)
        command = ["bench", "schedule=constant,cosine", f"seed={i}", "tracking.experiment=server"]
        command += [f"trainer.max_epochs={EPOCHS}", "trainer.checkpoint_seconds=5"]
        log = open(work / "bench.log", "w")  # noqa: SIM115 (the sweep's lifetime)
        sweeps.append(subprocess.Popen(command, cwd=work, env=env, stdout=log, stderr=log))
    say(f"{args.sweeps} sweeps started")
    try:
        while epochs_in(uri) < 2 * args.sweeps:
            if all(s.poll() is not None for s in sweeps):
                break
            time.sleep(2)
        say(f"{epochs_in(uri)} epochs recorded; stopping the server for {args.outage:.0f} s")
        stop_server(server)
        time.sleep(args.outage)
        server = start_server(backend, folder, port)
        codes = [s.wait(timeout=3600) for s in sweeps]
        say("every sweep ended")
        checks = check(uri, args.sweeps, codes, folders)
    finally:
        for s in sweeps:
            if s.poll() is None:
                s.kill()
        stop_server(server)
    for text, ok in checks:
        print(f"{'ok  ' if ok else 'FAIL'} {text}")
    passed = all(ok for _, ok in checks)
    print(
        f"\n{'Nothing lost' if passed else 'Something was lost'}: {args.sweeps} sweeps into "
        f"mlflow server over PostgreSQL, the server down {args.outage:.0f} s mid-sweep. "
        f"Logs in {folder}."
    )
    if not args.keep and passed:
        shutil.rmtree(folder, ignore_errors=True)
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
