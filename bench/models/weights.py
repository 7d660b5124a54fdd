"""Starting weights for a network: none, torchvision's ImageNet weights, or a file.

A weights file is a plain ``state_dict`` (what every finished run saves as ``weights.pt``) or a
Lightning checkpoint (its ``state_dict``, with the LightningModule's ``net.`` prefix); it is read
with ``torch.load(weights_only=True)``, which runs no code from the file. The head (``fc``, or
what ``bench.models.head_of`` names) is never loaded: it is new for the dataset's classes. Every
other tensor must fit by name and shape, or the load stops with the names that do not.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

HEAD = "fc."
CHOICES = "none, imagenet (ResNet-18 only), or the path of a weights file"


class WeightsError(ValueError):
    """Weights that cannot be loaded into the model."""


def read(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a weights file (a ``state_dict`` or a Lightning checkpoint)."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"model.weights: no file at {path}; allowed: {CHOICES}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise WeightsError(
            f"model.weights: cannot read {path} with torch.load(weights_only=True) "
            f"({type(e).__name__}: {first}); expected a state_dict or a Lightning checkpoint"
        ) from None
    if isinstance(state, Mapping) and isinstance(state.get("state_dict"), Mapping):
        state = state["state_dict"]  # a Lightning checkpoint
    if not isinstance(state, Mapping) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise WeightsError(
            f"model.weights: {path} holds no state_dict (a mapping of names to tensors)"
        )
    if state and all(k.startswith("net.") for k in state):
        state = {k.removeprefix("net."): v for k, v in state.items()}
    return dict(state)


def _names(keys: list[str], limit: int = 6) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f" and {len(keys) - limit} more" if len(keys) > limit else "")


def load(
    net: nn.Module, state: Mapping[str, torch.Tensor], source: str, head: str = HEAD
) -> nn.Module:
    """Copy every tensor of ``state`` but the head's (names starting ``head``) into ``net``;
    ``WeightsError`` naming the tensors that are missing, unexpected or of the wrong shape."""
    own = {k: v for k, v in net.state_dict().items() if not k.startswith(head)}
    body = {k: v for k, v in state.items() if not k.startswith(head)}
    missing = [k for k in own if k not in body]
    unexpected = [k for k in body if k not in own]
    shapes = [
        f"{k} {tuple(body[k].shape)} (the model has {tuple(v.shape)})"
        for k, v in own.items()
        if k in body and body[k].shape != v.shape
    ]
    found = []
    if missing:
        found.append(f"missing {_names(missing)}")
    if unexpected:
        found.append(f"unexpected {_names(unexpected)}")
    if shapes:
        found.append(f"wrong shape {_names(shapes)}")
    if found:
        raise WeightsError(f"model.weights: {source} does not fit this model: {'; '.join(found)}")
    net.load_state_dict(body, strict=False)
    return net


def hub_folder() -> Path:
    """Where torch keeps downloaded weights (torch's hub cache)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def imagenet_resnet18() -> dict[str, torch.Tensor]:
    """torchvision's ImageNet weights of ResNet-18: from torch's hub cache, downloaded there the
    first time."""
    from torchvision.models import ResNet18_Weights

    weights = ResNet18_Weights.IMAGENET1K_V1
    try:
        return weights.get_state_dict(progress=False, check_hash=True)
    except Exception as e:
        cache = hub_folder() / Path(weights.url).name
        raise WeightsError(
            f"model.weights: could not fetch ResNet-18's ImageNet weights from {weights.url} "
            f"({type(e).__name__}: {e}). Offline, download that file elsewhere and either put it "
            f"at {cache} or pass model.weights=/path/to/{Path(weights.url).name}"
        ) from None
