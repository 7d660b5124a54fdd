"""Writing runs: a sweep's parent run, a run's params, metrics, tags and artifacts
(``RunRecorder``), with the writes a tracking server could not take kept on disk and sent
later (``bench.pending``)."""

from __future__ import annotations

import functools
import json
import logging
import os
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mlflow.entities import Metric, Param
from mlflow.tracking import MlflowClient

from bench import pending
from bench.tracking.ownership import owner
from bench.tracking.store import client, retry_call, retrying, store_call
from bench.tracking.tags import CHECKPOINT_TAG, ERROR_TAG, KIND_TAG, PARENT_TAG, STEP_METRICS

log = logging.getLogger("bench")


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


@store_call
def end_run(uri: str, run_id: str, status: str = "FINISHED") -> None:
    client(uri).set_terminated(run_id, status=status)


@store_call
def log_artifacts(uri: str, run_id: str, folder: str | os.PathLike) -> None:
    client(uri).log_artifacts(run_id, str(folder))


@store_call
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


@store_call
def set_tags(uri: str, run_id: str, tags: Mapping[str, str]) -> None:
    mlflow = client(uri)
    for key, value in tags.items():
        mlflow.set_tag(run_id, key, value)


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
        start_time: int | None = None,
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
            run = retrying(
                self.client.create_run,
                experiment_id,
                start_time=start_time,
                run_name=run_name,
                tags=all_tags,
            )
            self.run_id = run.info.run_id
            self.journal = self._journal()

    def copy_history(self, source_run_id: str, steps: int, epochs: int) -> None:
        """Copy into this run the metrics of ``source_run_id`` up to the end of its epoch
        ``epochs`` (its first ``steps`` optimizer steps): what a run branched from that run's
        checkpoint trained before the branch. Each point keeps its time from the source run's
        start (this run was created back-dated by as much: ``start_time``)."""
        source = retrying(self.client.get_run, source_run_id)
        shift = self.start_ms() - source.info.start_time
        for key in source.data.metrics:
            if key.startswith("test_") or key.endswith("_ensemble"):
                continue
            last = steps - 1 if key in STEP_METRICS else epochs
            history = retrying(self.client.get_metric_history, source_run_id, key)
            self._buffer += [
                Metric(key, m.value, m.timestamp + shift, m.step) for m in history if m.step <= last
            ]
        self.flush()

    def start_ms(self) -> int:
        """When the run started, as MLflow has it (ms)."""
        return retrying(self.client.get_run, self.run_id).info.start_time

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
            retry_call(self._apply, ({"op": op, **args},), {}, server_wait=0)
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
