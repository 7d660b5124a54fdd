"""``gpu``: the headline run, ResNet-18 from scratch on CIFAR-10 (``experiment=cifar10_scratch``),
on one CUDA GPU: seconds per epoch and images/s of a bench run against the bare PyTorch loop of
``bench.perf.train`` on the same GPU, the GPU's busy share, peak memory, per variant (float32,
bf16, channels_last, torch.compile with its compile time apart); then N runs sharing the GPU
(``hydra/launcher=gpus launch.jobs_per_gpu=N``, under CUDA MPS where the machine has it) as
aggregate images/s against one run alone.

Without CUDA the part is skipped (one summary line says so). ``device="cpu"`` runs the same code
on the CPU, at the sizes a caller gives (the tests do, on a small network)."""

from __future__ import annotations

import contextlib
import os
import shutil
import statistics
import subprocess
import tempfile
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from mlflow.tracking import MlflowClient

from bench import tracking
from bench.perf.common import Part, compose, measure, say, write_cifar10
from bench.perf.sweep import bench_train
from bench.perf.train import bare_run, bench_run

# airbench's published figure: a standard ResNet-18 to 96% on CIFAR-10 in 7 minutes on one A100,
# about 2.1 s per epoch; the target is twice that, per epoch of the cifar10_scratch run.
AIRBENCH_EPOCH_S = 2.1
EPOCH_TARGET_S = 2 * AIRBENCH_EPOCH_S
RATIO_TARGET = 1.05  # bench / bare, seconds per epoch
PACKING_TARGET = 1.5  # N runs sharing the GPU: aggregate images/s over one run's


# The variants: name -> overrides of the trainer (bench's GPU default is bf16 + channels_last).
VARIANTS = {
    "fp32": ["trainer.precision=32-true", "trainer.channels_last=false"],
    "bf16": ["trainer.precision=bf16-mixed", "trainer.channels_last=false"],
    "bf16 + channels_last": ["trainer.precision=bf16-mixed", "trainer.channels_last=true"],
    "bf16 + channels_last + compile": [
        "trainer.precision=bf16-mixed",
        "trainer.channels_last=true",
        "trainer.compile=true",
    ],
}


def overrides(epochs: int, root: Path, extra: Sequence[str] = ()) -> list[str]:
    """The cifar10_scratch run cut to ``epochs``, reading CIFAR-10 at ``root``."""
    found = ["experiment=cifar10_scratch", f"data.root={root}", f"trainer.max_epochs={epochs}"]
    found += ["trainer.enable_progress_bar=false"]
    if (root / "train").is_dir():
        found += ["data=image_folder"]
    return [*found, *extra]


class BusySampler:
    """The GPU's utilisation (``nvidia-smi``, every ``every`` seconds) while the ``with`` block
    runs: ``mean`` in %, NaN where nvidia-smi is missing or answered nothing."""

    def __init__(self, index: int = 0, every: float = 0.2):
        self.command = shutil.which("nvidia-smi")
        self.index, self.every = index, every
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        query = ["--query-gpu=utilization.gpu", "--format=csv,noheader,nounits"]
        while not self._stop.wait(self.every):
            done = subprocess.run(
                [self.command, *query, "-i", str(self.index)], capture_output=True, text=True
            )
            with contextlib.suppress(ValueError):
                self.samples.append(float(done.stdout.strip().splitlines()[0]))

    def __enter__(self) -> BusySampler:
        if self.command:
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    @property
    def mean(self) -> float:
        return statistics.fmean(self.samples) if self.samples else float("nan")


def epoch_seconds(uri: str, experiment_id: str) -> tuple[float, list[float], int]:
    """The experiment's latest run: its first epoch (from its start) and the seconds of each
    later one, from the times its ``val_acc`` points were written (one per epoch, after its
    validation pass), and its training images (its ``n_train`` param)."""
    mc = MlflowClient(uri)
    [run] = mc.search_runs([experiment_id], order_by=["attributes.start_time DESC"], max_results=1)
    history = mc.get_metric_history(run.info.run_id, "val_acc")
    stamps = [run.info.start_time] + [m.timestamp for m in sorted(history, key=lambda m: m.step)]
    seconds = list(np.diff(stamps) / 1000)
    return seconds[0], seconds[1:], int(run.data.params["n_train"])


