"""The Lightning side: the training module, the callback that records a run, progress display."""

from __future__ import annotations

import hashlib
import itertools
import logging
import math
import os
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import pytorch_lightning as pl
import torch
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO
from pytorch_lightning.callbacks import Callback, ModelCheckpoint, TQDMProgressBar
from torch import nn
from torch.nn import functional as F
from torch.optim.lr_scheduler import LambdaLR

from bench import ensemble, optim
from bench.data import contract
from bench.tracking import RunRecorder

log = logging.getLogger(__name__)

# A schedule bound to its knobs and base LR: f(step, total_steps) -> lr.
Schedule = Callable[[int, int], float]
OptimizerFactory = Callable[..., torch.optim.Optimizer]


class Classifier(pl.LightningModule):
    """Cross-entropy classification; the learning rate follows ``schedule`` at every optimizer step.

    The schedule's length ``T`` is ``steps``, the optimizer steps the run's check counted
    (``bench.config.run_steps``); where the check cannot count them (several devices,
    ``fast_dev_run``), the steps the trainer will really take
    (``trainer.estimated_stepping_batches``). A count that differs from the trainer's stops the
    run before its first step: the schedule would not span the run it was checked against.

    Two-stage fine-tuning: for the first ``freeze_epochs`` epochs only the head (``head``:
    a module's dotted name; None: ``fc``, else the last ``nn.Linear``, ``bench.models.head_of``)
    trains, the backbone's weights and BatchNorm statistics stay as loaded; then everything
    trains. ``backbone_lr_mult`` scales the backbone's LR against the head's throughout (the
    schedule spans the whole run either way).

    ``channels_last`` keeps the weights and the inputs in NHWC memory order, which the CPU's
    oneDNN and the GPU's cuDNN convolutions run faster.

    ``label_smoothing`` smooths the training loss's targets; validation and test losses are plain
    cross-entropy. Weight decay per parameter group, with or without decay on norms and biases
    and coupled to the LR or not: ``bench.optim``.

    A schedule-free optimizer (``bench.optim.is_schedule_free``) is switched to its training
    weights for every training epoch and to its evaluation weights for validation and test,
    where the BatchNorm statistics are first recomputed on ``bn_batches`` training batches under
    the evaluation weights, as the optimizer's authors require: the accuracies recorded, and the
    weights saved at the end, are those of the evaluation weights.
    """

    def __init__(
        self,
        net: nn.Module,
        optimizer: OptimizerFactory,
        schedule: Schedule,
        freeze_epochs: int = 0,
        backbone_lr_mult: float = 1.0,
        channels_last: bool = False,
        label_smoothing: float = 0.0,
        wd_norm_and_bias: bool = True,
        wd_coupled: bool = False,
        bn_batches: int = 50,
        head: str | None = None,
        steps: int | None = None,
    ):
        super().__init__()
        self.net = net
        self.head_name = head
        self.optimizer_factory = optimizer
        self.schedule = schedule
        self.freeze_epochs = freeze_epochs
        self.backbone_lr_mult = backbone_lr_mult
        self.steps = steps
        self.total_steps = 0
        self.frozen = False
        self.channels_last = channels_last
        if channels_last:
            self.net.to(memory_format=torch.channels_last)
        self.label_smoothing = label_smoothing
        self.wd_norm_and_bias = wd_norm_and_bias
        self.wd_coupled = wd_coupled
        self.bn_batches = bn_batches
        self.step_loss: torch.Tensor | None = None  # the last training batch's loss

    def head(self) -> nn.Module:
        from bench.models import head_of

        return self.net.get_submodule(head_of(self.net, self.head_name))

    def backbone_parameters(self) -> list[nn.Parameter]:
        """The net's parameters outside the head."""
        head = {id(p) for p in self.head().parameters()}
        return [p for p in self.net.parameters() if id(p) not in head]

    def freeze_backbone(self, frozen: bool) -> None:
        self.frozen = frozen
        for p in self.backbone_parameters():
            p.requires_grad_(not frozen)
        self.train(self.training)

    def train(self, mode: bool = True):
        super().train(mode)
        if mode and self.frozen:  # frozen BatchNorm layers keep their running statistics
            self.net.eval()
            self.head().train()
        return self

    def on_train_epoch_start(self) -> None:
        frozen = self.current_epoch < self.freeze_epochs
        if frozen != self.frozen:
            self.freeze_backbone(frozen)
        self.optimizer_mode("train")

    # Schedule-free optimizers: training weights to train, evaluation weights to evaluate.

    def optimizer_mode(self, mode: str) -> None:
        """Switch a schedule-free optimizer to its ``train`` or ``eval`` weights (no-op for the
        others); entering ``eval`` recomputes the BatchNorm statistics for those weights."""
        optimizers = self.trainer.optimizers if self._trainer is not None else []
        for optimizer in optimizers:
            if not optim.is_schedule_free(optimizer):
                continue
            was_training = optimizer.param_groups[0]["train_mode"]
            getattr(optimizer, mode)()
            if mode == "eval" and was_training and not self.frozen:
                # (Frozen, the backbone keeps its loaded statistics and the head has none.)
                # The same batches every time, drawn without moving the training order.
                with torch.random.fork_rng():  # CPU and every CUDA device
                    torch.manual_seed(optim.BN_SEED)
                    loader = contract.training_batches(self.trainer.datamodule, augmented=False)
                    batches = prepared_batches(self, loader, self.bn_batches)
                optim.recalibrate_batchnorm(self, [x for x, _ in batches])

    def on_validation_epoch_start(self) -> None:
        self.optimizer_mode("eval")

    def on_validation_epoch_end(self) -> None:
        if self.trainer.state.fn == "fit":
            self.optimizer_mode("train")

    def on_test_epoch_start(self) -> None:
        self.optimizer_mode("eval")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.net(x)

    def _step(self, batch, stage: str) -> torch.Tensor:
        x, y = batch
        logits = self(x)
        smoothing = self.label_smoothing if stage == "train" else 0.0
        loss = F.cross_entropy(logits, y, label_smoothing=smoothing)
        if stage == "train":
            # Kept on the device: MetricsCallback reads the steps' losses back in batches, so
            # that a GPU never waits for the host to read one.
            self.step_loss = loss.detach()
        else:
            acc = (logits.argmax(dim=1) == y).float().mean()
            self.log(f"{stage}_loss", loss, on_epoch=True)
            self.log(f"{stage}_acc", acc, on_epoch=True, prog_bar=True)
        return loss

    def training_step(self, batch, batch_idx):
        return self._step(batch, "train")

    def validation_step(self, batch, batch_idx):
        self._step(batch, "val")

    def test_step(self, batch, batch_idx):
        self._step(batch, "test")

    def configure_optimizers(self):
        stepping = int(self.trainer.estimated_stepping_batches)
        if self.steps is not None and self.steps != stepping:
            raise RuntimeError(
                f"the schedule was checked against T={self.steps} optimizer steps, but the "
                f"trainer will take {stepping}"
            )
        self.total_steps = stepping
        # The head's group(s) first: the first group's LR is the one logged as `lr`.
        if self.backbone_lr_mult == 1:
            parts = [(list(self.parameters()), 1.0)]
        else:
            parts = [(list(self.head().parameters()), 1.0)]
            parts += [(self.backbone_parameters(), self.backbone_lr_mult)]
        optimizer = self.optimizer_factory(params=optim.param_groups(parts, self.wd_norm_and_bias))
        base = optimizer.defaults["lr"]
        for group in optimizer.param_groups:
            group["lr"] = base * group["lr_mult"]
        total, schedule = self.total_steps, self.schedule
        # LambdaLR scales each param group's own LR by schedule / base, so groups with different
        # LRs keep their ratio while the default group follows the schedule exactly.
        scheduler = LambdaLR(optimizer, lambda t: schedule(t, total) / base)
        if self.wd_coupled:
            optim.couple_weight_decay(optimizer)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step", "frequency": 1},
        }

    def lr_scheduler_step(self, scheduler, metric) -> None:
        scheduler.step()
        if self.wd_coupled:
            optim.couple_weight_decay(scheduler.optimizer)


