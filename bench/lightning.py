"""The Lightning side: the training module, the callback that records a run, progress display."""

from __future__ import annotations

import logging
import math
import sys
import warnings
from collections.abc import Callable

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback, TQDMProgressBar
from torch import nn
from torch.nn import functional as F
from torch.optim.lr_scheduler import LambdaLR

from bench.tracking import RunRecorder

log = logging.getLogger(__name__)

# A schedule bound to its knobs and base LR: f(step, total_steps) -> lr.
Schedule = Callable[[int, int], float]
OptimizerFactory = Callable[..., torch.optim.Optimizer]


class Classifier(pl.LightningModule):
    """Cross-entropy classification; the learning rate follows ``schedule`` at every optimizer step.

    The schedule's length ``T`` is the number of optimizer steps the trainer will really take
    (``trainer.estimated_stepping_batches``), so it fits any dataset size, epoch count, gradient
    accumulation or device count.

    Two-stage fine-tuning: for the first ``freeze_epochs`` epochs only the head (``net.fc``)
    trains, the backbone's weights and BatchNorm statistics stay as loaded; then everything
    trains. ``backbone_lr_mult`` scales the backbone's LR against the head's throughout (the
    schedule spans the whole run either way).

    ``channels_last`` keeps the weights and the inputs in NHWC memory order, which the CPU's
    oneDNN and the GPU's cuDNN convolutions run faster.
    """

    def __init__(
        self,
        net: nn.Module,
        optimizer: OptimizerFactory,
        schedule: Schedule,
        freeze_epochs: int = 0,
        backbone_lr_mult: float = 1.0,
        channels_last: bool = False,
    ):
        super().__init__()
        self.net = net
        self.optimizer_factory = optimizer
        self.schedule = schedule
        self.freeze_epochs = freeze_epochs
        self.backbone_lr_mult = backbone_lr_mult
        self.total_steps = 0
        self.frozen = False
        self.channels_last = channels_last
        if channels_last:
            self.net.to(memory_format=torch.channels_last)

    def backbone(self) -> list[tuple[str, nn.Module]]:
        """The net's modules outside the head."""
        return [(n, m) for n, m in self.net.named_children() if n != "fc"]

    def backbone_parameters(self) -> list[nn.Parameter]:
        return [p for _, m in self.backbone() for p in m.parameters()]

    def freeze_backbone(self, frozen: bool) -> None:
        self.frozen = frozen
        for p in self.backbone_parameters():
            p.requires_grad_(not frozen)
        self.train(self.training)

    def train(self, mode: bool = True):
        super().train(mode)
        if mode and self.frozen:  # frozen BatchNorm layers keep their running statistics
            for _, module in self.backbone():
                module.eval()
        return self

    def on_train_epoch_start(self) -> None:
        frozen = self.current_epoch < self.freeze_epochs
        if frozen != self.frozen:
            self.freeze_backbone(frozen)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.net(x)

    def _step(self, batch, stage: str) -> torch.Tensor:
        x, y = batch
        logits = self(x)
        loss = F.cross_entropy(logits, y)
        acc = (logits.argmax(dim=1) == y).float().mean()
        on_step = stage == "train"
        self.log(f"{stage}_loss", loss, on_step=on_step, on_epoch=not on_step, prog_bar=on_step)
        if stage != "train":
            self.log(f"{stage}_acc", acc, on_epoch=True, prog_bar=True)
        return loss

    def training_step(self, batch, batch_idx):
        return self._step(batch, "train")

    def validation_step(self, batch, batch_idx):
        self._step(batch, "val")

    def test_step(self, batch, batch_idx):
        self._step(batch, "test")

    def configure_optimizers(self):
        self.total_steps = int(self.trainer.estimated_stepping_batches)
        if self.backbone_lr_mult == 1:
            optimizer = self.optimizer_factory(params=self.parameters())
        else:  # the head's group first: it is the one whose LR is logged as `lr`
            head = list(self.net.fc.parameters())
            groups = [{"params": head}, {"params": self.backbone_parameters()}]
            optimizer = self.optimizer_factory(params=groups)
            optimizer.param_groups[1]["lr"] = optimizer.defaults["lr"] * self.backbone_lr_mult
        total, base, schedule = self.total_steps, optimizer.defaults["lr"], self.schedule
        # LambdaLR scales each param group's own LR by schedule / base, so groups with different
        # LRs keep their ratio while the default group follows the schedule exactly.
        scheduler = LambdaLR(optimizer, lambda t: schedule(t, total) / base)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step", "frequency": 1},
        }


