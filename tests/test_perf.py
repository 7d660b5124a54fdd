"""`python -m bench.perf`: every part run for real at tiny sizes, its tables and files checked."""

import math

import numpy as np
import pandas as pd
import pytest

from bench import perf


def test_bare_loop_on_random_cifar10(tmp_path):
    """The CIFAR-10 CPU study's setting, shrunk, on random images: the bare loop's image path
    (uint8 batches augmented and normalised), on data the study's config reads."""
    from bench.data.cifar10 import CIFAR10DataModule

    root = perf.write_cifar10(tmp_path, train=5000, test=1000)
    index = CIFAR10DataModule.index(root)
    assert len(index.train_labels) == 5000 and len(index.test_labels) == 1000
    assert np.bincount(index.train_labels).tolist() == [500] * 10
    config = perf.compose(perf.setting_overrides("cifar10_cpu", 1, root, 20))
    assert config["model"]["_target_"] == "bench.models.resnet"
    done = perf.bare_run(config)
    assert done["images"] == 200 and done["steps"] == 2  # 20 per class, batches of 128
    assert done["wall"] > 0 and 0 <= done["test_acc"] <= 1


def test_call_timer_counts_a_nested_call_once_and_puts_the_functions_back():
    import types

    space = types.SimpleNamespace()
    space.inner = lambda: "inner"
    space.outer = lambda: space.inner() + "+outer"
    originals = (space.inner, space.outer)
    with perf.CallTimer([(space, "inner"), (space, "outer")]) as timer:
        assert space.outer() == "inner+outer"  # inner runs inside outer: one call
        assert space.inner() == "inner"
    assert (space.inner, space.outer) == originals
    assert timer.calls == 2
    assert {name: count for name, (count, _) in timer.by_name.items()} == {"outer": 1, "inner": 1}
    assert timer.seconds > 0


def test_parts_tiny(tmp_path, capsys, monkeypatch):
    """Every part but the report's (whose synthetic store takes long to build even small)."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    out = tmp_path / "perf"
    argv = ["train", "augment", "sweep", "--out", str(out), "--repeats", "1"]
    argv += ["--settings", "digits", "--digits-epochs", "1"]
    argv += ["--images", "2000", "--workers", "1"]
    argv += ["--jobs", "2"]
    assert perf.main(argv) == 0
    printed = capsys.readouterr().out
    for title in ("bare PyTorch loop", "Augmentation throughput", "Per-job overhead", "Summary"):
        assert title in printed

    train = pd.read_csv(out / "train.csv")
    assert train["setting"].tolist() == ["digits"]
    assert train["epochs"].tolist() == [1]
    for column in ("bench s", "bare s", "bench/bare", "MLflow s", "MLflow %", "files s"):
        assert (train[column] > 0).all(), column
    assert (train["bench min"] <= train["bench max"]).all()
    assert (train["MLflow %"] < 100).all()
    assert (train["store calls"] > 0).all()

    augment = pd.read_csv(out / "augment.csv")
    assert augment["path"].tolist() == ["device-resident", "DataLoader"]
    assert augment["images"].tolist() == [2000, 2000]
    assert (augment["images/s"] > 0).all()
    assert augment["shape"].tolist() == ["3x32x32"] * 2

    sweep = pd.read_csv(out / "sweep.csv").set_index("measure")["value"]
    wall = sweep["sweep of 2 runs: wall time (s)"]
    assert 0 < sweep["sweep: time until its first run started (s)"] < wall
    assert 0 < sweep["sweep: the runs' own time, MLflow start to end (s)"] < wall
    assert sweep["sweep: per-job overhead, (wall - own) / N (s)"] > 0
    assert sweep["bench-train --help, start to exit (s)"] > 0
    assert sweep["bench-train optimizer.lr=-1 (error), start to exit (s)"] > 0

    assert not (out / "report.csv").exists()

    summary = pd.read_csv(out / "summary.csv")
    why = "where the time goes (when missed)"
    assert list(summary.columns) == ["measure", "value", "target", "met", why]
    assert all(math.isfinite(v) and v > 0 for v in summary["value"])
    targeted = summary[summary["target"] != "-"]
    # bench / bare, MLflow's share, the augmentation speed-up, the time to the first run, a
    # bad-input error against --help
    assert len(targeted) == 5
    assert sweep["import torch, in a fresh process (s)"] > 0
    assert sweep["then import pytorch_lightning (s)"] > 0 and sweep["then import mlflow (s)"] > 0
    ratio = summary.set_index("measure").loc["a bad-input error / --help, start to exit", "value"]
    assert math.isclose(
        ratio,
        sweep["bench-train optimizer.lr=-1 (error), start to exit (s)"]
        / sweep["bench-train --help, start to exit (s)"],
        rel_tol=1e-3,
    )
    assert set(targeted["met"]) <= {"yes", "no"}
    assert set(summary.loc[summary["target"] == "-", "met"]) == {"-"}
    # A missed target says where the time goes; a met one, or one without a target, says nothing.
    explained = summary[why].fillna("").str.len() > 0
    assert (explained == (summary["met"] == "no")).all()

    md = (out / "perf.md").read_text()
    for text in ("## Summary", "| GPU", "| torch", "| mlflow", "python -m bench.perf train"):
        assert text in md


def test_accuracy_check_pairs_bench_and_the_bare_loop_by_seed(tmp_path):
    """The accuracy check, shrunk (random images, 20 per class, one epoch): each seed trained by
    bench and by the bare loop, the difference paired by seed, and a page of its own that
    leaves perf.md alone."""
    root = perf.write_cifar10(tmp_path / "data", train=5000, test=1000)
    extra = ["data.train_per_class=20", "data.val_size=100"]
    part = perf.check_accuracy([0, 1], ["cosine"], 1, str(root), extra=extra)
    table = part.table
    assert table[["schedule", "seed", "epochs"]].values.tolist() == [
        ["cosine", 0, 1],
        ["cosine", 1, 1],
    ]
    for column in ("bench val %", "bare val %", "bench test %", "bare test %"):
        assert table[column].between(0, 100).all()
    [val, test] = part.summary
    assert "val acc" in val["measure"] and "test acc" in test["measure"]
    expected = (table["bench val %"] - table["bare val %"]).mean()
    assert val["value"] == expected
    perf.write_out(tmp_path / "out", [part], pd.DataFrame(part.summary), "cmd", "now")
    assert {p.name for p in (tmp_path / "out").iterdir()} == {
        "accuracy.md",
        "accuracy.csv",
        "accuracy_summary.csv",
    }


def test_accuracy_check_takes_bench_from_a_studys_store(tmp_path):
    """With --bench-store, bench's side is the study's own finished run of the same identity,
    not a new one; a cell the store lacks is named."""
    from bench import tracking

    root = perf.write_cifar10(tmp_path / "data", train=5000, test=1000)
    extra = ["data.train_per_class=20", "data.val_size=100"]
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    config = perf.compose(
        [*perf.setting_overrides("cifar10_cpu", 1, root, None), *extra, "schedule=cosine", "seed=0"]
    )
    experiment = tracking.ensure_experiment(uri, config["tracking"]["experiment"])
    ran = perf.bench_run(config, uri, experiment, tmp_path)
    part = perf.check_accuracy([0], ["cosine"], 1, str(root), extra=extra, bench_store=uri)
    [row] = part.table.to_dict("records")
    assert (
        row["bench val %"] == 100 * ran["val_acc"] and row["bench test %"] == 100 * ran["test_acc"]
    )
    with pytest.raises(SystemExit, match="no finished run of cosine seed 1"):
        perf.check_accuracy([1], ["cosine"], 1, str(root), extra=extra, bench_store=uri)


def test_synthetic_runs_are_shaped_like_bench_runs_and_report(tmp_path, monkeypatch):
    """The report part's runs: a real config's params (so a report groups them as one
    setting), each schedule's LR trace as bench.schedules draws it, then the whole report."""
    from bench import schedules, tracking
    from bench.perf import synthetic

    monkeypatch.setattr(synthetic, "WORKERS", 1)
    uri = f"sqlite:///{tmp_path / 'perf.db'}"
    assert synthetic.build(uri, 5, 3) is not None
    data = tracking.load_runs(uri, synthetic.experiment_name(5, 3))
    assert sorted(data.runs["schedule"]) == sorted(synthetic.SCHEDULES)
    params = data.runs["params"].iloc[0]
    assert {"optimizer.lr", "schedule.name", "trainer.max_epochs", "model._target_"} <= set(params)
    cosine = data.runs.loc[data.runs["schedule"] == "cosine", "run_id"].iloc[0]
    lr = tracking.load_lr(uri, [cosine]).sort_values("step")
    steps = synthetic.LR_STEPS_PER_EPOCH * 3
    expected = [schedules.lr_at(t, steps, synthetic.BASE_LR, "cosine") for t in range(steps)]
    assert lr["lr"].tolist() == pytest.approx(expected)
    assert perf.time_reports([5], 3, str(tmp_path)).table["report s"].map(float).gt(0).all()


