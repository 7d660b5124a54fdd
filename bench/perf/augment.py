"""``augment``: training-batch throughput, batches cut on the device against a DataLoader
pipeline."""

from __future__ import annotations

import statistics
import tempfile
import time

import pandas as pd

from bench.perf.common import AUGMENT_SPEEDUP_TARGET, Part, measure, say, write_cifar10


class _Placed:
    """What a data module asks of a Trainer to find the run's device."""

    def __init__(self, device):
        self.strategy = type("Strategy", (), {"root_device": device})()
        self.training = True


def time_augment(images: int, batch: int, workers: int, threads: int, repeats: int) -> Part:
    import torch

    import bench.data

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.set_num_threads(threads)
    rows = []
    val = 1000 if images >= 20_000 else 100
    with tempfile.TemporaryDirectory(prefix="perf-augment-") as scratch:
        say(f"augment: writing {images + val:,} random 32x32 images")
        root = write_cifar10(scratch, train=images + val, test=100)
        paths = [("device-resident", {"on_device": True})]
        paths += [("DataLoader", {"on_device": False, "num_workers": workers})]
        for name, kw in paths:
            dm = bench.data.CIFAR10DataModule(root=str(root), batch_size=batch, val_size=val, **kw)
            if device.type != "cpu":
                dm.trainer = _Placed(device)
            dm.setup("fit")
            loader = dm.train_dataloader()
            seconds, count = [], 0
            for i in range(max(repeats, 1)):
                say(f"augment: {name}, epoch {i + 1}/{max(repeats, 1)}")
                count = 0
                start = time.perf_counter()
                for x, y in loader:
                    x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
                    prepared = dm.prepare_batch((x, y), train=True)
                    x = prepared[0] if isinstance(prepared, tuple | list) else prepared
                    count += len(y)
                if device.type == "cuda":
                    torch.cuda.synchronize()
                seconds.append(time.perf_counter() - start)
            del loader  # its workers end with it
            rows.append(
                {
                    "path": name,
                    "workers": kw.get("num_workers", 0),
                    "images": count,
                    "batch": batch,
                    "epochs": len(seconds),
                    "epoch s": statistics.median(seconds),
                    "first epoch s": seconds[0],
                    "images/s": count / statistics.median(seconds),
                    "shape": "x".join(str(s) for s in x.shape[1:]),
                    "dtype": str(x.dtype).removeprefix("torch."),
                }
            )
    table = pd.DataFrame(rows)
    device_rate, loader_rate = table["images/s"]
    speedup = device_rate / loader_rate
    table["vs DataLoader"] = table["images/s"] / loader_rate
    where = torch.cuda.get_device_name(0) if device.type == "cuda" else "CPU"
    summary = [
        measure("augmentation, device-resident (images/s)", device_rate),
        measure(f"augmentation, DataLoader with {workers} workers (images/s)", loader_rate),
        measure(
            "augmentation: device-resident / DataLoader",
            speedup,
            f">= {AUGMENT_SPEEDUP_TARGET:g}",
            speedup >= AUGMENT_SPEEDUP_TARGET,
            why=(
                f"{1000 * batch / device_rate:.2f} ms per batch of {batch} on the device path: "
                "cutting the batch from the data, the crop (one gather of whole windows), the "
                "flip and the normalisation (`bench/data/augment.py`); a small batch pays the "
                "ops' fixed costs more often"
            ),
        ),
    ]
    say(f"augment: {device_rate:,.0f} against {loader_rate:,.0f} images/s")
    return Part(
        "augment",
        f"Augmentation throughput, training batches (crop, flip, normalise) on the {where}",
        table,
        about=(
            f"`bench.data.CIFAR10DataModule` on random 32x32 uint8 images, batches of {batch}: "
            "one epoch is iterating `train_dataloader()` and `prepare_batch(batch, train=True)` "
            "on every batch. `device-resident`: `on_device=True`, batches cut from the tensors "
            "on the device and augmented whole; `DataLoader`: `on_device=False`, torchvision's "
            f"per-image transforms in worker processes. {threads} torch thread(s) in this "
            "process. `epoch s` is the median over the epochs of one loader; `first epoch s` "
            "includes starting the workers."
        ),
        summary=summary,
    )
