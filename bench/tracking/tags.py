"""The tags and metric names bench writes on its MLflow runs and experiments (the store's
layout: ``bench.tracking``)."""

from __future__ import annotations

KIND_TAG = "bench.kind"


PARENT_TAG = "mlflow.parentRunId"


ERROR_TAG = "bench.error"


OVERRIDES_TAG = "bench.overrides"


DIVERGED_TAG = "bench.diverged"


DIVERGED_STEP_TAG = "bench.diverged_step"


KEY_TAG = "bench.key"  # the run's identity (bench.resume.identity)


OWNER_TAG = "bench.owner"  # "<host> <pid> <process start>" of the process that runs it


CHECKPOINT_TAG = "bench.checkpoint"  # the file its training resumes from, while it has one


LINK_PREFIX = "bench.sweep."  # tag bench.sweep.<parent id>: the run also counts in that sweep


EXPERIMENT_KIND_TAG = "mlflow.experimentKind"


EXPERIMENT_KIND = "custom_model_development"


BRANCHES_TAG = "bench.branches"  # {epoch: checkpoint} kept at trainer.keep_epochs (JSON)
BRANCHED_FROM_TAG = "bench.branched_from"  # "<run id> epoch <k>": the run it continues
# When a branched run began training (ms since the epoch): its MLflow start is back-dated by
# the time its source took to reach the branch point, so that its copied history reads as one.
BRANCHED_AT_TAG = "bench.branched_at"
LOSSES = ("train_loss", "val_loss")
# Metrics written at every optimizer step (step = the 0-based optimizer step); the others are
# per epoch (step = the epoch) or written once at the end (test_*, *_ensemble).
STEP_METRICS = ("lr", "lr_backbone", "weight_decay", "train_loss_step")


EPOCH_METRICS = ("val_acc",)  # read back per epoch; the losses only as their last value


ENSEMBLE_METRICS = ("val_acc_ensemble", "test_acc_ensemble")
