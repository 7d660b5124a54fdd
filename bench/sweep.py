"""A sweep's life, and the checks made before any run.

``SweepCallback`` is a Hydra callback (``conf/train.yaml`` installs it). Before any job of a
multirun it composes every grid point and checks it (``bench.config``: values, arguments, the
data and weights on disk), creates the MLflow store, the experiment and the sweep's parent run
once (so parallel jobs never race on them) and writes them to ``<sweep dir>/sweep.json``; each
job (``bench.cli.task``) nests its run under that parent. At the end it counts what finished,
closes the parent run, writes the report if asked, and exits non-zero if any run failed.
A single run (no ``-m``) gets the same checks.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import hydra
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue

from bench import config as bench_config
from bench import launch, spec, tracking

log = logging.getLogger("bench")

SWEEP_FILE = "sweep.json"


@dataclass
class Sweep:
    """What the jobs of one sweep share; stored as ``<sweep dir>/sweep.json``."""

    tracking_uri: str
    experiment_id: str
    experiment: str
    parent_run_id: str
    n_runs: int
    # Each checked run's T (``bench.spec.RunSpec.steps``) by its identity: a job builds its
    # checked run from it instead of checking again.
    steps: dict[str, int | None] = field(default_factory=dict)

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / SWEEP_FILE).write_text(json.dumps(asdict(self), indent=2))

    @classmethod
    def load(cls, folder: Path) -> Sweep | None:
        path = folder / SWEEP_FILE
        return cls(**json.loads(path.read_text())) if path.exists() else None


def run_config(cfg: DictConfig) -> dict[str, Any]:
    """The resolved run config as plain data, without Hydra's own node; a value left ``???``
    raises ``MissingMandatoryValue`` naming its key."""
    return OmegaConf.to_container(
        OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"]),
        resolve=True,
        throw_on_missing=True,
    )


def resolve_paths(cfg: dict[str, Any], launch_dir: str | Path) -> dict[str, Any]:
    """Make ``data.root``, a ``model.weights`` file and ``branch.checkpoint`` absolute against
    the folder the command ran in (a run may work in a folder of its own). Changes ``cfg`` in
    place and returns it."""
    base = Path(launch_dir)
    data, model = cfg.get("data"), cfg.get("model")
    if isinstance(data, dict) and isinstance(data.get("root"), str):
        data["root"] = str((base / Path(data["root"]).expanduser()).resolve())
    branch = cfg.get("branch")
    if isinstance(branch, dict) and isinstance(branch.get("checkpoint"), str):
        branch["checkpoint"] = str((base / Path(branch["checkpoint"]).expanduser()).resolve())
    weights = model.get("weights") if isinstance(model, dict) else None
    if isinstance(weights, str) and weights not in ("none", "imagenet"):
        model["weights"] = str((base / Path(weights).expanduser()).resolve())
    return cfg


def abort(message: str) -> None:
    """Stop before any run starts. (Hydra turns a callback's exceptions into warnings; an exit
    goes through.)"""
    print(f"{Path(sys.argv[0]).name}: {message}", file=sys.stderr)
    raise SystemExit(2)


def sweep_name(jobs: list[list[str]], when: time.struct_time) -> str:
    """A sweep's parent-run name that tells sweeps apart in MLflow's runs table, when first
    (two sweeps of one grid differ there), then what the grid varies and how many values each
    axis takes: ``12-06 21:30 schedule×5 seed×3``. Pure."""
    values: dict[str, set[str]] = {}
    for job in jobs:
        for override in job:
            key, _, value = override.partition("=")
            values.setdefault(key.lstrip("+~"), set()).add(value)
    axes = [f"{key}×{len(v)}" for key, v in values.items() if len(v) > 1]
    grid = " ".join(axes) if axes else f"{len(jobs)} run{'s' * (len(jobs) != 1)}"
    return f"{time.strftime('%m-%d %H:%M', when)} {grid}"


def first_point(overrides: list[str]) -> list[str]:
    """The overrides of the grid's first point: every sweep (``a=1,2``) cut to its first value,
    enough to compose a config that has every key the grid's configs have."""
    return [
        f"{o.get_key_element()}={next(iter(o.sweep_string_iterator()))}"
        if o.is_sweep_override()
        else o.input_line
        for o in OverridesParser.create().parse_overrides(overrides)
    ]


