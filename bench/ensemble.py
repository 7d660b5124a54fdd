"""Snapshot ensembles: the weights kept at the end of every warm-restart cycle
(``bench.schedules.snapshot_steps``), evaluated together by averaging their softmax outputs.

The ensemble costs no extra training, and k snapshots cost k forward passes per image at
inference.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from pathlib import Path

import torch
from torch import nn

SNAPSHOT_DIR = "snapshots"


def snapshot_name(i: int, step: int) -> str:
    """The file of snapshot ``i`` (0-based), taken after optimizer step ``step``."""
    return f"snapshot-{i}-step{step}.pt"


@torch.no_grad()
def probabilities(
    net: nn.Module, state: dict[str, torch.Tensor], inputs: Iterable[torch.Tensor]
) -> torch.Tensor:
    """Softmax outputs (``N x classes``) of ``net`` with the weights ``state``, in eval mode, over
    the batches ``inputs``. ``net`` itself is left as it was."""
    net = copy.deepcopy(net)
    net.load_state_dict(state)
    net.eval()
    return torch.cat([torch.softmax(net(x).float(), dim=1).cpu() for x in inputs])


def accuracy(probs: torch.Tensor, labels: torch.Tensor) -> float:
    """The fraction of rows of ``probs`` whose most likely class is the label."""
    return float((probs.argmax(dim=1) == labels.cpu()).float().mean())


def ensemble_accuracy(
    net: nn.Module, paths: list[Path], batches: list[tuple[torch.Tensor, torch.Tensor]]
) -> float:
    """Accuracy of the snapshots in ``paths`` averaged (mean softmax) over ``batches``."""
    inputs = [x for x, _ in batches]
    labels = torch.cat([y.cpu() for _, y in batches])
    mean = sum(probabilities(net, torch.load(p, weights_only=True), inputs) for p in paths)
    return accuracy(mean / len(paths), labels)
