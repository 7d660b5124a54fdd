"""Who runs what: the process that owns a run, runs left behind by dead processes, the runs
the store has of one identity, a run claimed by one process of several starting it, runs
counted in later sweeps."""

from __future__ import annotations

import contextlib
import logging
import os
import platform
import time
from pathlib import Path

from mlflow.entities import ViewType
from mlflow.tracking import MlflowClient

from bench import pending
from bench.tracking.reading import equals, search, seconds_of, sweep_runs
from bench.tracking.store import client, retrying, sqlite_file, store_call
from bench.tracking.tags import (
    CHECKPOINT_TAG,
    ERROR_TAG,
    KEY_TAG,
    KIND_TAG,
    LINK_PREFIX,
    OWNER_TAG,
    PARENT_TAG,
)

log = logging.getLogger("bench")


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
        f"{equals('tags', KIND_TAG, CLAIM_KIND)} and {equals('tags', KEY_TAG, key)} "
        f"and attributes.status = 'RUNNING' and attributes.start_time >= {since}"
    )
    found = retrying(client(uri).search_runs, [experiment_id], query, run_view_type=ViewType.ALL)
    return min(found, key=lambda r: (r.info.start_time, r.info.run_id)).info.run_id


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


@store_call
def close_stale(uri: str, experiment_id: str) -> list[str]:
    """Mark KILLED every run of the experiment left RUNNING by a process of this machine that
    has died (killed, out of memory, power lost), or by an earlier start of this SLURM job;
    returns their names. Runs of other machines are left as they are: whether they still run
    cannot be told from here."""
    mc = client(uri)
    closed = []
    for run in search(mc, experiment_id, "attributes.status = 'RUNNING'"):
        tag = run.data.tags.get(OWNER_TAG)
        if tag and alive(tag) is False:
            _close(mc, run.info.run_id, tag)
            closed.append(run.info.run_name)
    return closed


def previous_runs(uri: str, experiment_id: str, key: str | None = None) -> dict[str, list]:
    """The runs of the experiment that have identity ``key`` (None: any), by identity, as
    ``bench.resume.Previous``; those left RUNNING by a dead process are marked KILLED first."""
    from bench.resume import Previous

    query = equals("tags", KIND_TAG, "run")
    if key is not None:
        query += f" and {equals('tags', KEY_TAG, key)}"
    found: dict[str, list] = {}
    mc = client(uri)
    for run in search(mc, experiment_id, query):
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
                start_time=seconds_of(run.info.start_time),
                sweep=parent,
                sweeps=tuple(s for s in (parent, *links) if s),
                checkpoint=tags.get(CHECKPOINT_TAG),
            )
        )
    return found


@store_call
def link(uri: str, run_id: str, sweep: str) -> None:
    """Count run ``run_id`` in sweep ``sweep`` as well as in the sweep that started it."""
    client(uri).set_tag(run_id, f"{LINK_PREFIX}{sweep}", "reused")


@store_call
def kill_running(uri: str, experiment_id: str, sweep: str) -> None:
    """Mark KILLED the runs this sweep started that are still RUNNING (after an interrupt:
    its parallel workers stop with it)."""
    runs = sweep_runs(uri, experiment_id, sweep)
    for run in runs[(runs["status"] == "RUNNING") & ~runs["reused"]].itertuples():
        client(uri).set_tag(run.run_id, ERROR_TAG, "interrupted")
        client(uri).set_terminated(run.run_id, status="KILLED")
