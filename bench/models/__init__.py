"""Networks, as plain ``torch.nn`` modules, and the factories the configs name.

**The model contract.** A model is any callable (a function or a class, named by
``model._target_``) that returns an ``nn.Module`` mapping a batch of the data's inputs to
``batch x num_classes`` logits. It is called with its config node's keys, plus what the data
decides where it takes them: ``num_classes`` always (a factory with ``**kwargs``, as
torchvision's builders have, gets it too), ``in_channels`` and ``image_size`` where the data
says them (``bench.data.contract``). Before any run the model is built and one batch of the data
is passed through it (``problems``): a model that fails on the data's inputs, or whose output is
not ``num_classes`` wide, is refused with the reason.

**The head** is the layer that two-stage fine-tuning trains first, that ``backbone_lr_mult``
leaves at the full LR, and that starting weights never load (it is new for the data's classes):
``finetune.head`` names it (a dotted module name, e.g. ``classifier.6``); unset, it is ``fc``
where the network has one, else its last ``nn.Linear`` (``head_of``).

Factories here: ``resnet`` and ``small_cnn`` (bench's own), ``torchvision_model`` and
``timm_model`` (any classification model of those libraries by name). Each takes ``weights``:
``none`` (random initialisation), ``imagenet`` (the library's pretrained weights, downloaded once)
or a weights file (``bench.models.weights``).
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence

from torch import nn

from bench.models import weights as weights_io
from bench.models.resnet import STEMS, ResNet
from bench.models.small_cnn import SmallCNN
from bench.models.weights import WeightsError
from bench.rules import COUNT, NAME, checked, one_of

__all__ = [
    "STEMS",
    "ResNet",
    "SmallCNN",
    "WeightsError",
    "head_of",
    "problems",
    "resnet",
    "small_cnn",
    "timm_model",
    "torchvision_model",
    "with_weights",
]


def head_of(net: nn.Module, name: str | None = None) -> str:
    """The name of ``net``'s head: ``name`` if given, else ``fc`` where the network has it,
    else its last ``nn.Linear``; ``ValueError`` when there is none or no module of that name."""
    modules = dict(net.named_modules())
    if name is not None:
        if name not in modules or not name:
            raise ValueError(name)
        return name
    if isinstance(modules.get("fc"), nn.Module):
        return "fc"
    linear = [n for n, m in modules.items() if isinstance(m, nn.Linear)]
    if not linear:
        raise ValueError(name)
    return linear[-1]


def replace_head(net: nn.Module, num_classes: int) -> nn.Module:
    """``net`` with its head (``head_of``, an ``nn.Linear``) replaced by a new one of
    ``num_classes`` outputs, randomly initialised."""
    name = head_of(net)
    old = net.get_submodule(name)
    parent, _, leaf = name.rpartition(".")
    new = nn.Linear(old.in_features, num_classes, bias=old.bias is not None)
    setattr(net.get_submodule(parent) if parent else net, leaf, new)
    return net


def with_weights(net: nn.Module, weights: str) -> nn.Module:
    """``net`` with the starting ``weights`` (``none`` or a file path) loaded, all but its
    head."""
    if weights == "none":
        return net
    head = head_of(net) + "."
    return weights_io.load(net, weights_io.read(weights), source=str(weights), head=head)


BLOCKS = (
    lambda x: isinstance(x, list | tuple) and len(x) >= 1 and all(COUNT[0](b) for b in x),
    "a list of integers >= 1, blocks per stage, e.g. [2, 2, 2, 2]",
)


@checked(width=COUNT, weights=NAME)
def small_cnn(
    num_classes: int, in_channels: int, image_size: int, width: int = 16, weights: str = "none"
) -> SmallCNN:
    return with_weights(SmallCNN(num_classes, in_channels, image_size, width), weights)


@checked(stem=one_of(*STEMS), width=COUNT, blocks=BLOCKS, weights=NAME)
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


@checked(name=NAME, weights=NAME)
def torchvision_model(name: str, num_classes: int, weights: str = "none", **kwargs) -> nn.Module:
    """torchvision's classification model ``name`` (``torchvision.models.list_models``), with
    ``num_classes`` outputs; ``weights=imagenet`` starts from its default pretrained weights
    (downloaded once into torch's hub cache) with a new head. ``kwargs`` go to the builder."""
    from torchvision import models as tv

    if weights == "none":
        return tv.get_model(name, weights=None, num_classes=num_classes, **kwargs)
    if weights == "imagenet":
        try:
            net = tv.get_model(name, weights="DEFAULT", **kwargs)
        except Exception as e:
            raise WeightsError(
                f"model.weights: could not fetch torchvision's pretrained weights of {name} "
                f"({type(e).__name__}: {e}). Offline, put the file in "
                f"{weights_io.hub_folder()} or pass model.weights=/path/to/a/weights/file"
            ) from None
        return replace_head(net, num_classes)
    net = tv.get_model(name, weights=None, num_classes=num_classes, **kwargs)
    return with_weights(net, weights)


@checked(name=NAME, weights=NAME)
def timm_model(
    name: str, num_classes: int, in_channels: int = 3, weights: str = "none", **kwargs
) -> nn.Module:
    """timm's model ``name`` (``timm.list_models()``; ``pip install 'bench[timm]'``), built by
    ``timm.create_model`` with ``num_classes`` outputs and ``in_channels`` input channels;
    ``weights=imagenet`` starts from its default pretrained weights (downloaded once) with a new
    head. ``kwargs`` go to ``create_model``."""
    import timm

    pretrained = weights == "imagenet"
    try:
        net = timm.create_model(
            name, pretrained=pretrained, num_classes=num_classes, in_chans=in_channels, **kwargs
        )
    except Exception as e:
        if not pretrained:
            raise
        raise WeightsError(
            f"model.weights: could not fetch timm's pretrained weights of {name} "
            f"({type(e).__name__}: {e}); offline, pass model.weights=/path/to/a/weights/file"
        ) from None
    return net if weights in ("none", "imagenet") else with_weights(net, weights)


# The factories that build a library's model by its name, and where the names are listed.
BY_NAME = {
    "bench.models.torchvision_model": "torchvision",
    "bench.models.timm_model": "timm",
}


def names(library: str) -> list[str]:
    """The classification models ``library`` (torchvision or timm) builds by name."""
    if library == "torchvision":
        from torchvision import models as tv

        return list(tv.list_models(module=tv))
    import timm

    return list(timm.list_models())


def name_problems(model: dict) -> list[str]:
    """``model.name`` against the models its library has, with the nearest names; and timm
    missing, where a config names it."""
    from bench.rules import did_you_mean

    library = BY_NAME.get(model.get("_target_"))
    if library is None:
        return []
    try:
        known = names(library)
    except ImportError:
        return [
            f"model._target_={model['_target_']}: needs the timm package, which is not "
            "installed: pip install 'bench[timm]' (or pip install timm)"
        ]
    name = model.get("name")
    if name in known:
        return []
    listing = f"python -c \"import bench.models as m; print(m.names('{library}'))\""
    return [
        f"model.name: got {name!r}, not one of {library}'s {len(known)} classification models;"
        f"{did_you_mean(name, known)} (the list: {listing})"
    ]


def build(model: dict, shape) -> nn.Module:
    """Call the factory a ``model`` config names (``_target_``) with its knobs and what it takes
    from the data (``shape``, a ``bench.data.Shape``): the class count always, the input
    channels and the image size where the data says them and the factory takes them."""
    from hydra.utils import get_object

    factory = get_object(model["_target_"])
    given = {k: v for k, v in shape._asdict().items() if v is not None}
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


def problems(model: dict, shape, example, head: str | None = None, needs_head: bool = False):
    """What stops ``model`` (a config node without bench's own keys) from training on data of
    ``shape``: it cannot be built (its starting weights included), fails on the ``example``
    inputs (None: not checked), gives other than ``num_classes`` outputs, or, where
    ``needs_head`` (two-stage fine-tuning, ``backbone_lr_mult``), has no head of the name
    ``head``."""
    target = model["_target_"]
    try:
        net = build(model, shape)
    except WeightsError as e:
        return [str(e)]
    except Exception as e:
        return [f"model._target_={target}: building it failed: {type(e).__name__}: {e}"]
    if not isinstance(net, nn.Module):
        return [f"model._target_={target}: returned a {type(net).__name__}, not a torch nn.Module"]
    found = []
    if example is not None:
        problem = output_problem(net, target, shape.num_classes, example)
        if problem:
            found.append(problem)
    if needs_head:
        try:
            head_of(net, head)
        except ValueError:
            children = [n for n, _ in net.named_children()]
            found.append(
                f"finetune.head: got {head!r}, but the model has no module of that name"
                + (" and no nn.Linear layer" if head is None else "")
                + f"; allowed: one of its modules, e.g. {', '.join(children[-3:]) or 'none'} "
                "(dotted names reach inside: classifier.6)"
            )
    return found