class MlflowRecorder(Callback):
    """Feeds a run's metrics to its ``RunRecorder``.

    Per optimizer step (step = 0-based optimizer step; buffered, written once per epoch):
    ``lr``, the LR the step used (the head's, when the backbone has its own), ``lr_backbone``
    when it differs, and ``train_loss_step``, the loss of the batch that stepped.
    Per epoch (step = epoch number, 1 after the first epoch): ``train_loss``, the mean batch loss
    of the epoch, ``val_acc`` and ``val_loss``. At the end: ``test_acc``.
    """

    def __init__(self, recorder: RunRecorder):
        self.recorder = recorder
        self._step_before = 0
        self._lr: dict[str, float] = {}
        self._epoch_losses: list[float] = []

    def on_fit_start(self, trainer, pl_module):
        # Lightning also steps on the last, partial accumulation window of an epoch.
        steps_per_epoch = math.ceil(trainer.num_training_batches / trainer.accumulate_grad_batches)
        self.recorder.log_params(
            {"total_steps": pl_module.total_steps, "steps_per_epoch": steps_per_epoch}
        )

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self._step_before = trainer.global_step
        groups = trainer.optimizers[0].param_groups
        self._lr = {"lr": groups[0]["lr"]}
        if len(groups) > 1:
            self._lr["lr_backbone"] = groups[1]["lr"]

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        loss = float(trainer.callback_metrics["train_loss"])
        self._epoch_losses.append(loss)
        if trainer.global_step > self._step_before:  # this batch took an optimizer step
            step = self._step_before
            self.recorder.add({**self._lr, "train_loss_step": loss}, step=step)

    def on_train_epoch_end(self, trainer, pl_module):
        if self._epoch_losses:
            mean = sum(self._epoch_losses) / len(self._epoch_losses)
            self.recorder.add({"train_loss": mean}, step=trainer.current_epoch + 1)
        self._epoch_losses.clear()
        self.recorder.flush()

    def on_validation_epoch_end(self, trainer, pl_module):
        if trainer.sanity_checking:
            return
        metrics = {k: float(trainer.callback_metrics[k]) for k in ("val_acc", "val_loss")}
        self.recorder.log(metrics, step=trainer.current_epoch + 1)

    def on_test_epoch_end(self, trainer, pl_module):
        self.recorder.log({"test_acc": float(trainer.callback_metrics["test_acc"])}, step=0)


class RunProgressBar(TQDMProgressBar):
    """Lightning's progress bar, prefixed with which run of the sweep this is."""

    def __init__(self, label: str):
        super().__init__()
        self.label = label

    def on_train_epoch_start(self, trainer, *args):
        super().on_train_epoch_start(trainer, *args)
        self.train_progress_bar.set_description(
            f"{self.label} epoch {trainer.current_epoch + 1}/{trainer.max_epochs}"
        )


class EpochLog(Callback):
    """One log line per epoch, for output that is not a terminal (logs, CI, SLURM)."""

    def __init__(self, label: str):
        self.label = label

    def on_validation_epoch_end(self, trainer, pl_module):
        if trainer.sanity_checking:
            return
        m = trainer.callback_metrics
        log.info(
            "%s epoch %d/%d val_acc=%.4f val_loss=%.4f",
            self.label,
            trainer.current_epoch + 1,
            trainer.max_epochs,
            float(m["val_acc"]),
            float(m["val_loss"]),
        )


def quiet_lightning() -> None:
    """Silence Lightning's per-run banners and the advice that does not apply to in-memory data."""
    for name in ("pytorch_lightning", "lightning.pytorch", "lightning_fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*number of training batches.*smaller than.*")
    warnings.filterwarnings("ignore", message=".*isinstance.treespec, LeafSpec.*")


def progress_callbacks(label: str, enabled: bool) -> list[Callback]:
    """A live bar on a terminal, a line per epoch elsewhere."""
    if enabled and sys.stderr.isatty():
        return [RunProgressBar(label)]
    return [EpochLog(label)]
