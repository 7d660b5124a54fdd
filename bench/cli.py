"""The commands ``bench`` and ``bench-train``: Hydra applications, and the Hydra task that runs
one job.

- ``bench-train``: one run (or a grid with ``-m``) from ``conf/train.yaml``;
- ``bench``: the same application on ``conf/sweep.yaml``, always a multirun, report at the end;
- ``bench-lr-find``: the LR range test (``bench.lr_find``) on ``conf/lr_find.yaml``.

The task turns Hydra's config into plain data, says where the run records (the sweep's store and
parent run, or its own store) and hands it to ``bench.run.train``. Before Hydra starts, an
override naming a key the config does not have is answered with the keys that exist.
"""

from __future__ import annotations

import logging
import signal
import sys
import time
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from bench import budget, launch, resume, run, sequential, tracking  # launch: resolvers
from bench import config as bench_config
from bench.rules import did_you_mean
from bench.sweep import (
    Sweep,
    abort,
    checked,
    first_point,
    interrupted,
    resolve_paths,
    run_config,
)

log = logging.getLogger("bench")

CONFIG_DIR = bench_config.CONFIG_DIR  # conf/: inside an installed wheel, or the repository's


def task(cfg: DictConfig) -> dict[str, float] | None:
    """The Hydra task: one run, unless the store has it already (``bench.resume``) or another
    process is starting it (``tracking.claimed``). Inside a sweep a failing run is recorded,
    not raised."""
    hc = HydraConfig.get()
    launch_dir = Path(hc.runtime.cwd)  # where the command ran, even if the job changed folder
    config = resolve_paths(run_config(cfg), launch_dir)
    where = {"overrides": list(hc.overrides.task), "output_dir": hc.runtime.output_dir}
    sweep = Sweep.load(launch_dir / hc.sweep.dir) if hc.mode == RunMode.MULTIRUN else None
    if sweep is None:
        uri = tracking.resolve_uri(config["tracking"]["uri"], cwd=launch_dir)
        try:
            experiment_id = tracking.ensure_experiment(uri, config["tracking"]["experiment"])
        except tracking.StoreError as e:
            abort(f"nothing was run: {e}")
        tracking.close_stale(uri, experiment_id)
        with tracking.claimed(uri, run.identity(config), experiment_id) as mine:
            if not mine:
                log.info("%s: started by another process just now; skipped", config["run_name"])
                return None
            decision = _decide(config, uri, experiment_id, None, config["run_name"])
            if decision.action != resume.RESUME and decision.action != resume.RUN:
                return None
            return run.train(
                checked(config, None),
                tracking_uri=uri,
                experiment_id=experiment_id,
                resume_from=decision,
                **where,
            )
    label = f"[{hc.job.num + 1}/{sweep.n_runs}] {config['run_name']}"
    with tracking.claimed(sweep.tracking_uri, run.identity(config), sweep.experiment_id) as mine:
        if not mine:  # the same sweep started twice: the other one trains this run
            _await_other(config, sweep, label)
            return None
        return _sweep_run(config, sweep, label, hc, launch_dir, where)


def _sweep_run(config: dict, sweep: Sweep, label: str, hc, launch_dir: Path, where: dict):
    decision = _decide(config, sweep.tracking_uri, sweep.experiment_id, sweep.parent_run_id, label)
    if decision.run_id and sweep.parent_run_id not in decision.sweeps:
        tracking.link(sweep.tracking_uri, decision.run_id, sweep.parent_run_id)
    if decision.action != resume.RESUME and decision.action != resume.RUN:
        return None
    launcher = hc.runtime.choices.get("hydra/launcher")
    try:
        with launch.pinned(config, launcher, hc.job.num, launch_dir / hc.sweep.dir, label):
            return run.train(
                checked(config, sweep),
                tracking_uri=sweep.tracking_uri,
                experiment_id=sweep.experiment_id,
                parent_run_id=sweep.parent_run_id,
                label=label,
                resume_from=decision,
                **where,
            )
    except Exception:
        log.exception("%s failed; the sweep goes on", label)
        return None
    except BaseException:  # interrupted
        if launch.own_job():  # a SLURM job stopped (preempted, requeued): the sweep goes on
            print(
                f"\n{label} stopped: the run is marked KILLED; it resumes from its last epoch's "
                "checkpoint when the job is requeued or the command runs again.",
                file=sys.stderr,
            )
            raise
        tracking.end_run(sweep.tracking_uri, sweep.parent_run_id, "KILLED")
        print(f"\n{label} interrupted: the run and its sweep are marked KILLED.", file=sys.stderr)
        raise