def grid(config: DictConfig) -> list[list[str]]:
    """The override list of every job of a basic-sweeper multirun, in launch order."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper

    params = config.hydra.sweeper.get("params") or {}
    arguments = [f"{k}={v}" for k, v in params.items()]
    arguments += list(config.hydra.overrides.task)
    loader = GlobalHydra.instance().config_loader()  # glob() sweeps need it to list options
    overrides = OverridesParser.create(config_loader=loader).parse_overrides(arguments)
    return [job for batch in BasicSweeper.split_arguments(overrides, None) for job in batch]


# The T of each run this process checked, by identity: a run started here (``bench-train``
# without ``-m``, a sweep's jobs under the basic launcher) is not checked twice.
_checked: dict[str, int | None] = {}


def checked(config: dict[str, Any], sweep: Sweep | None) -> spec.RunSpec:
    """The checked run of a job's ``config``: as this process checked it, or built from what
    its sweep's check recorded (``Sweep.steps``); checked here only where neither did (a
    sweeper that chooses its points as it goes)."""
    from bench import run

    key = run.identity(config)
    if key in _checked:
        return spec.of(config, _checked[key])
    if sweep is not None and key in sweep.steps:
        return spec.of(config, sweep.steps[key])
    return bench_config.validate(config)


def check_all(
    configs: list[tuple[str, DictConfig]], launch_dir: str, launcher: str | None = None
) -> list[spec.RunSpec]:
    """Resolve and validate every job config (paths taken relative to ``launch_dir``), also
    against the ``hydra/launcher`` option that starts them (``bench.launch``); abort listing
    every problem. The data and weights are checked once the values are right. Returns the
    checked runs."""
    plains, found, steps = [], {}, []
    for label, cfg in configs:
        try:
            plain = resolve_paths(run_config(cfg), launch_dir)
            # The values first: a typo is answered before torch and Lightning are imported.
            problems = bench_config.problems(plain) + launch.problems(plain, launcher)
            if not problems and not found:
                problems = bench_config.argument_problems(plain)
        except MissingMandatoryValue as e:
            plain, problems = None, [f"{e.full_key}: missing; set it with {e.full_key}=VALUE"]
        except Exception as e:  # an interpolation that cannot resolve, say
            plain, problems = None, [str(e).splitlines()[0]]
        T = None
        if not problems and not found:
            T, problems = bench_config.resources(plain)
        for problem in problems:
            found.setdefault(problem, label)
        plains.append(plain)
        steps.append(T)
    for problem in launch.grid_problems(plains):
        found.setdefault(problem, "the grid")
    if found:
        lines = "\n".join(f"  - {p}   [{where}]" for p, where in found.items())
        abort(f"invalid configuration, nothing was run:\n{lines}")
    for warning in dict.fromkeys(w for plain in plains for w in bench_config.warnings(plain)):
        log.warning(warning)
    from bench import run

    runs = [spec.of(plain, T) for plain, T in zip(plains, steps, strict=True)]
    _checked.update((run.identity(plain), T) for plain, T in zip(plains, steps, strict=True))
    return runs


# The sweep this process started (set when its jobs are about to start), so that an interrupt
# arriving between two runs still closes its parent run; and the sweeps whose jobs run in
# scheduler jobs of their own (hydra/launcher=slurm), which a signal to this process never stops.
_active: list[Sweep] = []
_scheduled: list[Sweep] = []


def interrupted(signal_name: str) -> None:
    """After SIGINT or SIGTERM: close the sweep's parent run as KILLED (and the runs its jobs
    were running, unless a scheduler runs them), say how to resume."""
    for sweep in _active:
        if sweep not in _scheduled:
            tracking.kill_running(sweep.tracking_uri, sweep.experiment_id, sweep.parent_run_id)
        tracking.end_run(sweep.tracking_uri, sweep.parent_run_id, "KILLED")
    print(
        f"\n{Path(sys.argv[0]).name}: stopped by {signal_name}. Finished runs are kept in the "
        "store; run the same command again to go on: finished runs are skipped and an "
        "interrupted one resumes from its last epoch's checkpoint.",
        file=sys.stderr,
    )
    if _scheduled:
        print(
            "The SLURM jobs already submitted go on (scancel stops them: their runs are then "
            "marked KILLED, and resume when the command runs again).",
            file=sys.stderr,
        )


def _reuse_summary(sweep: Sweep, plains: list[dict[str, Any]]) -> str | None:
    """How many of the sweep's runs the store already has (finished, running, resumable)."""
    from bench import resume, run

    previous = tracking.previous_runs(sweep.tracking_uri, sweep.experiment_id)
    counts: dict[str, int] = {}
    for plain in plains:
        key = run.identity(plain)
        decision = resume.decide(
            previous.get(key, []), plain.get("rerun", False), sweep.parent_run_id, os.path.exists
        )
        counts[decision.action] = counts.get(decision.action, 0) + 1
    if not counts.keys() - {resume.RUN}:
        return None
    words = {
        resume.SKIP: "finished before (skipped)",
        resume.RUNNING: "running elsewhere now (skipped)",
        resume.RESUME: "resume from a checkpoint",
        resume.RUN: "to run",
    }
    parts = [f"{counts[a]} {w}" for a, w in words.items() if counts.get(a)]
    return f"Of the {len(plains)} runs, {', '.join(parts)}; rerun=true runs them all again."


