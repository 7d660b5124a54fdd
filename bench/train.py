"""The Hydra applications ``bench-train`` and ``bench``, and the callback that runs a sweep.

- ``bench-train``: one run (or a grid with ``-m``) from ``conf/train.yaml``.
- ``bench``: the same application on ``conf/sweep.yaml``, always a multirun, report at the end.

A sweep's life (``SweepCallback``): before any job, every grid point is composed and checked, the
MLflow store, the experiment and the sweep's parent run are created once (so parallel jobs never
race on them) and written to ``<sweep dir>/sweep.json``; each job nests its run under that parent
and, if it raises, records the failure and lets the others go on; at the end the callback counts
what finished, closes the parent run, writes the report if asked, and exits non-zero if any run
failed.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import hydra
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from bench import config as bench_config
from bench import tracking

log = logging.getLogger("bench")

_PACKAGED = Path(__file__).parent / "conf"  # inside an installed wheel
CONFIG_DIR = _PACKAGED if _PACKAGED.is_dir() else Path(__file__).parent.parent / "conf"
SWEEP_FILE = "sweep.json"


@dataclass
class Sweep:
    """What the jobs of one sweep share; stored as ``<sweep dir>/sweep.json``."""

    tracking_uri: str
    experiment_id: str
    experiment: str
    parent_run_id: str
    n_runs: int

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / SWEEP_FILE).write_text(json.dumps(asdict(self), indent=2))

    @classmethod
    def load(cls, folder: Path) -> Sweep | None:
        path = folder / SWEEP_FILE
        return cls(**json.loads(path.read_text())) if path.exists() else None


def run_config(cfg: DictConfig) -> dict[str, Any]:
    """The resolved run config as plain data, without Hydra's own node."""
    return OmegaConf.to_container(
        OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"]), resolve=True
    )


def train(
    cfg: DictConfig,
    sweep: Sweep | None = None,
    label: str = "",
    overrides: list[str] | None = None,
    launch_dir: str | os.PathLike | None = None,
) -> dict[str, float]:
    """One training run, recorded in MLflow: inside a ``sweep``, in its store and nested under
    its parent run; else in the store that ``tracking.uri`` names (relative to ``launch_dir``).
    The run is tagged with the command-line ``overrides`` that made it. Returns the final
    metrics."""
    import pytorch_lightning as pl
    from hydra.utils import instantiate

    from bench import lightning, schedules

    plain = run_config(cfg)
    bench_config.validate(plain)
    lightning.quiet_lightning()
    pl.seed_everything(cfg.seed, workers=True, verbose=False)

    if sweep is not None:
        uri, experiment_id = sweep.tracking_uri, sweep.experiment_id
    else:
        uri = tracking.resolve_uri(cfg.tracking.uri, cwd=launch_dir)
        experiment_id = tracking.ensure_experiment(uri, cfg.tracking.experiment)
    recorder = tracking.RunRecorder(
        uri,
        experiment_id,
        run_name=cfg.run_name,
        tags={
            "schedule": cfg.schedule.name,
            "seed": str(cfg.seed),
            tracking.OVERRIDES_TAG: " ".join(overrides or []),
        },
        parent_run_id=sweep.parent_run_id if sweep else None,
    )
    label = label or cfg.run_name
    log.info("%s: MLflow run %s in %s", label, recorder.run_id, uri)
    try:
        recorder.log_params(tracking.flatten(plain))
        recorder.log_text(OmegaConf.to_yaml(plain), "config.yaml")
        knobs = {k: v for k, v in plain["schedule"].items() if k != "name"}
        schedule = schedules.make(cfg.schedule.name, base=cfg.optimizer.lr, **knobs)
        module = lightning.Classifier(instantiate(cfg.model), instantiate(cfg.optimizer), schedule)
        datamodule = instantiate(cfg.data)
        trainer_kw = dict(plain["trainer"])
        show_bar = trainer_kw.pop("enable_progress_bar", True)
        progress = lightning.progress_callbacks(label, show_bar)
        trainer = pl.Trainer(
            **trainer_kw,
            logger=False,
            enable_progress_bar=any(isinstance(c, lightning.RunProgressBar) for c in progress),
            callbacks=[lightning.MlflowRecorder(recorder), *progress],
        )
        trainer.fit(module, datamodule=datamodule)
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
        trainer.test(module, datamodule=datamodule, verbose=False)
        metrics |= {k: float(v) for k, v in trainer.callback_metrics.items()}
        recorder.finish("FINISHED")
    except (KeyboardInterrupt, SystemExit):  # Lightning turns Ctrl-C into SystemExit
        recorder.finish("KILLED", error="interrupted")
        raise
    except BaseException as e:
        recorder.finish("FAILED", error=f"{type(e).__name__}: {e}", details=traceback.format_exc())
        raise
    log.info(
        "%s: val_acc=%.4f test_acc=%.4f",
        label,
        metrics.get("val_acc", float("nan")),
        metrics.get("test_acc", float("nan")),
    )
    return metrics