AWAIT_SECONDS = 60  # how long to wait for the process that claimed a run to record it


def _await_other(config: dict, sweep: Sweep, label: str) -> None:
    """Another process claimed this run: wait until it has recorded the run, then count it in
    this sweep too (as running elsewhere), without training it."""
    key = run.identity(config)
    deadline = time.monotonic() + AWAIT_SECONDS
    while time.monotonic() < deadline:
        previous = tracking.previous_runs(sweep.tracking_uri, sweep.experiment_id, key)
        if previous.get(key):
            break
        time.sleep(0.5)
    decision = _decide(config, sweep.tracking_uri, sweep.experiment_id, sweep.parent_run_id, label)
    if decision.run_id and sweep.parent_run_id not in decision.sweeps:
        tracking.link(sweep.tracking_uri, decision.run_id, sweep.parent_run_id)
    log.info("%s: claimed by another process running the same grid; not trained here", label)


def _decide(
    config: dict, uri: str, experiment_id: str, sweep: str | None, label: str
) -> resume.Decision:
    """What to do with this run given the runs of the same identity in the store; says so."""
    key = run.identity(config)
    previous = tracking.previous_runs(uri, experiment_id, key).get(key, [])
    checkpoints = config["trainer"].get("enable_checkpointing", True)
    usable = run.checkpoint_usable if checkpoints else lambda path: False
    decision = resume.decide(previous, config.get("rerun", False), sweep, exists=usable)
    if decision.action in (resume.SKIP, resume.RUNNING):
        log.info("%s: %s; skipped (rerun=true runs it again)", label, decision.why)
    elif decision.action == resume.RESUME:
        log.info("%s: %s", label, decision.why)
    return decision


def lr_find_task(cfg: DictConfig) -> None:
    """The Hydra task of ``bench-lr-find``: one LR range test."""
    from bench import lr_find

    hc = HydraConfig.get()
    launch_dir = Path(hc.runtime.cwd)
    config = resolve_paths(run_config(cfg), launch_dir)
    uri = tracking.resolve_uri(config["tracking"]["uri"], cwd=launch_dir)
    experiment_id = tracking.ensure_experiment(uri, config["tracking"]["experiment"])
    found = lr_find.run(
        config,
        tracking_uri=uri,
        experiment_id=experiment_id,
        output_dir=hc.runtime.output_dir,
        overrides=list(hc.overrides.task),
    )
    shown = found.assign(suggested_lr=found["suggested_lr"].map("{:.3g}".format))
    print("\nSuggested base LR (optimizer.lr) per schedule:")
    print(shown.to_markdown(index=False, tablefmt="simple", disable_numparse=True))
    print(f"\nCurve, figure and suggestions in {hc.runtime.output_dir}")


def unknown_key_message(config_name: str, overrides: list[str]) -> str | None:
    """If an override names a key the config does not have, a message listing the keys there are
    (Hydra's own error names the key but not the alternatives); else None."""
    from hydra import compose, initialize_config_dir
    from hydra.errors import ConfigCompositionException

    point = first_point(overrides)  # one grid point is enough to know which keys exist
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
    keys = [str(k) for k in node if k != "hydra"]
    return (
        f"unknown key '{key}': the config has no '{leaf}' {where};"
        f"{did_you_mean(leaf, keys)} the keys there are: {', '.join(keys)}. "
        f"(To add a key that the config does not have, write +{key}=VALUE.)"
    )


