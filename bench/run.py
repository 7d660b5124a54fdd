"""One training run, recorded in MLflow. Takes the resolved config as plain data; knows nothing
of Hydra's types or of sweeps (the shells in ``bench.cli`` and ``bench.sweep`` do).

The run: seed -> MLflow run (params, tags, ``config.yaml``) -> data -> model (class count, input
channels and image size from the data; starting weights) -> Lightning fit and test -> final
weights saved as ``weights.pt`` (locally and as an artifact) -> run marked FINISHED. Any failure
marks the run FAILED (Ctrl-C: KILLED) with its error, then propagates.
"""

from __future__ import annotations

import logging
import tempfile
import traceback
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from bench import config as bench_config
from bench import tracking

log = logging.getLogger("bench")

WEIGHTS_FILE = "weights.pt"


def data_params(datamodule) -> dict[str, Any]:
    """What the data turned out to be: class count, image size, split sizes."""
    params = {k: getattr(datamodule, k) for k in bench_config.FROM_DATA}
    params |= {f"n_{name}": len(split) for name, split in datamodule.splits.items()}
    return params


def train(
    config: Mapping[str, Any],
    *,
    tracking_uri: str,
    experiment_id: str,
    parent_run_id: str | None = None,
    label: str = "",
    overrides: list[str] | None = None,
    output_dir: str | Path | None = None,
) -> dict[str, float]:
    """Train and test one run of ``config`` (resolved, plain data), recorded in the MLflow
    experiment ``experiment_id`` of ``tracking_uri``, nested under ``parent_run_id`` if given
    and tagged with the command-line ``overrides`` that made it. The final weights go to
    ``output_dir/weights.pt`` when ``output_dir`` is given. Returns the final metrics."""
    import pytorch_lightning as pl
    from hydra.utils import instantiate

    from bench import lightning, models, schedules

    bench_config.validate(config)
    lightning.quiet_lightning()
    pl.seed_everything(config["seed"], workers=True, verbose=False)
    recorder = tracking.RunRecorder(
        tracking_uri,
        experiment_id,
        run_name=config["run_name"],
        tags={
            "schedule": config["schedule"]["name"],
            "seed": str(config["seed"]),
            tracking.OVERRIDES_TAG: " ".join(overrides or []),
        },
        parent_run_id=parent_run_id,
    )
    label = label or config["run_name"]
    log.info("%s: MLflow run %s in %s", label, recorder.run_id, tracking_uri)
    try:
        recorder.log_params(tracking.flatten(config))
        recorder.log_text(yaml.safe_dump(dict(config), sort_keys=False), "config.yaml")
        datamodule = instantiate(dict(config["data"]))
        datamodule.prepare_data()
        datamodule.setup("fit")
        recorder.log_params(data_params(datamodule))
        knobs = {k: v for k, v in config["schedule"].items() if k != "name"}
        schedule = schedules.make(
            config["schedule"]["name"], base=config["optimizer"]["lr"], **knobs
        )
        module = lightning.Classifier(
            models.build(
                config["model"],
                datamodule.num_classes,
                datamodule.in_channels,
                datamodule.image_size,
            ),
            instantiate(dict(config["optimizer"])),
            schedule,
            **config.get("finetune", {}),
            channels_last=config["trainer"].get("channels_last", False),
        )
        trainer_kw = {
            k: v for k, v in config["trainer"].items() if k not in bench_config.OWN_TRAINER_KEYS
        }
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
        save_weights(module.net, recorder, output_dir)
        recorder.finish("FINISHED")
    except (KeyboardInterrupt, SystemExit):  # Lightning turns Ctrl-C into SystemExit
        recorder.finish_quietly("KILLED", error="interrupted")
        raise
    except BaseException as e:
        recorder.finish_quietly(
            "FAILED", error=f"{type(e).__name__}: {e}", details=traceback.format_exc()
        )
        raise
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