def prepared_batches(module: pl.LightningModule, loader, n: int | None = None) -> list:
    """The first ``n`` (default: all) batches of ``loader`` on the module's device, prepared by
    the datamodule as for evaluation (normalised, not augmented)."""
    datamodule = module.trainer.datamodule
    out = []
    for batch in itertools.islice(loader, n):
        batch = module.transfer_batch_to_device(batch, module.device, 0)
        out.append(datamodule.on_after_batch_transfer(batch, 0))
    return out


class Snapshots(Callback):
    """A snapshot ensemble's members: the net's weights after each optimizer step that
    ``steps(T)`` lists for a run of ``T`` steps, saved to ``folder`` (``snapshot-<i>-step<t>.pt``)
    and as the run's artifacts under ``snapshots/``. ``accuracy(split)`` evaluates them together
    once training is over."""

    def __init__(self, steps: Callable[[int], list[int]], folder: Path, recorder: RunRecorder):
        self.steps_for = steps
        self.folder = Path(folder)
        self.recorder = recorder
        self.steps: set[int] = set()
        self.paths: list[Path] = []
        self._step_before = 0

    def on_fit_start(self, trainer, pl_module):
        self.steps = set(self.steps_for(pl_module.total_steps))

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self._step_before = trainer.global_step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        step = self._step_before
        if trainer.global_step > step and step in self.steps:
            self.folder.mkdir(parents=True, exist_ok=True)
            path = self.folder / ensemble.snapshot_name(len(self.paths), step)
            torch.save(
                {k: v.detach().cpu().clone() for k, v in pl_module.net.state_dict().items()}, path
            )
            self.recorder.log_artifact(path, ensemble.SNAPSHOT_DIR)
            self.paths.append(path)

    def state_dict(self) -> dict:
        return {"paths": [str(p) for p in self.paths]}

    def load_state_dict(self, state: dict) -> None:  # a resumed run keeps its earlier snapshots
        self.paths = [Path(p) for p in state["paths"]]

    def accuracy(self, trainer, module: Classifier, split: str) -> float:
        """The ensemble's accuracy on ``split`` (``val`` or ``test``)."""
        loader = getattr(trainer.datamodule, f"{split}_dataloader")()
        with trainer.precision_plugin.forward_context():
            return ensemble.ensemble_accuracy(
                module.net, self.paths, prepared_batches(module, loader)
            )


