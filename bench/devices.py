"""The machine a run lands on: the accelerators and devices it has, Lightning's precision
values, how many processes train, and the ``auto`` trainer values settled for the device.
(The torch and Lightning imports are inside the functions: the config's value checks stay
torch-free.)"""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bench import spec
from bench.rules import COUNT, integer

ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps")
DEVICES = 'an integer >= 1, -1 (all), "auto", or a list of distinct device indices, e.g. [0, 1]'


def problems(trainer: Mapping[str, Any]) -> list[str]:
    """``trainer.accelerator``, ``trainer.devices`` and ``trainer.precision`` against this
    machine and Lightning."""
    import torch

    found = []
    accelerator = trainer.get("accelerator", "auto")
    if accelerator not in ACCELERATORS:
        pass  # a value no machine has: bench.config.problems names it
    elif accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        found.append(
            f"trainer.accelerator: got {accelerator!r} but this machine has no CUDA GPU; "
            "allowed here: auto, cpu"
        )
    elif accelerator == "mps" and not torch.backends.mps.is_available():
        found.append(
            "trainer.accelerator: got 'mps' but MPS is not available here; allowed here: auto, cpu"
        )
    else:
        found += devices_problems(trainer.get("devices", "auto"), accelerator)
    if "precision" in trainer:
        found += precision_problems(trainer["precision"])
    return found


def literals(hint: Any) -> list[Any]:
    """The values a type hint made of ``Literal``s (in ``Union``s, ``Optional``s) allows."""
    if typing.get_origin(hint) is typing.Literal:
        return list(typing.get_args(hint))
    return [v for arg in typing.get_args(hint) for v in literals(arg)]


@functools.cache
def precisions() -> tuple[Any, ...]:
    """The ``precision`` values that ``pytorch_lightning.Trainer`` accepts, read from its
    signature's type (so they follow the installed Lightning)."""
    import pytorch_lightning as pl

    try:
        hint = typing.get_type_hints(pl.Trainer.__init__)["precision"]
    except Exception:  # an annotation that does not resolve: read it as written
        hint = inspect.signature(pl.Trainer.__init__).parameters["precision"].annotation
    return tuple(literals(hint))


def precision_problems(value: Any) -> list[str]:
    allowed = precisions()
    if value is None or value == "auto" or not allowed:
        return []
    # (Lightning compares with ==, which lets 16.0 or True through to fail later.)
    if any(type(value) is type(a) and value == a for a in allowed):
        return []
    shown = list(dict.fromkeys(str(a) for a in allowed))
    return [
        f"trainer.precision: got {value!r}; allowed: auto (bf16-mixed on a CUDA GPU, else "
        f"32-true), {', '.join(shown)} (Lightning's precision values; 16 and bf16 stand for "
        "16-mixed and bf16-mixed)"
    ]


def device_list(devices: Any) -> list[int] | int | str | None:
    """``devices`` as Lightning reads it: "auto", an int, or a list of indices (a string of
    comma-separated indices too); None when it is none of these."""
    if isinstance(devices, str) and devices.strip() != "auto":
        parts = [p.strip() for p in devices.split(",") if p.strip()]
        try:
            numbers = [int(p) for p in parts]
        except ValueError:
            return None
        return numbers if "," in devices else (numbers[0] if numbers else None)
    if isinstance(devices, list | tuple):
        return list(devices) if all(integer(d) for d in devices) else None
    return devices if devices == "auto" or integer(devices) else None


def devices_problems(devices: Any, accelerator: str) -> list[str]:
    """``trainer.devices`` against what Lightning takes and, on a GPU, this machine's GPUs."""
    import torch

    parsed = device_list(devices)
    if (
        parsed is None
        or integer(parsed)
        and not (parsed >= 1 or parsed == -1)
        or isinstance(parsed, list)
        and (not parsed or min(parsed) < 0 or len(set(parsed)) < len(parsed))
    ):
        return [f"trainer.devices: got {devices!r}; allowed: {DEVICES}"]
    if accelerator == "auto":
        accelerator = "cuda" if torch.cuda.is_available() else "cpu"
        if accelerator == "cpu" and torch.backends.mps.is_available():
            accelerator = "mps"
    if accelerator == "cpu":
        if parsed != "auto" and not (integer(parsed) and parsed >= 1):
            return [
                f"trainer.devices: got {devices!r} on the CPU; allowed: an integer >= 1 "
                '(processes) or "auto"'
            ]
        return []
    count = torch.cuda.device_count() if accelerator in ("gpu", "cuda") else 1
    name = "CUDA GPU" if accelerator in ("gpu", "cuda") else "MPS device"
    asked = (
        list(range(parsed))
        if integer(parsed) and parsed >= 1
        else (parsed if isinstance(parsed, list) else [])
    )
    if any(d >= count for d in asked):
        return [
            f"trainer.devices: got {devices!r} but this machine has {count} {name}"
            f"{'s' * (count != 1)}; allowed here: an integer in [1, {count}], -1 (all), "
            f'"auto", or a list of indices in [0, {count - 1}]'
        ]
    return []


