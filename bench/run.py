"""One training run, recorded in MLflow. Takes the resolved config as plain data; knows nothing
of Hydra's types or of sweeps (the shells in ``bench.cli`` and ``bench.sweep`` do).

The run: seed -> MLflow run (params, tags, ``config.yaml``) -> data -> model (class count, input
channels and image size from the data; starting weights) -> Lightning fit and test -> final
weights saved as ``weights.pt`` (locally and as an artifact) -> with warm restarts, the snapshot
ensemble evaluated (``bench.ensemble``) -> run marked FINISHED. Any failure
marks the run FAILED (Ctrl-C: KILLED) with its error, then propagates.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import traceback
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from bench import devices, resume, spec, tracking

log = logging.getLogger("bench")

WEIGHTS_FILE = "weights.pt"
BRANCH_DIR = "branches"  # in the run's folder: checkpoints kept at trainer.keep_epochs
CHECKPOINT_DIR = "checkpoints"  # in the run's folder, while it runs
SPLITS = ("val", "test")
SETTLED = ("precision", "channels_last", "deterministic")  # `auto` settled per device: tags


def data_params(datamodule) -> dict[str, Any]:
    """What the data turned out to be: class count, input channels and image size (where the
    data says them), split sizes (where it names its splits)."""
    from bench.data import contract

    shape = contract.shape_of(datamodule)._asdict()
    return {k: v for k, v in shape.items() if v is not None} | contract.split_sizes(datamodule)


def build(run: spec.RunSpec):
    """The datamodule (set up) and the Lightning module of a checked run: the network sized by
    the data, the optimizer, the schedule bound to its knobs and base LR.
    ``trainer.compile`` (true, or a backend's name) compiles the network in place with
    ``torch.compile``; the optimizer step stays outside it, so a schedule that changes the LR
    at every step never makes it compile again."""
    from hydra.utils import instantiate

    from bench import lightning, models
    from bench.data import contract

    datamodule = instantiate(dict(run.data))
    datamodule.prepare_data()
    datamodule.setup("fit")
    module = lightning.Classifier(
        models.build(dict(run.model), contract.shape_of(datamodule)),
        instantiate(dict(run.optimizer)),
        run.schedule.lr(run.optimizer["lr"]),
        steps=run.steps,
        **run.finetune,
        **run.own["model"],
        **run.own["optimizer"],
        channels_last=run.own["trainer"].get("channels_last", False) is True,
    )
    backend = run.own["trainer"].get("compile", False)
    if backend:
        module.net.compile(backend="inductor" if backend is True else backend)
    return datamodule, module


def provenance(run: spec.RunSpec) -> dict[str, str]:
    """Where and with what the run ran, as tags: ``bench.host``, ``bench.device`` (the GPU's
    name, or the CPU as ``devices.cpu`` names it and its core count), ``bench.versions``, and
    for a run that starts from a weights file ``bench.weights``, its path and the start of its
    SHA-256 (a path names a file, not its content: a source run trained again writes other
    weights under it)."""
    import importlib.metadata
    import os
    import platform

    import torch

    def version(package: str) -> str:
        try:
            return importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            return "?"

    if devices.uses_cuda(run.trainer):
        given = run.trainer.get("devices")  # [i]: the GPU a launcher gave the run
        device = torch.cuda.get_device_name(given[0] if isinstance(given, list) else 0)
    else:
        device = f"CPU {devices.cpu()}, {os.cpu_count()} cores"
    packages = ("bench", "torch", "torchvision", "pytorch-lightning", "mlflow")
    versions = [f"python {platform.python_version()}"]
    versions += [f"{p} {version(p)}" for p in packages]
    tags = {
        "bench.host": platform.node(),
        "bench.device": device,
        "bench.versions": ", ".join(versions),
    }
    weights = run.model.get("weights")
    if isinstance(weights, str) and Path(weights).is_file():
        tags["bench.weights"] = f"{weights} (sha256 {file_digest(weights)[:16]})"
    return tags


def set_threads(config: Mapping[str, Any]) -> None:
    """torch's CPU threads for the run: ``trainer.num_threads`` (null: torch's default, which
    depends on the launcher). CPU kernels split their sums by thread (the linear layer's weight
    gradient, for one), so the thread count changes a run's numbers in the last bits; joblib's
    workers get ``cores // n_jobs`` threads where a plain run gets one per core."""
    import torch

    threads = config["trainer"].get("num_threads")
    if threads is not None:
        torch.set_num_threads(threads)