def task(cfg: DictConfig) -> dict[str, float] | None:
    """The Hydra task: one run. Inside a sweep a failing run is recorded, not raised."""
    hc = HydraConfig.get()
    launch_dir = Path(hc.runtime.cwd)  # where the command ran, even if the job changed folder
    sweep = Sweep.load(launch_dir / hc.sweep.dir) if hc.mode == RunMode.MULTIRUN else None
    overrides = list(hc.overrides.task)
    if sweep is None:
        return train(cfg, overrides=overrides, launch_dir=launch_dir)
    label = f"[{hc.job.num + 1}/{sweep.n_runs}] {cfg.run_name}"
    try:
        return train(cfg, sweep=sweep, label=label, overrides=overrides)
    except Exception:
        log.exception("%s failed; the sweep goes on", label)
        return None
    except BaseException:  # interrupted: the sweep stops here
        tracking.end_run(sweep.tracking_uri, sweep.parent_run_id, "KILLED")
        print(f"\n{label} interrupted: the run and its sweep are marked KILLED.", file=sys.stderr)
        raise


# ---------------------------------------------------------------------------------------------
# The sweep


def _abort(message: str) -> None:
    """Stop before any run starts. (Hydra turns a callback's exceptions into warnings; an exit
    goes through.)"""
    print(f"{Path(sys.argv[0]).name}: {message}", file=sys.stderr)
    raise SystemExit(2)


def grid(config: DictConfig) -> list[list[str]]:
    """The override list of every job of a basic-sweeper multirun, in launch order."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper

    params = config.hydra.sweeper.get("params") or {}
    arguments = [f"{k}={v}" for k, v in params.items()]
    arguments += list(config.hydra.overrides.task)
    loader = GlobalHydra.instance().config_loader()  # glob() sweeps need it to list options
    overrides = OverridesParser.create(config_loader=loader).parse_overrides(arguments)
    return [job for batch in BasicSweeper.split_arguments(overrides, None) for job in batch]


def _check_all(configs: list[tuple[str, DictConfig]]) -> list[dict[str, Any]]:
    """Resolve and validate every job config; abort listing every problem."""
    plains, found = [], {}
    for label, cfg in configs:
        try:
            plain = run_config(cfg)
            problems = bench_config.problems(plain) + bench_config.argument_problems(plain)
        except Exception as e:  # an interpolation that cannot resolve, say
            plain, problems = None, [str(e).splitlines()[0]]
        for problem in problems:
            found.setdefault(problem, label)
        plains.append(plain)
    if found:
        lines = "\n".join(f"  - {p}   [{where}]" for p, where in found.items())
        _abort(f"invalid configuration, nothing was run:\n{lines}")
    return plains


def command_line() -> str:
    """The command as the user typed it (``bench`` adds ``--multirun`` itself)."""
    prog, args = Path(sys.argv[0]).name, sys.argv[1:]
    if prog == "bench" and "--multirun" in args:
        args.remove("--multirun")
    return " ".join([prog, *args])


def _summary(sweep: Sweep) -> tuple[int, list[str]]:
    runs = tracking.sweep_runs(sweep.tracking_uri, sweep.experiment_id, sweep.parent_run_id)
    finished = runs[runs["status"] == "FINISHED"]
    failed = [
        f"{r.run_name} [{r.overrides}] {r.status}: {r.error or 'no error recorded'}"
        for r in runs[runs["status"] != "FINISHED"].itertuples()
    ]
    missing = sweep.n_runs - len(runs)
    if missing > 0:
        failed.append(f"{missing} run(s) that never reached MLflow (see the job logs)")
    return len(finished), failed


class SweepCallback(Callback):
    """Validates configs before anything runs, and owns a sweep's MLflow parent run."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        _check_all([(" ".join(config.hydra.overrides.task) or "defaults", config)])

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        sweeper = config.hydra.sweeper.get("_target_", "")
        if not sweeper.endswith("BasicSweeper"):
            return  # other sweepers choose their points as they go; each job checks its own
        try:
            self._start(config)
        except Exception as e:  # Hydra would only warn and run the jobs anyway
            _abort(f"could not set up the sweep, nothing was run: {type(e).__name__}: {e}")

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
                _abort(f"cannot compose the run [{' '.join(job)}], nothing was run:\n{e}")
        plains = _check_all(composed)

        launch_dir = config.hydra.runtime.cwd
        uris = {tracking.resolve_uri(p["tracking"]["uri"], cwd=launch_dir) for p in plains}
        experiments = {p["tracking"]["experiment"] for p in plains}
        if len(uris) > 1 or len(experiments) > 1:
            _abort(
                "tracking.uri and tracking.experiment: a sweep records into one store and one "
                f"experiment; this grid has {sorted(uris)} and {sorted(experiments)}"
            )
        uri, experiment = uris.pop(), experiments.pop()
        experiment_id = tracking.ensure_experiment(uri, experiment)
        sweep_dir = Path(launch_dir) / config.hydra.sweep.dir
        parent = tracking.start_sweep(
            uri,
            experiment_id,
            name=f"sweep-{time.strftime('%Y%m%d-%H%M%S')}",
            params={"command": command_line(), "n_runs": len(jobs), "sweep_dir": str(sweep_dir)},
            grid=jobs,
        )
        Sweep(uri, experiment_id, experiment, parent, len(jobs)).save(sweep_dir)
        log.info(
            "Sweep of %d runs into MLflow experiment %r (parent run %s, store %s)",
            len(jobs),
            experiment,
            parent,
            uri,
        )

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep = Sweep.load(Path(config.hydra.runtime.cwd) / config.hydra.sweep.dir)
        if sweep is None:
            return
        n_finished, failed = _summary(sweep)
        status = "FINISHED" if not failed else "FAILED"
        tracking.end_run(sweep.tracking_uri, sweep.parent_run_id, status)
        if config.report.after_sweep and n_finished:
            from bench import report

            results = Path(config.hydra.runtime.cwd) / config.report.dir
            made = report.make(
                sweep.tracking_uri, sweep.experiment, results, sweep=sweep.parent_run_id
            )
            report.print_tables(made)
        print(f"\nSweep done: {n_finished} of {sweep.n_runs} runs finished.")
        if failed:
            print("Failed:\n" + "\n".join(f"  - {f}" for f in failed), file=sys.stderr)
            raise SystemExit(1)


