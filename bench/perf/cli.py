"""``python -m bench.perf``: the parts chosen, their tables and the summary, ``perf.md``."""

from __future__ import annotations

import argparse
import datetime
import os
import sys
from pathlib import Path
from typing import Any

import pandas as pd

from bench.perf.augment import time_augment
from bench.perf.common import (
    CHECKS,
    FULL,
    PARTS,
    QUICK,
    SETTINGS,
    Part,
    machine,
    markdown,
    print_part,
    say,
    shown,
)
from bench.perf.gpu import VARIANTS, time_gpu
from bench.perf.report import time_reports
from bench.perf.sweep import time_sweep
from bench.perf.train import check_accuracy, time_train


def write_out(out: Path, parts: list[Part], summary: pd.DataFrame, command: str, when: str):
    """``perf.md`` (the machine, the command, the summary and every table) and the CSVs."""
    out.mkdir(parents=True, exist_ok=True)
    # A check of its own (accuracy) gets its own page and summary beside perf.md's.
    page = "perf.md" if any(p.name in PARTS for p in parts) else f"{parts[0].name}.md"
    summary.to_csv(out / page.replace(".md", "_summary.csv").replace("perf_", ""), index=False)
    for part in parts:
        part.table.to_csv(out / f"{part.name}.csv", index=False)
    host = pd.DataFrame(list(machine().items()), columns=["", "machine"])
    lines = [
        "# What bench costs" if page == "perf.md" else "# bench against a bare PyTorch loop",
        "",
        f"Measured {when} with `{command}` (what `nox -s perf` runs; `bench/perf/__init__.py` says "
        "what each part measures). Every table is also a CSV beside this file.",
        "",
        host.to_markdown(index=False),
        "",
        "## Summary",
        "",
        markdown(summary),
    ]
    for part in parts:
        lines += [
            "",
            f"## {part.title}",
            "",
            part.about,
            "",
            markdown(part.table),
        ]
        lines += [f"\n{error}" for error in part.errors]
    (out / page).write_text("\n".join(lines) + "\n")
    say(f"wrote {out / page} and the CSVs beside it")