def unknown_option_message(overrides: list[str]) -> str | None:
    """If an override picks a config-group option that ``conf/`` does not have (``schedule=cosin``,
    a grid's value included), a message with the nearest option and all of them; else None.
    (Options from a search path of the user's are left to Hydra.)"""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import ValueType

    if any("searchpath" in o for o in overrides):
        return None
    found = []
    for override in OverridesParser.create().parse_overrides(overrides):
        group = override.get_key_element().lstrip("+~")
        folder = Path(CONFIG_DIR) / group
        plugin = group.startswith("hydra/")  # Hydra's plugins bring options of their own
        if plugin or override.package or not folder.is_dir() or override.is_delete():
            continue
        options = sorted(p.stem for p in folder.glob("*.yaml"))
        if override.is_sweep_override():
            glob = override.value_type == ValueType.GLOB_CHOICE_SWEEP
            values = [] if glob else list(override.sweep_string_iterator())
        else:
            values = [override.value()] if isinstance(override.value(), str) else []
        found += [
            f"{group}={v}: there is no option '{v}' in {group};"
            f"{did_you_mean(v, options)} the options are: {', '.join(options)}"
            for v in values
            if v not in options and v != "null"  # null: no option (an optional group)
        ]
    return "\n".join(found) or None


def _preflight(config_name: str) -> None:
    from hydra._internal.utils import get_args_parser

    args, _ = get_args_parser().parse_known_args(sys.argv[1:])
    missing = launch.missing_plugin(args.overrides)
    if missing:
        abort(missing)
    if args.help or args.hydra_help or args.info or args.shell_completion or args.cfg:
        return
    try:
        message = unknown_option_message(args.overrides) or unknown_key_message(
            args.config_name or config_name, args.overrides
        )
    except Exception:
        return  # anything else is Hydra's to report, with its own message
    if message:
        abort(message)


_hydra = dict(version_base="1.3", config_path=str(CONFIG_DIR))
_train_app = hydra.main(config_name="train", **_hydra)(task)
_sweep_app = hydra.main(config_name="sweep", **_hydra)(task)
_lr_find_app = hydra.main(config_name="lr_find", **_hydra)(lr_find_task)

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


# Ctrl-C (SIGINT) and SIGTERM (``kill``, a scheduler's stop) end a command the same way: the
# run in progress is marked KILLED (its last epoch's checkpoint kept), so is the sweep, and the
# command exits with 128 + the signal's number after saying how to resume.
_received: list[int] = []


def _on_signal(signum, frame) -> None:
    _received.append(signum)
    raise KeyboardInterrupt(signal.Signals(signum).name)


def _guarded(app) -> None:
    for signum in (signal.SIGINT, signal.SIGTERM):
        if signal.getsignal(signum) is not signal.SIG_IGN:
            signal.signal(signum, _on_signal)
    try:
        app()
    except (KeyboardInterrupt, SystemExit) as e:
        if not _received:
            raise
        interrupted(signal.Signals(_received[0]).name)
        raise SystemExit(128 + _received[0]) from e


def importable_here() -> None:
    """Let ``_target_`` name a module in the folder the command runs in (``my_net.Net``), as
    ``python -m`` would: that folder goes on the import path, after the installed packages, of
    this process and of the processes it starts (a launcher's workers, a scheduler's jobs)."""
    import os

    here = os.getcwd()
    if here not in sys.path and "" not in sys.path:
        sys.path.append(here)
    paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    if here not in paths:
        os.environ["PYTHONPATH"] = os.pathsep.join([*paths, here])


def main() -> None:
    """``bench-train``: one run, or a grid with ``-m``."""
    tracking.exit_quickly()
    importable_here()
    tracking.send_pending()
    _preflight("train")
    _guarded(_train_app)


def sweep_main() -> None:
    """``bench``: the default sweep, always as a Hydra multirun."""
    tracking.exit_quickly()
    importable_here()
    tracking.send_pending()
    args = sys.argv[1:]
    if not any(a in ("-m", "--multirun") or a in _NO_RUN_FLAGS for a in args):
        sys.argv.insert(1, "--multirun")
    _preflight("sweep")
    if sequential.requested(sys.argv[1:]):
        sys.exit(sequential.main(sys.argv[1:]))
    if budget.requested(sys.argv[1:]):
        sys.exit(budget.main(sys.argv[1:]))
    _guarded(_sweep_app)


def lr_find_main() -> None:
    """``bench-lr-find``: the LR range test."""
    tracking.exit_quickly()
    importable_here()
    tracking.send_pending()
    _preflight("lr_find")
    _guarded(_lr_find_app)