def time_variant(name: str, config: dict, uri: str, experiment_id: str, folder: Path) -> dict:
    """One variant: a bench run (epoch times from its store, busy %, peak memory) and the bare
    loop's epoch times (none for compile: the bare loop does not compile)."""
    import torch

    cuda = torch.cuda.is_available() and config["trainer"].get("accelerator") != "cpu"
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    with BusySampler() if cuda else contextlib.nullcontext() as busy:
        bench = bench_run(config, uri, experiment_id, folder)
    peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else float("nan")
    first, later, images = epoch_seconds(uri, experiment_id)
    bench_epoch = statistics.median(later) if later else first
    bare_epoch, bare = float("nan"), {}
    if not config["trainer"].get("compile"):
        bare = bare_run(config)
        bare_epoch = statistics.median(bare["epoch_s"][1:] or bare["epoch_s"])
    return {
        "variant": name,
        "epochs": config["trainer"]["max_epochs"],
        "train images": images,
        "bench s/epoch": bench_epoch,
        "bench images/s": images / bench_epoch,
        "bare s/epoch": bare_epoch,
        "bare images/s": images / bare_epoch,
        "bench/bare": bench_epoch / bare_epoch,
        # The first epoch beyond a later one: start-up, cuDNN's autotuning, compiling.
        "first epoch extra s": first - bench_epoch,
        "GPU busy %": busy.mean if cuda else float("nan"),
        "peak memory GiB": peak,
        "val acc %": 100 * bench["val_acc"],
    }


@contextlib.contextmanager
def mps_daemon(folder: Path) -> Iterator[bool]:
    """CUDA MPS for the block where ``nvidia-cuda-mps-control`` is installed (yields whether it
    runs): its pipes and log in ``folder``, stopped after."""
    control = shutil.which("nvidia-cuda-mps-control")
    if control is None:
        yield False
        return
    env = {
        **os.environ,
        "CUDA_MPS_PIPE_DIRECTORY": str(folder / "mps-pipe"),
        "CUDA_MPS_LOG_DIRECTORY": str(folder / "mps-log"),
    }
    for key in ("CUDA_MPS_PIPE_DIRECTORY", "CUDA_MPS_LOG_DIRECTORY"):
        Path(env[key]).mkdir(parents=True, exist_ok=True)
    started = subprocess.run([control, "-d"], env=env, capture_output=True).returncode == 0
    saved = {k: os.environ.get(k) for k in ("CUDA_MPS_PIPE_DIRECTORY", "CUDA_MPS_LOG_DIRECTORY")}
    os.environ.update({k: env[k] for k in saved})
    try:
        yield started
    finally:
        if started:
            subprocess.run([control], input="quit\n", text=True, env=env, capture_output=True)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def time_packing(jobs: int, argv: list[str], folder: Path, mps: bool) -> dict:
    """``jobs`` cosine runs (seeds 0..jobs-1) of ``argv`` sharing one GPU through the gpus launcher:
    aggregate training images/s from the first run's start to the last run's end."""
    uri = f"sqlite:///{folder / f'packed-{jobs}.db'}"
    seeds = ",".join(map(str, range(jobs)))
    command = [*bench_train(), "-m", *argv, "schedule=cosine", f"seed={seeds}"]
    command += ["hydra/launcher=gpus", f"launch.jobs_per_gpu={jobs}", "report.after_sweep=false"]
    command += [f"tracking.uri={uri}", "tracking.experiment=perf-gpu-packed"]
    command += [f"hydra.sweep.dir={folder / f'multirun-{jobs}'}"]
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    with mps_daemon(folder) if mps else contextlib.nullcontext(False) as under_mps:
        say(f"gpu: {jobs} run(s) sharing the GPU{' under MPS' * bool(under_mps)}")
        done = subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"{' '.join(command)} failed:\n{(done.stdout + done.stderr)[-3000:]}")
    mc = MlflowClient(uri)
    experiment = mc.get_experiment_by_name("perf-gpu-packed").experiment_id
    runs = mc.search_runs([experiment], f"tags.`{tracking.KIND_TAG}` = 'run'")
    if len(runs) != jobs or any(r.info.status != "FINISHED" for r in runs):
        raise RuntimeError(f"the packed sweep left {len(runs)} runs, not {jobs} finished ones")
    images = sum(
        int(r.data.params["n_train"]) * int(r.data.params["trainer.max_epochs"]) for r in runs
    )
    span = (max(r.info.end_time for r in runs) - min(r.info.start_time for r in runs)) / 1000
    return {"runs": jobs, "MPS": bool(under_mps), "span s": span, "images/s": images / span}