def parser() -> argparse.ArgumentParser:
    def show(value: Any) -> str:
        if value is None:
            return "the config's"
        return " ".join(map(str, value)) if isinstance(value, list) else str(value)

    def sizes(key: str) -> str:
        return f"(default: {show(FULL[key])}; with --quick: {show(QUICK[key])})"

    p = argparse.ArgumentParser(
        prog="python -m bench.perf",
        description="What bench costs: a bench run against a bare PyTorch loop, MLflow's share, "
        "augmentation throughput, a sweep's per-job overhead, the report over many runs, and "
        "on a CUDA GPU the ResNet-18 CIFAR-10 run (variants, runs sharing the GPU). "
        "See the package docstring (bench/perf/__init__.py) for what each part measures.",
    )
    p.add_argument(
        "what",
        nargs="+",
        choices=[*PARTS, "all", *CHECKS],
        help="the parts to time, or all of them; accuracy (not in all): the CIFAR-10 CPU "
        "study's accuracy against the bare loop's, on real CIFAR-10 (--cifar-root)",
    )
    p.add_argument("--quick", action="store_true", help="small sizes: a try-out of a few minutes")
    p.add_argument("--out", metavar="DIR", help="write perf.md and a CSV per table to DIR")
    p.add_argument(
        "--csv", metavar="PATH", help="write the table (of several parts: the summary) as CSV"
    )
    p.add_argument("--repeats", type=int, help=f"timed repeats of each measure {sizes('repeats')}")
    g = p.add_argument_group("train")
    g.add_argument(
        "--settings", nargs="+", choices=SETTINGS, default=list(SETTINGS), help="(default: both)"
    )
    g.add_argument("--digits-epochs", type=int, help=f"epochs of digits {sizes('digits_epochs')}")
    g.add_argument(
        "--cifar-epochs", type=int, help=f"epochs of cifar10_cpu {sizes('cifar_epochs')}"
    )
    g.add_argument(
        "--cifar-per-class",
        type=int,
        help=f"cifar10_cpu's training images per class {sizes('cifar_per_class')}",
    )
    g.add_argument(
        "--cifar-root",
        metavar="DIR",
        help="real CIFAR-10 in torchvision's layout (default: random images in it)",
    )
    g = p.add_argument_group("accuracy")
    g.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds (default: 0 1 2)")
    g.add_argument(
        "--schedules",
        nargs="+",
        default=["constant", "cosine"],
        help="schedules (default: constant cosine)",
    )
    g.add_argument(
        "--bench-store",
        metavar="URI",
        help="take bench's side from the finished runs of this MLflow store (the study's own) "
        "instead of training them again",
    )
    g = p.add_argument_group("augment")
    g.add_argument("--images", type=int, help=f"training images of the epoch {sizes('images')}")
    g.add_argument("--batch", type=int, default=128, help="batch size (default: 128)")
    g.add_argument(
        "--workers",
        type=int,
        default=min(8, os.cpu_count() or 1),
        help="the DataLoader's worker processes (default: one per core, at most 8)",
    )
    g.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch's CPU threads in this process (default: 1, as trainer.num_threads)",
    )
    g = p.add_argument_group("sweep")
    g.add_argument("--jobs", type=int, help=f"runs of the grid {sizes('jobs')}")
    g = p.add_argument_group("report")
    g.add_argument("--runs", type=int, nargs="+", help=f"sizes, in runs {sizes('runs')}")
    g.add_argument("--epochs", type=int, help=f"epochs per run {sizes('epochs')}")
    g.add_argument("--store", metavar="DIR", help="keep the store in DIR and reuse what it holds")
    g = p.add_argument_group("gpu (skipped without CUDA)")
    g.add_argument(
        "--gpu-epochs", type=int, help=f"epochs of each cifar10_scratch run {sizes('gpu_epochs')}"
    )
    g.add_argument(
        "--gpu-variants",
        nargs="+",
        choices=list(VARIANTS),
        default=list(VARIANTS),
        metavar="VARIANT",
        help=f"which of: {'; '.join(VARIANTS)} (default: all)",
    )
    g.add_argument(
        "--gpu-jobs",
        type=int,
        nargs="*",
        help=f"runs sharing the GPU, each count against one run alone {sizes('gpu_jobs')}",
    )
    g.add_argument(
        "--mps", action="store_true", help="share the GPU under CUDA MPS where it is installed"
    )
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser().parse_args(argv)
    for key, value in (QUICK if args.quick else FULL).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    when = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    command = " ".join(["python -m bench.perf", *argv])
    parts = []
    wanted = [p for p in PARTS if p in args.what or "all" in args.what]
    wanted += [c for c in CHECKS if c in args.what]
    for name in wanted:
        if name == "accuracy":
            epochs = args.cifar_epochs if "--cifar-epochs" in argv else None
            part = check_accuracy(
                args.seeds, args.schedules, epochs, args.cifar_root, bench_store=args.bench_store
            )
        elif name == "train":
            part = time_train(
                args.settings,
                args.repeats,
                args.digits_epochs,
                args.cifar_epochs,
                args.cifar_root,
                args.cifar_per_class,
            )
        elif name == "augment":
            part = time_augment(args.images, args.batch, args.workers, args.threads, args.repeats)
        elif name == "sweep":
            part = time_sweep(args.jobs, args.repeats)
        elif name == "gpu":
            *more, part = time_gpu(
                args.gpu_epochs, args.gpu_variants, args.gpu_jobs, args.cifar_root, args.mps
            )
            for earlier in more:
                print_part(earlier)
                parts.append(earlier)
        else:
            part = time_reports(args.runs, args.epochs, args.store)
        print_part(part)
        parts.append(part)
    summary = pd.DataFrame([line for part in parts for line in part.summary])
    if len(parts) > 1:
        print("\nSummary")
        print(shown(summary).to_string(index=False))
    if args.csv:
        (summary if len(parts) > 1 else parts[0].table).to_csv(args.csv, index=False)
    if args.out:
        write_out(Path(args.out), parts, summary, command, when)
    return 0