class MetricsCallback(Callback):
    """Feeds a run's metrics to its ``RunRecorder``.

    Per optimizer step (step = 0-based optimizer step; buffered, written as below):
    ``lr``, the LR the step used (the head's, when the backbone has its own), ``lr_backbone``
    when it differs, ``weight_decay`` when it is coupled to the LR (the first group's), and
    ``train_loss_step``, the loss of the batch that stepped.
    Per epoch (step = epoch number, 1 after the first epoch): ``train_loss``, the mean batch loss
    of the epoch, ``val_acc`` and ``val_loss``. At the end: ``test_acc``.

    Metrics reach the store when training ends and, before that, with every checkpoint
    (``EpochCheckpoint`` flushes them), or, for a run without checkpoints, every
    ``FLUSH_SECONDS`` (checked at an epoch's end): a store write costs milliseconds, a fair
    share of a short run's epoch. So the store never holds steps that the checkpoint a run
    resumes from does not cover.

    The batches' losses stay on the device until they are read back together: every
    ``SYNC_EVERY`` batches on a GPU (every batch on the CPU, where reading costs nothing) and at
    the end of every epoch. ``divergence`` (a ``DivergenceStop``) is shown every loss read, in
    order; steps after the one that diverged are not recorded.
    """

    SYNC_EVERY = 50
    FLUSH_SECONDS = 10.0

    def __init__(self, recorder: RunRecorder, divergence: DivergenceStop | None = None):
        self.recorder = recorder
        self.divergence = divergence
        self.last_loss: float | None = None  # the last loss read back (the progress bar's)
        self._step_before = 0
        self._lr: dict[str, float] = {}
        self._pending: list[tuple[int, bool, dict[str, float], torch.Tensor]] = []
        self._epoch_losses: list[float] = []
        self._sync_every = 1
        self.flush_seconds: float | None = self.FLUSH_SECONDS  # None: flushed by checkpoints
        self._flushed = time.monotonic()

    def on_save_checkpoint(self, trainer, pl_module, checkpoint) -> None:
        # Which run the checkpoint is of: a run branched from it copies that run's history.
        checkpoint["bench"] = {"run_id": self.recorder.run_id}

    def on_fit_start(self, trainer, pl_module):
        # Lightning also steps on the last, partial accumulation window of an epoch.
        steps_per_epoch = math.ceil(trainer.num_training_batches / trainer.accumulate_grad_batches)
        self.recorder.log_params(
            {"total_steps": pl_module.total_steps, "steps_per_epoch": steps_per_epoch}
        )
        self._sync_every = self.sync_every(pl_module.device)

    @classmethod
    def sync_every(cls, device: torch.device) -> int:
        """After how many batches the losses are read back on ``device``."""
        return 1 if device.type == "cpu" else cls.SYNC_EVERY

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self._step_before = trainer.global_step
        groups = trainer.optimizers[0].param_groups
        self._lr = {"lr": groups[0]["lr"]}
        backbone = [g for g in groups if g.get("lr_mult", 1.0) != 1.0]
        if backbone:
            self._lr["lr_backbone"] = backbone[0]["lr"]
        if "coupled_weight_decay" in groups[0]:
            self._lr["weight_decay"] = groups[0]["weight_decay"]

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        stepped = trainer.global_step > self._step_before  # this batch took an optimizer step
        self._pending.append((self._step_before, stepped, self._lr, pl_module.step_loss))
        if len(self._pending) >= self._sync_every:
            self._read_back(trainer)

    def _read_back(self, trainer) -> None:
        """The pending losses, read from the device at once, to the recorder (and the
        divergence check)."""
        if not self._pending:
            return
        losses = torch.stack([loss for *_, loss in self._pending]).tolist()
        for (step, stepped, lr, _), loss in zip(self._pending, losses, strict=True):
            if self.divergence is not None and self.divergence.stopped:
                break
            self._epoch_losses.append(loss)
            if stepped:
                self.recorder.add({**lr, "train_loss_step": loss}, step=step)
            if self.divergence is not None and self.divergence.check(step, loss):
                trainer.should_stop = True
        self.last_loss = losses[-1]
        self._pending.clear()

    def on_train_epoch_end(self, trainer, pl_module):
        self._read_back(trainer)
        if self._epoch_losses:
            mean = sum(self._epoch_losses) / len(self._epoch_losses)
            self.recorder.add({"train_loss": mean}, step=trainer.current_epoch + 1)
        self._epoch_losses.clear()
        due = self.flush_seconds is not None
        if due and time.monotonic() - self._flushed >= self.flush_seconds:
            self.flush()

    def flush(self) -> None:
        self.recorder.flush()
        self._flushed = time.monotonic()

    def on_train_end(self, trainer, pl_module):
        self.flush()

    def on_validation_epoch_end(self, trainer, pl_module):
        if trainer.sanity_checking:
            return
        metrics = {k: float(trainer.callback_metrics[k]) for k in ("val_acc", "val_loss")}
        self.recorder.add(metrics, step=trainer.current_epoch + 1)  # validation ends the epoch

    def on_test_epoch_end(self, trainer, pl_module):
        self.recorder.log({"test_acc": float(trainer.callback_metrics["test_acc"])}, step=0)