def unknown_key_message(config_name: str, overrides: list[str]) -> str | None:
    """If an override names a key the config does not have, a message listing the keys there are
    (Hydra's own error names the key but not the alternatives); else None."""
    from hydra import compose, initialize_config_dir
    from hydra.errors import ConfigCompositionException

    parsed = OverridesParser.create().parse_overrides(overrides)
    # One grid point is enough to know which keys exist: the first value of every sweep.
    point = [
        f"{o.get_key_element()}={next(iter(o.sweep_string_iterator()))}"
        if o.is_sweep_override()
        else o.input_line
        for o in parsed
    ]
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        try:
            compose(config_name=config_name, overrides=point)
            return None
        except ConfigCompositionException as e:
            if not str(e).startswith("Could not override '"):
                return None  # Hydra's message already lists the options (an unknown group option)
            key = str(e).split("'")[1]
            rest = [p for p in point if p.split("=")[0].lstrip("+~") != key]
            try:
                base = compose(config_name=config_name, overrides=rest)
            except ConfigCompositionException:
                return None
    parent, _, leaf = key.rpartition(".")
    node = OmegaConf.select(base, parent) if parent else base
    if not isinstance(node, DictConfig):
        return None
    where = f"under '{parent}'" if parent else "at the top level"
    keys = ", ".join(str(k) for k in node if k != "hydra")
    return (
        f"unknown key '{key}': the config has no '{leaf}' {where}; the keys there are: {keys}. "
        f"(To add a key that the config does not have, write +{key}=VALUE.)"
    )


def _preflight(config_name: str) -> None:
    from hydra._internal.utils import get_args_parser

    args, _ = get_args_parser().parse_known_args(sys.argv[1:])
    if args.help or args.hydra_help or args.info or args.shell_completion or args.cfg:
        return
    try:
        message = unknown_key_message(args.config_name or config_name, args.overrides)
    except Exception:
        return  # anything else is Hydra's to report, with its own message
    if message:
        _abort(message)


_hydra = dict(version_base="1.3", config_path=str(CONFIG_DIR))
_train_app = hydra.main(config_name="train", **_hydra)(task)
_sweep_app = hydra.main(config_name="sweep", **_hydra)(task)

_NO_RUN_FLAGS = {
    "-h",
    "--help",
    "--hydra-help",
    "-c",
    "--cfg",
    "-i",
    "--info",
    "--shell-completion",
    "-sc",
}


def main() -> None:
    """``bench-train``: one run, or a grid with ``-m``."""
    _preflight("train")
    _train_app()


def sweep_main() -> None:
    """``bench``: the default sweep, always as a Hydra multirun."""
    args = sys.argv[1:]
    if not any(a in ("-m", "--multirun") or a in _NO_RUN_FLAGS for a in args):
        sys.argv.insert(1, "--multirun")
    _preflight("sweep")
    _sweep_app()
