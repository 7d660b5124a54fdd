"""Several runs at once: how many jobs a launcher starts, and which GPU each run trains on.

The launchers are Hydra launcher configs (``conf/hydra/launcher/``):

- ``gpus``: Hydra's joblib launcher on one machine, ``visible GPUs x launch.jobs_per_gpu`` jobs
  at once (the resolver ``bench.gpu_jobs``); each run trains on one GPU of its own (``pinned``).
  joblib's worker processes are reused from job to job, so a job cannot choose its GPU through
  ``CUDA_VISIBLE_DEVICES`` once CUDA started in its worker: the run is given its device instead
  (Lightning's ``trainer.devices=[i]``, ``i`` the GPU's index among the visible ones). A run
  takes the first free one of ``n_gpus x jobs_per_gpu`` slots, from its job number on
  (round-robin), slot ``s`` on GPU ``s % n_gpus``; the slots are lock files in the sweep's
  folder, held while the run trains, so that when runs end out of turn (a shorter run, runs
  skipped as finished before) the next one still goes to a GPU with room.
- ``cpus``: the same launcher on the CPU, ``cores // trainer.num_threads`` jobs at once (the
  resolver ``bench.cpu_jobs``).
- ``slurm``: Hydra's submitit launcher, one SLURM job per run, with one GPU each (SLURM chooses
  it), requeued when preempted or out of time.

Which GPU a run trains on never changes its identity (``bench.resume.identity`` counts the
devices of ``trainer.devices``, not their indices); the GPU is recorded as the param
``launch.gpu`` (its id in ``CUDA_VISIBLE_DEVICES``).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from bench.rules import COUNT, integer

log = logging.getLogger("bench")

GPUS, CPUS, SLURM = "gpus", "cpus", "slurm"  # bench's launcher configs (hydra/launcher=NAME)
SLOTS_DIR = ".gpu-slots"  # in the sweep's folder: one lock file per slot, held while a run trains


def visible_gpus(env: Mapping[str, str] | None = None) -> list[str]:
    """The GPUs this process may use, by the ids ``CUDA_VISIBLE_DEVICES`` gives them (indices
    or UUIDs; CUDA reads the list up to its first invalid entry, and an empty or ``-1`` list
    hides every GPU); without it, ``0 .. n-1`` for the ``n`` GPUs torch counts (through NVML,
    without initialising CUDA)."""
    env = os.environ if env is None else env
    listed = env.get("CUDA_VISIBLE_DEVICES")
    if listed is None:
        import torch

        return [str(i) for i in range(torch.cuda.device_count())]
    ids = []
    for part in listed.split(","):
        part = part.strip()
        if not part or part.startswith("-"):
            break
        ids.append(part)
    return ids


def gpu_jobs(jobs_per_gpu: Any, n_gpus: int | None = None) -> int:
    """How many runs ``hydra/launcher=gpus`` starts at once: the visible GPUs (at least one: on
    a machine without, the runs train on the CPU, unpinned) x ``launch.jobs_per_gpu``."""
    if not COUNT[0](jobs_per_gpu):
        raise ValueError(f"launch.jobs_per_gpu: got {jobs_per_gpu!r}; allowed: {COUNT[1]}")
    n = len(visible_gpus()) if n_gpus is None else n_gpus
    return max(n, 1) * jobs_per_gpu


def cores() -> int:
    """The CPU cores this process may run on (its affinity: taskset, a container's cpuset)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def cpu_jobs(num_threads: Any, n_cores: int | None = None) -> int:
    """How many runs ``hydra/launcher=cpus`` starts at once: the cores // ``trainer.num_threads``
    (null counts as 1), at least one."""
    if num_threads is not None and not COUNT[0](num_threads):
        raise ValueError(f"trainer.num_threads: got {num_threads!r}; allowed: null or {COUNT[1]}")
    return max((cores() if n_cores is None else n_cores) // (num_threads or 1), 1)


# The launcher configs compute n_jobs with these; registered when bench's commands are imported,
# before Hydra composes the config.
OmegaConf.register_new_resolver("bench.gpu_jobs", gpu_jobs, replace=True)
OmegaConf.register_new_resolver("bench.cpu_jobs", cpu_jobs, replace=True)


def slot_order(job_num: int, n_slots: int) -> list[int]:
    """The slots a job tries, in order: its own (``job_num % n_slots``), then the next ones."""
    return [(job_num + i) % n_slots for i in range(n_slots)]


def gpu_for(job_num: int, visible: list[str], jobs_per_gpu: int = 1, busy=frozenset()) -> int:
    """The index (among ``visible``) of the GPU that job ``job_num`` trains on: the GPU of the
    first slot not in ``busy``, from the job's own slot on. With nothing busy, round-robin:
    job ``j`` on GPU ``j % len(visible)``."""
    order = slot_order(job_num, len(visible) * jobs_per_gpu)
    free = [s for s in order if s not in busy] or order
    return free[0] % len(visible)


def trains_on_cuda(config: Mapping[str, Any]) -> bool:
    """Whether the run will train on a CUDA GPU (``trainer.accelerator`` gpu or cuda, or auto
    on a machine that has one)."""
    accelerator = config["trainer"].get("accelerator", "auto")
    if accelerator in ("gpu", "cuda"):
        return True
    if accelerator != "auto":
        return False
    import torch

    return torch.cuda.is_available()


def problems(config: Mapping[str, Any], launcher: str | None) -> list[str]:
    """What a run config cannot do under ``launcher`` (the ``hydra/launcher`` option)."""
    devices = config.get("trainer", {}).get("devices", 1)
    if launcher == GPUS and not (integer(devices) and devices == 1):
        return [
            f"trainer.devices: got {devices!r} with hydra/launcher=gpus; allowed: 1 (the "
            "launcher gives every run one GPU of its own; for a run on several GPUs, leave "
            "out hydra/launcher=gpus)"
        ]
    return []


def grid_problems(configs: list[Mapping[str, Any] | None]) -> list[str]:
    """``launch`` keys whose value differs across a grid: the launcher starts all its jobs with
    one value."""
    nodes = [c.get("launch") or {} for c in configs if c is not None]
    found = []
    for key in dict.fromkeys(k for node in nodes for k in node):
        values = list(dict.fromkeys(repr(node.get(key)) for node in nodes))
        if len(values) > 1:
            found.append(
                f"launch.{key}: got {', '.join(values)} across the grid; allowed: one value "
                "per sweep (it sets how the launcher starts the runs, not what they train)"
            )
    return found


@contextlib.contextmanager
def pinned(
    config: dict[str, Any], launcher: str | None, job_num: int, folder: Path, label: str = ""
) -> Iterator[str | None]:
    """Under ``hydra/launcher=gpus``, with the run on CUDA: the run's GPU, for as long as it
    trains. Sets ``trainer.devices=[i]`` and ``launch.gpu`` in ``config`` (plain data, changed in
    place) and yields the GPU's id in ``CUDA_VISIBLE_DEVICES``. Otherwise changes nothing and
    yields None."""
    visible = visible_gpus() if launcher == GPUS else []
    if not visible or not trains_on_cuda(config):
        yield None
        return
    from filelock import FileLock, Timeout

    per_gpu = config.get("launch", {}).get("jobs_per_gpu", 1)
    slots = Path(folder) / SLOTS_DIR
    slots.mkdir(parents=True, exist_ok=True)
    busy: set[int] = set()
    lock = None
    for slot in slot_order(job_num, len(visible) * per_gpu):
        candidate = FileLock(slots / f"{slot}.lock", timeout=0)
        try:
            candidate.acquire()
        except Timeout:
            busy.add(slot)
            continue
        lock = candidate
        break
    index = gpu_for(job_num, visible, per_gpu, busy)
    config["trainer"]["devices"] = [index]
    config.setdefault("launch", {})["gpu"] = visible[index]
    log.info("%s: on GPU %s (cuda:%d of %s)", label, visible[index], index, ",".join(visible))
    try:
        yield visible[index]
    finally:
        if lock is not None:
            lock.release()


def own_job() -> bool:
    """Whether this process is a scheduler's job of its own (submitit's, on SLURM), apart from
    the command that started the sweep: its end, a preemption say, does not stop the sweep."""
    return bool(os.environ.get("SUBMITIT_EXECUTOR"))


# The Hydra plugin each launcher config builds on, and the extra that installs it.
PLUGINS = {
    GPUS: ("hydra_plugins.hydra_joblib_launcher", "gpus"),
    CPUS: ("hydra_plugins.hydra_joblib_launcher", "cpus"),
    SLURM: ("hydra_plugins.hydra_submitit_launcher", "slurm"),
}


def missing_plugin(overrides: list[str], find=None) -> str | None:
    """If the command line picks one of bench's launchers whose Hydra plugin is not installed,
    how to install it (Hydra's own message names only a config it cannot find)."""
    import importlib.util

    find = importlib.util.find_spec if find is None else find
    for override in overrides:
        key, _, value = override.partition("=")
        if key.lstrip("+~") != "hydra/launcher" or value not in PLUGINS:
            continue
        module, extra = PLUGINS[value]
        try:
            found = find(module) is not None
        except ModuleNotFoundError:
            found = False
        if not found:
            package = module.removeprefix("hydra_plugins.").replace("_", "-")
            return (
                f"hydra/launcher: got {value}, which needs Hydra's {package} plugin; install it "
                f"with pip install 'bench[{extra}]' (or pip install {package})"
            )
    return None