class DivergenceStop(Callback):
    """Whether training diverged: the first optimizer step whose loss is NaN, infinite or above
    ``max_loss`` (None: only non-finite). ``MetricsCallback`` shows it the losses it reads
    (``check``); ``step`` is that 0-based step, None if none. Kept in checkpoints: a resumed run
    that had diverged stays stopped."""

    def __init__(self, max_loss: float | None):
        self.max_loss = max_loss
        self.step: int | None = None
        self.loss = float("nan")

    @property
    def stopped(self) -> bool:
        return self.step is not None

    def check(self, step: int, loss: float) -> bool:
        """Whether the loss of optimizer step ``step`` stops training (it is the first to)."""
        too_high = self.max_loss is not None and loss > self.max_loss
        if self.step is None and (not math.isfinite(loss) or too_high):
            self.step, self.loss = step, loss
            return True
        return False

    def on_train_start(self, trainer, pl_module):
        if self.stopped:  # resumed after it diverged: it stays stopped
            trainer.should_stop = True

    def state_dict(self) -> dict:
        return {"step": self.step, "loss": self.loss}

    def load_state_dict(self, state: dict) -> None:
        self.step, self.loss = state["step"], state["loss"]


class RandomState(Callback):
    """Saves the random generators' states (Python, NumPy, torch on the CPU and every GPU) in
    each checkpoint and restores them on resume, so that a resumed run draws the same batches
    and augmentations as one that was never stopped."""

    def state_dict(self) -> dict:
        import random

        import numpy as np

        kind, keys, pos, has_gauss, cached = np.random.get_state()
        return {  # plain types and tensors only: checkpoints are read with weights_only=True
            "python": random.getstate(),
            "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached],
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        }

    def load_state_dict(self, state: dict) -> None:
        import random

        import numpy as np

        random.setstate(state["python"])
        kind, keys, pos, has_gauss, cached = state["numpy"]
        np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
        torch.set_rng_state(state["torch"])
        if state["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])


def digest_path(path: str | Path) -> Path:
    """Where a checkpoint's SHA-256 is kept: ``<checkpoint>.sha256`` beside it."""
    return Path(f"{path}.sha256")


def file_digest(path: str | Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _fsync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes a checkpoint to a temporary file and renames it into place, so that a process
    killed while writing leaves the previous checkpoint whole; its SHA-256 goes beside it
    (``digest_path``), so that a file changed afterwards (a bad disk, a bit flip) is never
    resumed from (``bench.run.checkpoint_usable``)."""

    def save_checkpoint(self, checkpoint, path, storage_options=None) -> None:
        path = Path(path)
        partial = path.with_name(path.name + ".partial")
        super().save_checkpoint(checkpoint, partial, storage_options)
        with open(partial, "rb") as f:
            os.fsync(f.fileno())  # on disk before it takes the name (power loss)
        digest = file_digest(partial)
        os.replace(partial, path)
        written = digest_path(path).with_name(digest_path(path).name + ".partial")
        written.write_text(digest + "\n")
        with open(written, "rb") as f:
            os.fsync(f.fileno())
        os.replace(written, digest_path(path))
        _fsync_folder(path.parent)


class EpochCheckpoint(ModelCheckpoint):
    """Lightning's checkpoint callback, keeping one file, ``path``, written at the end of a
    training epoch once ``seconds`` have passed since the last one was (0: every epoch), and
    at the last epoch's end. The run's metrics up to that point reach the store first
    (``flush``), so that a resumed run finds in the store every step its checkpoint covers."""

    def __init__(self, path: Path, flush: Callable[[], None], seconds: float = 0.0):
        super().__init__(
            dirpath=path.parent,
            filename=path.stem,
            save_top_k=1,
            every_n_epochs=1,
            save_on_train_epoch_end=True,
            enable_version_counter=False,
        )
        self.flush = flush
        self.seconds = seconds
        self._last = time.monotonic()

    def on_train_epoch_end(self, trainer, pl_module):
        last = (
            trainer.current_epoch + 1 >= (trainer.max_epochs or 0)
            or 0 < trainer.max_steps <= trainer.global_step
            or trainer.should_stop
        )
        if last or time.monotonic() - self._last >= self.seconds:
            self.flush()
            super().on_train_epoch_end(trainer, pl_module)
            self._last = time.monotonic()


class BranchPoints(Callback):
    """Keeps a checkpoint at the end of each epoch in ``epochs`` as
    ``<folder>/epoch<k>.ckpt`` (never deleted), the run's metrics flushed first: the points a
    later run can branch from (``branch.checkpoint``), such as the cooldowns of
    warmup-stable-decay branched from one constant-LR run. ``saved`` maps each epoch kept to
    its file."""

    def __init__(self, folder: Path, epochs: list[int], flush: Callable[[], None]):
        self.folder = Path(folder)
        self.epochs = set(epochs)
        self.flush = flush
        self.saved: dict[int, Path] = {}

    def on_train_epoch_end(self, trainer, pl_module):
        epoch = trainer.current_epoch + 1
        if epoch in self.epochs:
            self.flush()
            path = self.folder / f"epoch{epoch}.ckpt"
            trainer.save_checkpoint(path)
            self.saved[epoch] = path


def checkpoint_origin(path: str | Path) -> dict:
    """What a checkpoint holds about where it came from: ``run_id`` (the MLflow run it is of),
    ``epoch`` (epochs done) and ``step`` (optimizer steps done)."""
    state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    return {
        "run_id": state.get("bench", {}).get("run_id"),
        "epoch": int(state["epoch"]) + 1,
        "step": int(state["global_step"]),
    }


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

    def get_metrics(self, trainer, pl_module):
        # The last training loss read back from the device (no read of its own).
        metrics = super().get_metrics(trainer, pl_module)
        recorders = [c for c in trainer.callbacks if isinstance(c, MetricsCallback)]
        if recorders and recorders[0].last_loss is not None:
            metrics["train_loss"] = f"{recorders[0].last_loss:.3f}"
        return metrics


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


def quiet_lightning(one_process: bool = True) -> None:
    """Silence Lightning's per-run banners and the advice that does not apply: to in-memory
    data, to a branched run's checkpoint folder (``branch.checkpoint``), and (``one_process``:
    a run of one device) to launching with SLURM's ``srun``, which Lightning gives on any
    machine where ``srun`` exists (a cluster's login node, a job that bench's SLURM launcher
    started itself)."""
    for name in ("pytorch_lightning", "lightning.pytorch", "lightning_fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*number of training batches.*smaller than.*")
    warnings.filterwarnings("ignore", message=".*isinstance.treespec, LeafSpec.*")
    warnings.filterwarnings("ignore", message="Checkpoint directory .* exists and is not empty")
    # a run branched from another run's checkpoint keeps its own checkpoints in its own folder
    warnings.filterwarnings("ignore", message="The dirpath has changed from")
    if one_process:
        warnings.filterwarnings("ignore", message="The `srun` command is available on your system")


def progress_callbacks(label: str, enabled: bool) -> list[Callback]:
    """A live bar on a terminal, a line per epoch elsewhere."""
    if enabled and sys.stderr.isatty():
        return [RunProgressBar(label)]
    return [EpochLog(label)]