def identity(config: Mapping[str, Any]) -> str:
    """The run's identity (``bench.resume.identity``), with the starting weights' content: a
    weights file that is trained again under the same name makes a new run."""
    weights = config.get("model", {}).get("weights")
    digests = {}
    if isinstance(weights, str) and Path(weights).is_file():
        digests["model.weights"] = file_digest(weights)
    return resume.identity(config, digests)


def file_digest(path: str | Path) -> str:
    """The SHA-256 of a file's content."""
    import hashlib

    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def branch_checkpoint(config: Mapping[str, Any], tracking_uri: str) -> str | None:
    """The checkpoint a run starts from: ``branch.checkpoint``, or the one the run of its seed
    in sweep ``branch.from_sweep`` kept at the epoch ``spec.branch_epoch`` names."""
    branch = config.get("branch") or {}
    if branch.get("checkpoint"):
        return branch["checkpoint"]
    epoch = spec.branch_epoch(config)
    if epoch is None or epoch != int(epoch):
        return None
    return tracking.branch_point(tracking_uri, branch["from_sweep"], config["seed"], int(epoch))


def branch_origin(config: Mapping[str, Any], tracking_uri: str) -> dict[str, Any] | None:
    """Where a run with ``branch.checkpoint`` starts: that checkpoint, the run it is of, the
    epochs and optimizer steps it holds, a start time back-dated by the time that run took to
    get there (so the copied history and the new epochs read as one run), and when it really
    started (``started``, ms). None without."""
    import time

    from bench import lightning

    path = branch_checkpoint(config, tracking_uri)
    if not path:
        return None
    origin = lightning.checkpoint_origin(path)
    elapsed = tracking.elapsed_ms(tracking_uri, origin["run_id"], origin["epoch"])
    now = int(time.time() * 1000)
    return origin | {"checkpoint": str(path), "start_time": now - elapsed, "started": now}


def checkpoint_usable(path: str) -> bool:
    """Whether a checkpoint file is there, intact (its SHA-256 the one written beside it when
    it was saved) and readable; a damaged one, or one without its digest, is set aside as
    ``<name>.damaged`` so that the run starts afresh."""
    import torch

    from bench.lightning import digest_path, file_digest

    if not Path(path).is_file():
        return False
    digest = digest_path(path)
    try:
        expected = digest.read_text().strip() if digest.is_file() else None
        if expected is None:
            raise ValueError("no digest beside it")
        if file_digest(path) != expected:
            raise ValueError("its content is not what was written: SHA-256 differs")
        torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        return True
    except Exception as e:
        why = str(e) if isinstance(e, ValueError) else type(e).__name__
        log.warning(
            "checkpoint %s cannot be used (%s); set aside, the run starts afresh", path, why
        )
        Path(path).replace(f"{path}.damaged")
        digest.unlink(missing_ok=True)
        return False


