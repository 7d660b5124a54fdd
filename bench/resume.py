"""Which run a config is, and what to do with it when it has been run before. Pure.

A run's identity (``identity``) is a hash of its resolved config without the keys that cannot
change its numbers (``IGNORED``: where it records, how it is displayed, what the report does,
how it was launched), and with ``trainer.devices`` as a count (``devices``: which GPUs a run
trains on does not change its numbers, how many does).
bench tags every run with it (``bench.key``); when the same config comes round again (the same
command re-run after a kill, a sweep that adds seeds to an earlier one), ``decide`` looks at the
runs already in the store with that identity:

- one of them FINISHED: skip, the earlier run counts;
- one of them still running (its process is alive, or it runs on another machine): skip, it
  counts once it ends;
- one of them ended unfinished (KILLED, FAILED, or left RUNNING by a dead process) and left a
  checkpoint: resume that MLflow run from its checkpoint;
- otherwise: a fresh run.

``rerun=true`` ignores what earlier sweeps did: only the runs of the current sweep itself (a
requeued job finding its own checkpoint) are reused.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

# Keys that do not change a run's numbers: where it records, its label, how progress is shown,
# whether data may be fetched, what the report does, how it was launched (``bench.launch``: how
# many runs at once, the GPU it was given), and the switch below.
IGNORED = (
    "run_name",
    "rerun",
    "launch",
    "tracking",
    "report",
    "until_decided",
    "data.download",
    "trainer.enable_progress_bar",
    "trainer.enable_model_summary",
    "trainer.enable_checkpointing",
    "trainer.checkpoint_seconds",
    # how a run is made, not what it is: a branch is the run trained straight, made cheaper
    "branch",
)

RUN, SKIP, RUNNING, RESUME = "run", "skip", "running", "resume"


def identity(config: Mapping[str, Any], digests: Mapping[str, str] | None = None) -> str:
    """A short hash of ``config`` (resolved, plain data) without the ``IGNORED`` keys, and of
    ``digests`` (field -> hash of the file it names, such as the starting weights): equal for
    two configs exactly when they would train the same run."""
    kept = _without(config, IGNORED)
    if isinstance(kept.get("trainer"), dict) and "devices" in kept["trainer"]:
        kept["trainer"]["devices"] = devices(kept["trainer"]["devices"])
    if digests:
        kept["__files__"] = dict(digests)
    text = json.dumps(kept, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def devices(value: Any) -> Any:
    """``trainer.devices`` as far as a run's numbers go: a list of device indices counts by its
    length (``[3]`` is one GPU, like ``1``), as its text too (``"[3]"``, an MLflow param);
    any other value as it is."""
    if isinstance(value, str) and value.startswith("[") and value.endswith("]"):
        inner = [p.strip() for p in value[1:-1].split(",") if p.strip()]
        return str(len(inner)) if all(p.isdigit() for p in inner) else value
    if isinstance(value, list | tuple) and all(isinstance(d, int) for d in value):
        return len(value)
    return value


def _without(config: Mapping[str, Any], dotted: Sequence[str], prefix: str = "") -> dict:
    out = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if name in dotted:
            continue
        out[key] = _without(value, dotted, f"{name}.") if isinstance(value, Mapping) else value
    return out


@dataclass(frozen=True)
class Decision:
    """What to do with a run: ``action`` is one of ``run`` (fresh), ``skip`` (it finished
    before), ``running`` (it runs elsewhere now) or ``resume``; ``run_id`` names the earlier
    run, ``checkpoint`` the file to resume from."""

    action: str
    run_id: str | None = None
    checkpoint: str | None = None
    why: str = ""
    sweeps: tuple[str, ...] = ()  # the sweeps the earlier run counts in already


@dataclass(frozen=True)
class Previous:
    """An earlier run with the same identity, as the store has it."""

    run_id: str
    status: str  # FINISHED, RUNNING, KILLED, FAILED
    start_time: float
    sweep: str = ""  # the parent run it was started under
    sweeps: tuple[str, ...] = ()  # every sweep it counts in (started under, or reused by)
    checkpoint: str | None = None


def decide(
    previous: Sequence[Previous],
    rerun: bool = False,
    sweep: str | None = None,
    exists: Callable[[str], bool] = lambda path: False,
) -> Decision:
    """What to do with a run whose identity the store has already seen in ``previous`` (stale
    runs already marked KILLED). ``rerun``: only runs of ``sweep`` count. ``exists`` tells
    whether a checkpoint file is there."""
    if rerun:
        previous = [p for p in previous if sweep and sweep in p.sweeps]
    latest = sorted(previous, key=lambda p: p.start_time, reverse=True)
    for p in latest:
        if p.status == "FINISHED":
            return Decision(
                SKIP, p.run_id, why=f"finished before as run {p.run_id}", sweeps=p.sweeps
            )
    for p in latest:
        if p.status == "RUNNING":
            return Decision(
                RUNNING, p.run_id, why=f"running now as run {p.run_id}", sweeps=p.sweeps
            )
    for p in latest:
        if p.checkpoint and exists(p.checkpoint):
            return Decision(
                RESUME,
                p.run_id,
                checkpoint=p.checkpoint,
                why=f"resumes run {p.run_id} ({p.status}) from {p.checkpoint}",
                sweeps=p.sweeps,
            )
    return Decision(RUN)
