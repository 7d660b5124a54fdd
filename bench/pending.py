"""A run's writes held on disk while its tracking server does not answer, sent when it does.

A run recorded on a tracking server (``tracking.uri=http://...``) keeps training through an
outage of any length. MLflow's client tries each request again for about four minutes
(``MLFLOW_HTTP_REQUEST_MAX_RETRIES``, ``..._BACKOFF_FACTOR``); a write that still fails is not
lost but appended to the run's journal, ``<folder>/mlflow-pending/<run id>/writes.jsonl`` (the
folder the command runs in; files the write names are copied beside it), and the run goes on.
Every later write first sends what is pending, in order (a quick try, at most one per
``PROBE_SECONDS``, so that a server still down does not hold training up). The journal is only
appended to; how many of its writes have been sent is kept beside it (``sent``), updated after
each one, so that none is sent twice and no write rewrites the journal. At the run's end
the pending writes are sent, waiting for the server for up to ``WAIT_SECONDS``; if it is still
down then, the journal stays, and the next bench command run in that folder (``bench``,
``bench-train``, ``bench-report``) sends it first (``bench.tracking.send_pending``), before
anything reads the store.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

log = logging.getLogger("bench")

FOLDER = "mlflow-pending"
JOURNAL = "writes.jsonl"
SENT = "sent"  # beside the journal: how many of its writes the server has taken
PROBE_SECONDS = 30.0  # while the server is down: at most one quick try per this many seconds
WAIT_SECONDS = 30 * 60.0  # at a run's end: how long to wait for the server to send the rest


def is_server(uri: str) -> bool:
    return uri.startswith(("http://", "https://"))


def unreachable(error: BaseException) -> bool:
    """Whether ``error`` says the server did not answer (refused, timed out, a gateway's 5xx
    after MLflow's own tries), rather than that it refused the write."""
    import requests

    while error is not None:
        if isinstance(error, requests.exceptions.ConnectionError | requests.exceptions.Timeout):
            return True
        text = str(error)
        if text.startswith("API request to") and (
            "failed with exception" in text or "timeout" in text
        ):
            return True
        error = error.__cause__ or error.__context__
    return False


@contextlib.contextmanager
def quick_tries() -> Iterator[None]:
    """MLflow's HTTP requests without its minutes of retries: one try, a short timeout."""
    saved = {
        k: os.environ.get(k)
        for k in ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_TIMEOUT")
    }
    os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = "0"
    os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] = "10"
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


class Journal:
    """The pending writes of run ``run_id`` to store ``uri``, in the order they were made."""

    def __init__(self, folder: Path, uri: str, run_id: str):
        self.folder = Path(folder) / run_id
        self.uri, self.run_id = uri, run_id
        self.path, self.sent_path = self.folder / JOURNAL, self.folder / SENT
        self.writes: list[dict[str, Any]] = []  # the writes not sent yet
        self.sent = 0  # the journal's writes sent before them
        if self.path.is_file():
            lines = [line for line in self.path.read_text().splitlines()[1:] if line.strip()]
            if self.sent_path.is_file():
                self.sent = int(self.sent_path.read_text())
            self.writes = [json.loads(line) for line in lines[self.sent :]]
        self._tried = 0.0  # when the last try to send failed (monotonic)

    def __len__(self) -> int:
        return len(self.writes)

    def add(self, op: str, **args: Any) -> None:
        """Keep one write (``op`` with its arguments; a file it names is copied here)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        if op == "artifact":
            kept = self.folder / uuid.uuid4().hex / Path(args["path"]).name  # the same name
            kept.parent.mkdir(exist_ok=True)
            shutil.copyfile(args["path"], kept)
            args = {**args, "path": str(kept)}
        write = {"op": op, **args}
        lines = [json.dumps(write)]
        if not self.path.is_file():
            lines.insert(0, json.dumps({"uri": self.uri, "run_id": self.run_id}))
        with open(self.path, "a") as f:
            f.write("\n".join(lines) + "\n")
            f.flush()
            os.fsync(f.fileno())
        self.writes.append(write)

    def _mark_sent(self) -> None:
        partial = self.sent_path.with_suffix(".partial")
        partial.write_text(str(self.sent))
        os.replace(partial, self.sent_path)

    def send(self, apply: Callable[[dict[str, Any]], None], quick: bool = True) -> bool:
        """Send the pending writes in order with ``apply``; True when none is left. ``quick``:
        one short try, at most once per ``PROBE_SECONDS``. A write sent leaves the journal at
        once; an error other than the server not answering is raised."""
        if not self.writes:
            return True
        if quick and time.monotonic() - self._tried < PROBE_SECONDS:
            return False
        with quick_tries() if quick else contextlib.nullcontext():
            while self.writes:
                try:
                    apply(self.writes[0])
                except Exception as e:
                    if not unreachable(e):
                        raise
                    self._tried = time.monotonic()
                    return False
                self.writes.pop(0)
                self.sent += 1
                self._mark_sent()
        log.info("MLflow run %s: the writes kept while the server was down are sent", self.run_id)
        shutil.rmtree(self.folder, ignore_errors=True)
        return True

    def wait(self, apply: Callable[[dict[str, Any]], None], seconds: float | None = None) -> bool:
        """Send the pending writes, waiting up to ``seconds`` (default ``WAIT_SECONDS``) for the
        server; True when sent."""
        seconds = WAIT_SECONDS if seconds is None else seconds
        deadline = time.monotonic() + seconds
        if self.writes:
            log.warning(
                "MLflow run %s: %d write(s) wait for the tracking server %s (kept in %s); "
                "waiting up to %.0f min",
                self.run_id,
                len(self.writes),
                self.uri,
                self.path,
                seconds / 60,
            )
        while not self.send(apply):
            if time.monotonic() > deadline:
                log.warning(
                    "MLflow run %s: the tracking server %s still does not answer; its %d "
                    "pending write(s) stay in %s and are sent by the next bench, bench-train "
                    "or bench-report run in %s",
                    self.run_id,
                    self.uri,
                    len(self.writes),
                    self.path,
                    Path.cwd(),
                )
                return False
            time.sleep(min(PROBE_SECONDS, max(0.0, deadline - time.monotonic())) + 0.01)
        return True


def journals(folder: Path | None = None) -> list[Journal]:
    """The journals left in ``folder`` (default: this one) by runs whose server was down."""
    root = Path(folder or Path.cwd()) / FOLDER
    found = []
    for path in sorted(root.glob(f"*/{JOURNAL}")):
        try:
            header = json.loads(path.read_text().splitlines()[0])
        except (OSError, ValueError, IndexError):
            continue
        found.append(Journal(root, header["uri"], header["run_id"]))
    return found
