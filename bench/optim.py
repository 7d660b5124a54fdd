"""Optimizers: parameter groups and weight decay, schedule-free optimizers' modes, and the
BatchNorm recalibration those need before every evaluation.

bench's own optimizer keys (``bench.spec.OWN_KEYS``; the others go to the
optimizer's class):

- ``wd_norm_and_bias`` (default true): false gives BatchNorm weights and every bias (all
  parameters with fewer than two dimensions) no weight decay;
- ``wd_coupled`` (default false): true holds ``lr x weight_decay`` at its value at the base LR
  through the schedule, ``weight_decay_t = weight_decay * base_lr / lr_t``, so the shrinkage per
  step does not fall with the LR (PyTorch's AdamW and SGD multiply the decay by the LR);
- ``bn_batches`` (schedule-free only, default 50): training batches used to recompute the
  BatchNorm statistics under the evaluation weights;
- ``lr_scale`` (default 1): the optimizer runs at ``lr x lr_scale``. Schedule-free SGD sets 10:
  its authors find rates 10-50x the classical SGD rate a good start, so a study's
  ``optimizer.lr`` (the classical rate its schedules start from) lands on schedule-free's own
  scale whichever optimizer the command picks.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn


def param_groups(
    parts: Iterable[tuple[list[nn.Parameter], float]], norm_and_bias: bool
) -> list[dict]:
    """Optimizer groups for ``parts`` (parameters and their LR multiplier ``lr_mult``, in that
    order): each part as one group, or, without decay on norms and biases, two: the decayed
    parameters (the optimizer's weight decay) first, then the others (``weight_decay`` 0)."""
    groups = []
    for params, lr_mult in parts:
        if norm_and_bias:
            groups.append({"params": params, "lr_mult": lr_mult})
            continue
        decayed = [p for p in params if p.ndim > 1]
        plain = [p for p in params if p.ndim <= 1]
        groups += [{"params": decayed, "lr_mult": lr_mult}] if decayed else []
        groups += [{"params": plain, "lr_mult": lr_mult, "weight_decay": 0.0}] if plain else []
    return groups


def couple_weight_decay(optimizer: torch.optim.Optimizer) -> None:
    """Set every group's weight decay so that ``lr x weight_decay`` stays at its value at the
    group's base LR (``initial_lr``, set by the LR scheduler); no decay while the LR is 0."""
    for group in optimizer.param_groups:
        wd = group.setdefault("coupled_weight_decay", group["weight_decay"])
        group["weight_decay"] = wd * group["initial_lr"] / group["lr"] if group["lr"] > 0 else 0.0


def is_schedule_free(optimizer: torch.optim.Optimizer) -> bool:
    """Whether ``optimizer`` keeps separate training and evaluation weights (the
    ``schedulefree`` package's optimizers, with their ``train()`` and ``eval()``)."""
    return "train_mode" in optimizer.defaults and callable(getattr(optimizer, "eval", None))


def recalibrate_batchnorm(model: nn.Module, batches: Iterable[torch.Tensor]) -> None:
    """Recompute every BatchNorm layer's running statistics of ``model`` as the plain average
    over ``batches`` (inputs), with the weights as they are now (torch's ``update_bn``)."""
    torch.optim.swa_utils.update_bn(batches, model)


BN_SEED = 0  # the same recalibration batches at every evaluation of every run