def time_gpu(
    epochs: int,
    variants: Sequence[str],
    jobs: Sequence[int],
    cifar_root: str | None,
    mps: bool = False,
    device: str = "cuda",
    extra: Sequence[str] = (),
) -> list[Part]:
    """The parts: each variant (``gpu``), then the runs sharing the GPU per count in ``jobs``
    against 1 alone (``gpu_shared``, when ``jobs``). ``extra``: overrides after the preset's
    (smaller sizes, a CPU try-out)."""
    import torch

    title = "ResNet-18 on CIFAR-10 on a GPU: bench against a bare loop, per variant"
    if device == "cuda" and not torch.cuda.is_available():
        say("gpu: skipped (no CUDA device here)")
        skipped = measure("GPU part: skipped, no CUDA device here", float("nan"))
        return [Part("gpu", title, pd.DataFrame(), f"{skipped['measure']}.", [skipped])]
    unknown = sorted(set(variants) - set(VARIANTS))
    if unknown:
        raise SystemExit(f"perf gpu: unknown variant(s) {unknown}; allowed: {', '.join(VARIANTS)}")
    pin = [] if device == "cuda" else ["trainer.accelerator=cpu"]
    rows, packed, summary = [], [], []
    with tempfile.TemporaryDirectory(prefix="perf-gpu-") as scratch:
        folder = Path(scratch)
        root = Path(cifar_root).resolve() if cifar_root else None
        if root is None:
            say("gpu: writing a CIFAR-10 of random images in torchvision's layout (50,000)")
            root = write_cifar10(folder / "cifar10", train=50_000, test=10_000)
        uri = f"sqlite:///{folder / 'mlflow.db'}"
        experiment_id = tracking.ensure_experiment(uri, "perf-gpu")
        base = overrides(epochs, root, [*pin, *extra])
        for name in variants:
            say(f"gpu: {name}")
            config = compose([*base, *VARIANTS[name]])
            rows.append(time_variant(name, config, uri, experiment_id, folder))
        counts = sorted(set(jobs) | {1}) if jobs else []
        for n in counts:
            packed.append(time_packing(n, base, folder, mps and n > 1))
    for row in rows:
        what = f"cifar10_scratch {row['variant']}"
        summary.append(
            measure(
                f"{what}: s per epoch",
                row["bench s/epoch"],
                f"<= {EPOCH_TARGET_S:.1f}",
                row["bench s/epoch"] <= EPOCH_TARGET_S,
                why=f"{row['bench images/s']:,.0f} images/s; GPU busy {row['GPU busy %']:.0f}%",
            )
        )
        if np.isfinite(row["bench/bare"]):
            summary.append(
                measure(
                    f"{what}: bench / bare (s per epoch)",
                    row["bench/bare"],
                    f"<= {RATIO_TARGET:.2f}",
                    row["bench/bare"] <= RATIO_TARGET,
                    why=f"bare loop {row['bare s/epoch']:.2f} s per epoch on the same device",
                )
            )
    shared = []
    if packed:
        alone = packed[0]["images/s"]
        for entry in packed:
            entry["vs one run"] = entry["images/s"] / alone
        for entry in packed[1:]:
            shared.append(
                measure(
                    f"{entry['runs']} runs sharing the GPU: aggregate images/s over one run's",
                    entry["vs one run"],
                    f">= {PACKING_TARGET:g}",
                    entry["vs one run"] >= PACKING_TARGET,
                    why=f"{entry['images/s']:,.0f} against {alone:,.0f} images/s alone",
                )
            )
    where = torch.cuda.get_device_name(0) if device == "cuda" else "the CPU"
    parts = [
        Part(
            "gpu",
            title,
            pd.DataFrame(rows),
            about=(
                f"On {where}. Each variant: one `experiment=cifar10_scratch` run cut to {epochs} "
                "epochs (`bench.run.train` in-process, into a SQLite store), its seconds per "
                "epoch the median of epochs 2 on (from the times its `val_acc` points were "
                "written, a validation pass included), `first epoch extra s` what the first "
                "epoch took beyond a later one (start-up, cuDNN's autotuner, torch.compile), "
                "`GPU busy %` the mean of nvidia-smi's utilisation sampled every 0.2 s during "
                "the run, peak memory from `torch.cuda.max_memory_allocated`; the bare loop of "
                "`bench.perf.train` on the same device, its seconds per epoch the same way (no "
                "bare loop for compile). Random images unless a CIFAR-10 root was given. Target "
                f"per epoch: 2x airbench's {AIRBENCH_EPOCH_S} s on an A100."
            ),
            summary=summary,
        )
    ]
    if packed:
        parts.append(
            Part(
                "gpu_shared",
                "Runs sharing one GPU: aggregate throughput",
                pd.DataFrame(packed),
                about=(
                    f"On {where}. `runs` cosine runs of the cifar10_scratch run cut to {epochs} "
                    "epochs, a `bench-train -m` sweep (`hydra/launcher=gpus "
                    "launch.jobs_per_gpu=N`, seeds 0..N-1; under CUDA MPS where `MPS` says so): "
                    "the training images of all of them over the time from the first run's start "
                    "to the last one's end (MLflow's), against one run alone."
                ),
                summary=shared,
            )
        )
    return parts
