"""Networks, as plain ``torch.nn`` modules, and the factories the configs name.

Every factory takes what the data decides (``num_classes``, ``in_channels``, and for some
``image_size``) plus its own knobs, and ``weights``: ``none`` (random initialisation),
``imagenet`` (torchvision's, ResNet-18 only) or a weights file (``bench.models.weights``).
Every network's head is its ``fc`` layer.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence

from torch import nn

from bench.models import weights as weights_io
from bench.models.resnet import STEMS, ResNet
from bench.models.small_cnn import SmallCNN
from bench.models.weights import WeightsError

__all__ = ["STEMS", "ResNet", "SmallCNN", "WeightsError", "resnet", "small_cnn", "with_weights"]


def with_weights(net: nn.Module, weights: str) -> nn.Module:
    """``net`` with the starting ``weights`` (``none`` or a file path) loaded."""
    if weights == "none":
        return net
    return weights_io.load(net, weights_io.read(weights), source=str(weights))


def small_cnn(
    num_classes: int, in_channels: int, image_size: int, width: int = 16, weights: str = "none"
) -> SmallCNN:
    return with_weights(SmallCNN(num_classes, in_channels, image_size, width), weights)


def resnet(
    num_classes: int,
    in_channels: int = 3,
    stem: str = "imagenet",
    width: int = 64,
    blocks: Sequence[int] = (2, 2, 2, 2),
    weights: str = "none",
) -> ResNet:
    """A ResNet in torchvision's layout; ``width=64, blocks=[2, 2, 2, 2]`` is ResNet-18."""
    net = ResNet(num_classes, in_channels, stem, width, tuple(blocks))
    if weights != "imagenet":
        return with_weights(net, weights)
    if (width, tuple(blocks), in_channels) != (64, (2, 2, 2, 2), 3):
        raise WeightsError(
            "model.weights: imagenet weights exist for ResNet-18 only (width=64, "
            f"blocks=[2, 2, 2, 2], 3 input channels); this model has width={width}, "
            f"blocks={list(blocks)}, {in_channels} input channel(s)"
        )
    return weights_io.load(net, weights_io.imagenet_resnet18(), source="imagenet (ResNet-18)")


def build(model: dict, num_classes: int, in_channels: int, image_size: int) -> nn.Module:
    """Call the factory a ``model`` config names (``_target_``) with its knobs and what it takes
    from the data: the class count, the input channels and, for the networks that need it, the
    image size."""
    from hydra.utils import get_object

    factory = get_object(model["_target_"])
    given = {"num_classes": num_classes, "in_channels": in_channels, "image_size": image_size}
    parameters = inspect.signature(factory).parameters
    accepted = set(parameters)
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        # torchvision's builders (resnet18(*, weights, progress, **kwargs)) hand **kwargs to the
        # model's class, which takes num_classes: the head must fit the data.
        accepted.add("num_classes")
    knobs = {k: v for k, v in model.items() if not k.startswith("_")}
    return factory(**knobs, **{k: v for k, v in given.items() if k in accepted})


def output_problem(net: nn.Module, target: str, num_classes: int, example) -> str | None:
    """Why ``net`` cannot classify the data, judged on one ``example`` batch: its output must be
    ``batch x num_classes``; None when it is."""
    import torch

    try:
        with torch.no_grad():
            out = net.eval()(example)
    except Exception as e:
        return (
            f"model._target_={target}: the model fails on a batch of the data "
            f"(inputs {tuple(example.shape)}): {type(e).__name__}: {e}"
        )
    finally:
        net.train()
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (len(example), num_classes):
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        return (
            f"model._target_={target}: its output for a batch of {len(example)} is {shape}, but "
            f"the data has {num_classes} classes: expected ({len(example)}, {num_classes}). Give "
            "the model a head of num_classes outputs (bench passes num_classes to a factory that "
            "takes it, or takes **kwargs)"
        )
    return None