def train(
    run: spec.RunSpec,
    *,
    tracking_uri: str,
    experiment_id: str,
    parent_run_id: str | None = None,
    label: str = "",
    overrides: list[str] | None = None,
    output_dir: str | Path | None = None,
    resume_from: resume.Decision | None = None,
) -> dict[str, float]:
    """Train and test one checked run (``bench.config.validate``), recorded in the MLflow
    experiment ``experiment_id`` of ``tracking_uri``, nested under ``parent_run_id`` if given
    and tagged with the command-line ``overrides`` that made it and its identity
    (``bench.key``). The final weights go to ``output_dir/weights.pt`` when ``output_dir`` is
    given; so does a checkpoint at an epoch's end, at most once per
    ``trainer.checkpoint_seconds`` and at the last epoch (``output_dir/checkpoints/<run
    id>.ckpt``, deleted when the run finishes), unless ``trainer.enable_checkpointing`` is false.
    ``resume_from`` (a ``resume`` decision) continues an earlier MLflow run from its checkpoint.
    A loss that turns NaN, infinite or above ``trainer.max_loss`` stops training there: the run
    finishes, tagged ``bench.diverged`` with the step in ``bench.diverged_step``. Returns the
    final metrics."""
    import pytorch_lightning as pl

    from bench import ensemble, lightning

    config = run.plain()  # what is recorded: params, tags, config.yaml
    lightning.quiet_lightning(devices.world_size(run.trainer) == 1)
    set_threads(config)
    pl.seed_everything(run.seed, workers=True, verbose=False)
    resuming = resume_from is not None and resume_from.action == resume.RESUME
    settled = devices.settle(run)
    trainer_kw = dict(settled.trainer)
    keep_checkpoints = trainer_kw.pop("enable_checkpointing", True) and output_dir is not None
    branch = None if resuming else branch_origin(config, tracking_uri)
    recorder = tracking.RunRecorder(
        tracking_uri,
        experiment_id,
        run_name=run.run_name,
        tags={
            "schedule": run.schedule.arm,
            "seed": str(run.seed),
            tracking.OVERRIDES_TAG: " ".join(overrides or []),
            tracking.KEY_TAG: identity(config),
            **provenance(run),
            **{
                f"bench.{k}": str({**settled.trainer, **settled.own["trainer"]}.get(k))
                for k in SETTLED
            },
            **(
                {
                    tracking.BRANCHED_FROM_TAG: f"{branch['run_id']} epoch {branch['epoch']}",
                    tracking.BRANCHED_AT_TAG: str(branch["started"]),
                }
                if branch
                else {}
            ),
        },
        parent_run_id=parent_run_id,
        resume_run_id=resume_from.run_id if resuming else None,
        start_time=branch["start_time"] if branch else None,
    )
    checkpoint = None  # the run's own file: <run folder>/checkpoints/<run id>.ckpt
    if resuming:
        checkpoint = Path(resume_from.checkpoint)
    elif keep_checkpoints:
        checkpoint = Path(output_dir) / CHECKPOINT_DIR / f"{recorder.run_id}.ckpt"
        recorder.set_tags({tracking.CHECKPOINT_TAG: str(checkpoint)})
    label = label or run.run_name
    log.info(
        "%s: MLflow run %s in %s%s",
        label,
        recorder.run_id,
        tracking_uri,
        f", resumed from {resume_from.checkpoint}" if resuming else "",
    )
    scratch = tempfile.mkdtemp(prefix="bench-run-")  # files of a run without an output_dir
    try:
        if not resuming:
            # ``schedule`` and ``seed`` as params too, so that MLflow's UI can group by them.
            recorder.log_params({"schedule": run.schedule.arm} | tracking.flatten(config))
            recorder.log_text(yaml.safe_dump(config, sort_keys=False), "config.yaml")
        if branch:  # what the run it branches from trained before the branch
            recorder.copy_history(branch["run_id"], branch["step"], branch["epoch"])
        datamodule, module = build(settled)
        recorder.log_params(data_params(datamodule))
        show_bar = trainer_kw.pop("enable_progress_bar", True)
        divergence = lightning.DivergenceStop(run.own["trainer"].get("max_loss"))
        progress = lightning.progress_callbacks(label, show_bar)
        snapshots = lightning.Snapshots(
            run.schedule.snapshot_steps,
            Path(output_dir or scratch) / ensemble.SNAPSHOT_DIR,
            recorder,
        )
        metrics_callback = lightning.MetricsCallback(recorder, divergence)
        callbacks = [metrics_callback, snapshots, divergence, *progress]
        if checkpoint:
            every = run.own["trainer"].get("checkpoint_seconds", 0)
            saver = lightning.EpochCheckpoint(checkpoint, metrics_callback.flush, every)
            metrics_callback.flush_seconds = None  # written with each checkpoint instead
            callbacks += [lightning.RandomState(), saver]
        keep = run.own["trainer"].get("keep_epochs") or []
        points = None
        if keep and output_dir is not None:
            points = lightning.BranchPoints(
                Path(output_dir) / BRANCH_DIR, keep, metrics_callback.flush
            )
            callbacks.append(points)
            if not checkpoint:
                callbacks.append(lightning.RandomState())
        trainer = pl.Trainer(
            **trainer_kw,
            logger=False,
            enable_progress_bar=any(isinstance(c, lightning.RunProgressBar) for c in progress),
            enable_checkpointing=checkpoint is not None,
            plugins=[lightning.AtomicCheckpointIO()] if checkpoint or points else None,
            callbacks=callbacks,
        )
        start_from = resume_from.checkpoint if resuming else (branch or {}).get("checkpoint")
        trainer.fit(module, datamodule=datamodule, ckpt_path=start_from)
        if points is not None and points.saved:
            recorder.set_tags(
                {tracking.BRANCHES_TAG: json.dumps({k: str(v) for k, v in points.saved.items()})}
            )
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
        if divergence.step is not None:
            recorder.set_tags(
                {tracking.DIVERGED_TAG: "true", tracking.DIVERGED_STEP_TAG: str(divergence.step)}
            )
            log.warning(
                "%s diverged: loss %s at step %d; training stopped there",
                label,
                divergence.loss,
                divergence.step,
            )
        trainer.test(module, datamodule=datamodule, verbose=False)
        metrics |= {k: float(v) for k, v in trainer.callback_metrics.items()}
        save_weights(module.net, recorder, output_dir)
        if snapshots.paths:
            found = {f"{s}_acc_ensemble": snapshots.accuracy(trainer, module, s) for s in SPLITS}
            recorder.log_params({"n_snapshots": len(snapshots.paths)})
            recorder.log(found, step=0)
            metrics |= found
        recorder.finish("FINISHED")
    except (KeyboardInterrupt, SystemExit):  # Lightning turns Ctrl-C into SystemExit
        if recorder.status != "FINISHED":  # (a signal held back while FINISHED was written)
            recorder.finish_quietly("KILLED", error="interrupted")
        raise
    except BaseException as e:
        if recorder.status != "FINISHED":
            recorder.finish_quietly(
                "FAILED", error=f"{type(e).__name__}: {e}", details=traceback.format_exc()
            )
        raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        if checkpoint and recorder.status == "FINISHED":  # nothing left to resume
            checkpoint.unlink(missing_ok=True)
            lightning.digest_path(checkpoint).unlink(missing_ok=True)
            recorder.forget_checkpoint()
    log.info(
        "%s: val_acc=%.4f test_acc=%.4f",
        label,
        metrics.get("val_acc", float("nan")),
        metrics.get("test_acc", float("nan")),
    )
    return metrics


def save_weights(net, recorder: tracking.RunRecorder, output_dir: str | Path | None) -> None:
    """The net's final ``state_dict`` as ``weights.pt``: in ``output_dir`` (when given) and as
    the run's artifact; ``model.weights=PATH`` starts another run from it."""
    import torch

    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(output_dir) if output_dir is not None else Path(scratch)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / WEIGHTS_FILE
        torch.save({k: v.detach().cpu() for k, v in net.state_dict().items()}, path)
        recorder.log_artifact(path)