def _claim(folder: Path) -> None:
    """Stop if another sweep, still running, records into this sweep folder."""
    earlier = Sweep.load(folder)
    if earlier is None:
        return
    try:
        run = tracking.client(earlier.tracking_uri).get_run(earlier.parent_run_id)
    except Exception:
        return  # its store or run is gone: nothing to protect
    owner = run.data.tags.get(tracking.OWNER_TAG, "")
    if run.info.status == "RUNNING" and tracking.alive(owner) is not False:
        abort(
            f"hydra.sweep.dir: {folder} belongs to a sweep that is still running (parent run "
            f"{earlier.parent_run_id}, {owner}); allowed: a folder of its own"
        )


def command_line() -> str:
    """The command as the user typed it (``bench`` adds ``--multirun`` itself)."""
    prog, args = Path(sys.argv[0]).name, sys.argv[1:]
    if prog == "bench" and "--multirun" in args:
        args.remove("--multirun")
    return " ".join([prog, *args])


def _summary(sweep: Sweep) -> tuple[int, int, list[str]]:
    """Finished runs, runs that another process is still running (reused by this sweep), and
    what failed."""
    runs = tracking.sweep_runs(sweep.tracking_uri, sweep.experiment_id, sweep.parent_run_id)
    finished = runs[runs["status"] == "FINISHED"]
    elsewhere = runs[(runs["status"] == "RUNNING") & runs["reused"]]
    failed = [
        f"{r.run_name} [{r.overrides}] {r.status}: {r.error or 'no error recorded'}"
        for r in runs[~runs.index.isin(finished.index.union(elsewhere.index))].itertuples()
    ]
    missing = sweep.n_runs - len(runs)
    if missing > 0:
        failed.append(f"{missing} run(s) that never reached MLflow (see the job logs)")
    return len(finished), len(elsewhere), failed