def test_the_gpu_part_runs_on_the_cpu_and_shares_a_device_between_runs(tmp_path, monkeypatch):
    """The GPU part's code on the CPU (``device="cpu"``), the cifar10_scratch run shrunk to a
    small network on 500 random images: a variant against the bare loop, per epoch, and two
    runs sharing the device through the gpus launcher against one alone."""
    from bench.perf.gpu import time_gpu

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    root = perf.write_cifar10(tmp_path / "cifar", train=600, test=100)
    extra = ["model=resnet_small", "data.val_size=100", "trainer.num_threads=1"]
    variants, shared = time_gpu(2, ["fp32"], [2], str(root), device="cpu", extra=extra)
    [row] = variants.table.to_dict("records")
    assert row["variant"] == "fp32" and row["epochs"] == 2 and row["train images"] == 500
    assert row["bench s/epoch"] > 0 and row["bare s/epoch"] > 0
    assert row["bench images/s"] == pytest.approx(500 / row["bench s/epoch"])
    assert row["bench/bare"] == pytest.approx(row["bench s/epoch"] / row["bare s/epoch"])
    assert math.isnan(row["GPU busy %"]) and math.isnan(row["peak memory GiB"])  # no GPU
    assert 0 <= row["val acc %"] <= 100
    measures = {m["measure"]: m for m in variants.summary}
    assert measures["cifar10_scratch fp32: s per epoch"]["target"] == "<= 4.2"
    assert measures["cifar10_scratch fp32: bench / bare (s per epoch)"]["met"] in {"yes", "no"}
    table = shared.table.set_index("runs")
    assert list(table.index) == [1, 2] and not table["MPS"].any()
    # every run trained 2 epochs of 500 images inside the span measured
    assert (table["images/s"] * table["span s"]).round().tolist() == [1000, 2000]
    assert table.loc[1, "vs one run"] == 1
    assert table.loc[2, "vs one run"] == pytest.approx(
        table.loc[2, "images/s"] / table.loc[1, "images/s"]
    )
    [packing] = shared.summary
    assert packing["target"] == ">= 1.5"


def test_the_gpu_part_is_skipped_without_cuda(capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: the part runs")
    assert perf.main(["gpu"]) == 0
    printed = capsys.readouterr().out
    assert "GPU part: skipped, no CUDA device here" in printed