def world_size(trainer: Mapping[str, Any]) -> int | None:
    """How many processes train (devices x nodes), as Lightning will resolve it on this
    machine; None when the values are not ones it takes."""
    import torch

    devices = device_list(trainer.get("devices", "auto"))
    nodes = trainer.get("num_nodes", 1)
    accelerator = trainer.get("accelerator", "auto")
    gpu = accelerator in ("gpu", "cuda") or accelerator == "auto" and torch.cuda.is_available()
    if devices is None or not COUNT[0](nodes):
        return None
    if isinstance(devices, list):
        n = len(devices)
    elif devices == "auto" or devices == -1:
        n = torch.cuda.device_count() if gpu else 1
    else:
        n = devices
    return n * nodes


def cpu() -> str:
    """The CPU, named closely enough to tell where the same seed gives the same run: its model
    name, and on Linux its family and model numbers (a virtual machine may show only "AMD EPYC"
    for several generations), with the kernel set torch picks for it (AVX2, AVX512, ...)."""
    import platform

    import torch

    name, details = platform.processor() or platform.machine(), []
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        first = cpuinfo.read_text().split("\n\n")[0]  # one block per core, all alike
        pairs = (line.split(":", 1) for line in first.splitlines() if ":" in line)
        fields = {key.strip(): value.strip() for key, value in pairs}
        name = fields.get("model name", name)
        if "cpu family" in fields and "model" in fields:
            details.append(f"family {fields['cpu family']} model {fields['model']}")
    details.append(f"torch kernels {torch.backends.cpu.get_cpu_capability()}")
    return f"{name} ({', '.join(details)})"


def uses_cuda(trainer: Mapping[str, Any]) -> bool:
    """Whether a run of this ``trainer`` node will land on a CUDA GPU."""
    import torch

    accelerator = trainer.get("accelerator", "auto")
    return accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available()


def settle(run: spec.RunSpec) -> spec.RunSpec:
    """``run`` with its trainer's ``auto`` values settled for this machine
    (``device_settings``)."""
    import dataclasses

    import torch

    cuda = uses_cuda(run.trainer)
    bf16 = False
    if cuda:  # native bf16 on the run's GPU (an emulated one is slower than float16)
        devices = run.trainer.get("devices")
        with torch.cuda.device(devices[0] if isinstance(devices, list) else 0):
            bf16 = torch.cuda.is_bf16_supported(including_emulation=False)
    settled = device_settings({**run.trainer, **run.own["trainer"]}, cuda, bf16)
    trainer, own = spec.split(settled, "trainer")
    return dataclasses.replace(run, trainer=trainer, own={**run.own, "trainer": own})


def device_settings(trainer: Mapping[str, Any], cuda: bool, bf16: bool) -> dict[str, Any]:
    """The ``trainer`` node with its ``auto`` values settled for the device. On a CUDA GPU:
    ``precision`` bf16-mixed (16-mixed on a GPU without bf16), ``channels_last`` true,
    ``deterministic`` false with cuDNN's autotuner on (``benchmark``). Elsewhere: 32-true, false,
    true, so that a CPU run's numbers are those of a plain float32 run. Pure."""
    settled = dict(trainer)
    if settled.get("precision") == "auto":
        settled["precision"] = ("bf16-mixed" if bf16 else "16-mixed") if cuda else "32-true"
    if settled.get("channels_last") == "auto":
        settled["channels_last"] = cuda
    if settled.get("deterministic") == "auto":
        settled["deterministic"] = not cuda
        if cuda and settled.get("benchmark") is None:
            settled["benchmark"] = True
    return settled