class SweepCallback(Callback):
    """Validates configs before anything runs, and owns a sweep's MLflow parent run."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        label = " ".join(config.hydra.overrides.task) or "defaults"
        try:
            check_all([(label, config)], config.hydra.runtime.cwd)
        except Exception as e:  # Hydra would only warn and run the job anyway
            abort(f"could not check the configuration, nothing was run: {type(e).__name__}: {e}")

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        sweeper = config.hydra.sweeper.get("_target_", "")
        if not sweeper.endswith("BasicSweeper"):
            return  # other sweepers choose their points as they go; each job checks its own
        try:
            self._start(config)
        except Exception as e:  # Hydra would only warn and run the jobs anyway
            abort(f"could not set up the sweep, nothing was run: {type(e).__name__}: {e}")

    def _start(self, config: DictConfig) -> None:
        jobs = grid(config)
        config_name = config.hydra.job.config_name
        composed = []
        for job in jobs:
            try:
                composed.append(
                    (" ".join(job), hydra.compose(config_name=config_name, overrides=job))
                )
            except Exception as e:  # an unknown group option: Hydra's message lists the options
                abort(f"cannot compose the run [{' '.join(job)}], nothing was run:\n{e}")
        launch_dir = config.hydra.runtime.cwd
        launcher = config.hydra.runtime.choices.get("hydra/launcher")
        runs = check_all(composed, launch_dir, launcher)
        plains = [r.plain() for r in runs]
        uris = {tracking.resolve_uri(p["tracking"]["uri"], cwd=launch_dir) for p in plains}
        experiments = {p["tracking"]["experiment"] for p in plains}
        if len(uris) > 1 or len(experiments) > 1:
            abort(
                "tracking.uri and tracking.experiment: a sweep records into one store and one "
                f"experiment; this grid has {sorted(uris)} and {sorted(experiments)}"
            )
        uri, experiment = uris.pop(), experiments.pop()
        if launcher == launch.SLURM and uri.startswith("sqlite:"):
            log.warning(
                "hydra/launcher=slurm with the SQLite store %s: the jobs of several nodes write "
                "into one file, which needs a filesystem with working locks; a tracking server "
                "(MLFLOW_TRACKING_URI=http://SERVER:5000) is safer",
                uri,
            )
        sweep_dir = Path(launch_dir) / config.hydra.sweep.dir
        _claim(sweep_dir)
        experiment_id = tracking.ensure_experiment(uri, experiment)
        stale = tracking.close_stale(uri, experiment_id)
        if stale:
            log.info("Marked KILLED, their processes gone: %s", ", ".join(stale))
        parent = tracking.start_sweep(
            uri,
            experiment_id,
            name=sweep_name(jobs, time.localtime()),
            params={"command": command_line(), "n_runs": len(jobs), "sweep_dir": str(sweep_dir)},
            grid=jobs,
        )
        from bench import run

        steps = {run.identity(p): r.steps for p, r in zip(plains, runs, strict=True)}
        sweep = Sweep(uri, experiment_id, experiment, parent, len(jobs), steps)
        sweep.save(sweep_dir)
        _active.append(sweep)
        if launcher == launch.SLURM:
            _scheduled.append(sweep)
        log.info(
            "Sweep of %d runs into MLflow experiment %r (parent run %s, store %s)",
            len(jobs),
            experiment,
            parent,
            uri,
        )
        reused = _reuse_summary(sweep, plains)
        if reused:
            log.info(reused)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        # Hydra turns a callback's exception into a warning and exits 0: a sweep whose end
        # failed (a full disk, a report that cannot be written) must not look done.
        try:
            self._end(config)
        except Exception as e:
            log.exception("the sweep's end failed")
            print(
                f"\n{Path(sys.argv[0]).name}: the sweep's runs ended, but its end failed: "
                f"{type(e).__name__}: {e}. The finished runs are in the store; once the cause is "
                "fixed, run the same command again (finished runs are skipped) or bench-report "
                "to write the report.",
                file=sys.stderr,
            )
            raise SystemExit(1) from e

    def _end(self, config: DictConfig) -> None:
        sweep = Sweep.load(Path(config.hydra.runtime.cwd) / config.hydra.sweep.dir)
        if sweep is None:
            return
        n_finished, n_elsewhere, failed = _summary(sweep)
        status = "FINISHED" if not failed else "FAILED"
        tracking.end_run(sweep.tracking_uri, sweep.parent_run_id, status)
        _active.clear()
        _scheduled.clear()
        view = None  # the sweep's saved view in MLflow's UI, once its report is made
        if config.report.after_sweep and n_finished:
            from bench import report

            launch_dir = Path(config.hydra.runtime.cwd)
            folder = (
                launch_dir / config.hydra.sweep.dir / "report"
                if config.report.dir is None
                else launch_dir / config.report.dir / sweep.experiment
            )
            made = report.make(
                sweep.tracking_uri,
                sweep.experiment,
                folder,
                [sweep.parent_run_id],
                report.options_from(OmegaConf.to_container(config.report, resolve=True)),
            )
            report.print_tables(made)
            view = made.view
        elsewhere = (
            f" {n_elsewhere} still running in another process (they count once they end)."
            if n_elsewhere
            else ""
        )
        print(f"\nSweep done: {n_finished} of {sweep.n_runs} runs finished.{elsewhere}")
        print(tracking.browse_hint(sweep.tracking_uri, sweep.experiment_id, view))
        if failed:
            print("Failed:\n" + "\n".join(f"  - {f}" for f in failed), file=sys.stderr)
            raise SystemExit(1)
