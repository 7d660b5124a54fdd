"""Several runs at once: the launcher configs (gpus, cpus, slurm) as Hydra composes them, the GPU
each run is given, and what a launcher never changes (a run's identity, its setting)."""

import contextlib
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import OmegaConf

from bench import launch, resume, run
from bench.analysis import pooling
from bench.cli import CONFIG_DIR
from bench.sweep import run_config

BIN = Path(sys.executable).parent


def compose_all(*overrides: str, config_name: str = "train"):
    """The whole config, Hydra's node included, as the app composes it."""
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose(config_name=config_name, overrides=list(overrides), return_hydra_config=True)


def test_visible_gpus_read_like_cuda_reads_them():
    assert launch.visible_gpus({"CUDA_VISIBLE_DEVICES": "3,5"}) == ["3", "5"]
    assert launch.visible_gpus({"CUDA_VISIBLE_DEVICES": " 2 , 0"}) == ["2", "0"]
    assert launch.visible_gpus({"CUDA_VISIBLE_DEVICES": "GPU-8f2a,1"}) == ["GPU-8f2a", "1"]
    # CUDA stops at the first invalid entry; an empty list or -1 hides every GPU.
    assert launch.visible_gpus({"CUDA_VISIBLE_DEVICES": "1,-1,2"}) == ["1"]
    assert launch.visible_gpus({"CUDA_VISIBLE_DEVICES": ""}) == []
    assert launch.visible_gpus({"CUDA_VISIBLE_DEVICES": "-1"}) == []
    import torch

    everything = [str(i) for i in range(torch.cuda.device_count())]
    assert launch.visible_gpus({}) == everything


def test_gpus_launcher_runs_gpus_x_jobs_per_gpu_pinned_round_robin(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")
    cfg = compose_all("hydra/launcher=gpus", "launch.jobs_per_gpu=2")
    launcher = OmegaConf.to_container(cfg.hydra.launcher, resolve=True)
    assert launcher["_target_"].endswith("JoblibLauncher")
    assert launcher["n_jobs"] == 4  # 2 GPUs x 2 jobs per GPU
    assert cfg.hydra.runtime.choices["hydra/launcher"] == "gpus"
    assert (
        OmegaConf.to_container(compose_all("hydra/launcher=gpus").hydra.launcher, resolve=True)[
            "n_jobs"
        ]
        == 2
    )
    # Job number -> GPU: round-robin over the visible GPUs, by their index among them.
    visible = launch.visible_gpus()
    indices = [launch.gpu_for(j, visible, jobs_per_gpu=2) for j in range(8)]
    assert indices == [0, 1, 0, 1, 0, 1, 0, 1]
    assert [visible[i] for i in indices[:4]] == ["3", "5", "3", "5"]
    # A job whose own slot is taken moves on to the next free one.
    assert launch.gpu_for(4, visible, jobs_per_gpu=2, busy={0, 1}) == 0  # slot 2: GPU 3
    assert launch.gpu_for(2, ["0", "1"], busy={0}) == 1
    # No GPU (a CPU box): one job per jobs_per_gpu, and nothing to pin.
    assert launch.gpu_jobs(3, n_gpus=0) == 3
    with pytest.raises(ValueError, match=r"launch.jobs_per_gpu: got 0; allowed: an integer >= 1"):
        launch.gpu_jobs(0)


def test_each_run_gets_a_gpu_of_its_own_and_keeps_its_identity(tmp_path, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")
    base = run_config(compose_all("trainer.accelerator=gpu", "launch.jobs_per_gpu=1"))
    key = run.identity(base)
    configs = [run_config(compose_all("trainer.accelerator=gpu")) for _ in range(4)]
    with contextlib.ExitStack() as stack:
        got = [stack.enter_context(launch.pinned(configs[0], "gpus", 0, tmp_path, "job 0"))]
        # Job 1 ends early (a run skipped, say): job 2 then takes its free GPU, not job 0's.
        with launch.pinned(configs[1], "gpus", 1, tmp_path, "job 1") as gpu:
            got.append(gpu)
        got.append(stack.enter_context(launch.pinned(configs[2], "gpus", 2, tmp_path, "job 2")))
        assert sorted(p.name for p in (tmp_path / launch.SLOTS_DIR).iterdir()) == [
            "0.lock",
            "1.lock",
        ]
    assert got == ["3", "5", "5"]
    assert [c["trainer"]["devices"] for c in configs[:3]] == [[0], [1], [1]]
    assert [c["launch"]["gpu"] for c in configs[:3]] == ["3", "5", "5"]
    # Every slot free again: job 2 takes its own slot, GPU 3.
    with launch.pinned(configs[3], "gpus", 2, tmp_path) as gpu:
        assert gpu == "3"
    # Where a run trains never changes which run it is; how many devices it trains on does.
    assert {run.identity(c) for c in configs} == {key}
    assert resume.identity({**base, "trainer": {**base["trainer"], "devices": 2}}) != key


def test_pinning_does_nothing_off_the_gpu_launcher_or_off_cuda(tmp_path, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")
    on_cpu = run_config(compose_all("trainer.accelerator=cpu"))
    before = run.identity(on_cpu)
    with launch.pinned(on_cpu, "gpus", 1, tmp_path) as gpu:
        assert gpu is None
    on_gpu = run_config(compose_all("trainer.accelerator=gpu"))
    with launch.pinned(on_gpu, "joblib", 1, tmp_path) as gpu:
        assert gpu is None
    assert on_cpu["trainer"]["devices"] == 1 and "gpu" not in on_cpu["launch"]
    assert run.identity(on_cpu) == before
    assert not (tmp_path / launch.SLOTS_DIR).exists()
    import torch

    if not torch.cuda.is_available():  # accelerator auto on a CPU box: no pinning, no error
        auto = run_config(compose_all())
        with launch.pinned(auto, "gpus", 0, tmp_path) as gpu:
            assert gpu is None
        assert auto["trainer"]["devices"] == 1


def test_runs_on_several_gpus_stay_one_setting_in_the_report():
    params = [
        {"optimizer.lr": "0.1", "trainer.devices": devices, "launch.gpu": gpu, "schedule": s}
        for s, devices, gpu in (
            ("cosine", "[0]", "3"),
            ("step", "[1]", "5"),
            ("constant", "1", None),
        )
    ]
    runs = pd.DataFrame(
        {
            "run_id": ["a", "b", "c"],
            "schedule": ["cosine", "step", "constant"],
            "seed": [0, 0, 0],
            "status": ["FINISHED"] * 3,
            "params": [{k: v for k, v in p.items() if v is not None} for p in params],
        }
    )
    assert pooling.setting_labels(runs).tolist() == ["", "", ""]
    assert not pooling.is_setting("launch.gpu") and not pooling.is_setting("launch.jobs_per_gpu")
    # Two devices against one is a setting.
    runs["params"] = [*runs["params"][:2], {"optimizer.lr": "0.1", "trainer.devices": "2"}]
    assert pooling.setting_labels(runs).tolist() == ["trainer.devices=1"] * 2 + [
        "trainer.devices=2"
    ]


def test_cpus_launcher_runs_cores_over_threads():
    cfg = compose_all("hydra/launcher=cpus")
    launcher = OmegaConf.to_container(cfg.hydra.launcher, resolve=True)
    assert launcher["_target_"].endswith("JoblibLauncher")
    assert launcher["n_jobs"] == launch.cores()  # trainer.num_threads=1 by default
    many = compose_all("hydra/launcher=cpus", f"trainer.num_threads={launch.cores()}")
    assert many.hydra.launcher.n_jobs == 1
    assert [launch.cpu_jobs(t, n_cores=8) for t in (1, 2, 3, None, 16)] == [8, 4, 2, 8, 1]
    with pytest.raises(ValueError, match="trainer.num_threads: got 0"):
        launch.cpu_jobs(0)


def test_slurm_launcher_one_gpu_per_job_requeued_with_overrides(tmp_path, monkeypatch):
    submitit = pytest.importorskip("submitit")
    cfg = compose_all(
        "hydra/launcher=slurm",
        "hydra.launcher.partition=gpu",
        "hydra.launcher.timeout_min=240",
        "hydra.launcher.account=myacct",
        config_name="sweep",
    )
    node = cfg.hydra.launcher
    assert node._target_.endswith("submitit_launcher.SlurmLauncher")
    assert (node.partition, node.timeout_min, node.account) == ("gpu", 240, "myacct")
    assert (node.gpus_per_node, node.tasks_per_node, node.nodes) == (1, 1, 1)
    assert node.max_num_timeout >= 1 and node.cpus_per_task >= 1 and node.mem_gb >= 1
    default = compose_all("hydra/launcher=slurm").hydra.launcher
    assert (default.partition, default.account) == (None, None)
    # The parameters as the launcher hands them to submitit, and the sbatch script they make
    # (submitit looks for srun to believe it is on a cluster).
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "srun").write_text("#!/bin/sh\nexit 1\n")
    (fake / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake}{os.pathsep}{os.environ['PATH']}")
    launcher = instantiate(node)
    from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf

    params = dict(launcher.params)
    executor = submitit.AutoExecutor(
        cluster="slurm",
        folder=tmp_path / "jobs",
        slurm_max_num_timeout=params.pop("max_num_timeout"),
    )
    params.pop("submitit_folder")
    base = set(OmegaConf.structured(BaseQueueConf).keys())
    executor.update_parameters(**{k if k in base else f"slurm_{k}": v for k, v in params.items()})
    script = executor._executor._make_submission_file_text("python -m job", "uid")
    for line in (
        "--partition=gpu",
        "--account=myacct",
        "--time=240",
        "--gpus-per-node=1",
        "--ntasks-per-node=1",
        f"--cpus-per-task={node.cpus_per_task}",
        "--signal=USR2@",  # the signal that makes a job requeue itself
    ):
        assert f"#SBATCH {line}" in script, line
    assert executor._executor.max_num_timeout == node.max_num_timeout
    # Requeue: the launcher resubmits its own call when the job is preempted or times out.
    assert hasattr(launcher, "checkpoint")


def test_missing_launcher_plugin_says_what_to_install():
    message = launch.missing_plugin(["seed=1", "hydra/launcher=slurm"], find=lambda name: None)
    assert message == (
        "hydra/launcher: got slurm, which needs Hydra's hydra-submitit-launcher plugin; install "
        "it with pip install 'bench[slurm]' (or pip install hydra-submitit-launcher)"
    )
    assert "bench[gpus]" in launch.missing_plugin(["hydra/launcher=gpus"], find=lambda n: None)
    assert launch.missing_plugin(["hydra/launcher=gpus"]) is None  # installed here
    assert launch.missing_plugin(["hydra/launcher=basic"], find=lambda n: None) is None


def test_bad_launch_values_are_named_before_any_run(tmp_path):
    result = subprocess.run(
        [
            str(BIN / "bench-train"),
            "-m",
            "hydra/launcher=gpus",
            "launch.jobs_per_gpu=0,2",
            "trainer.devices=2",
        ],
        cwd=tmp_path,
        env={**os.environ, "MLFLOW_TRACKING_URI": ""},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2, result.stderr[-3000:]
    assert "invalid configuration, nothing was run" in result.stderr
    for message in (
        "launch.jobs_per_gpu: got 0; allowed: an integer >= 1",
        "trainer.devices: got 2 with hydra/launcher=gpus; allowed: 1",
        "launch.jobs_per_gpu: got 0, 2 across the grid; allowed: one value per sweep",
    ):
        assert message in result.stderr, message
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "other",
    ["launch.jobs_per_gpu=4", "+launch.gpu=7", "trainer.devices=[0]", "trainer.devices=[3]"],
)
def test_how_a_run_is_launched_keeps_its_identity(other):
    base = ("trainer.max_epochs=2",)
    plain = run_config(compose_all(*base))
    assert resume.identity(run_config(compose_all(*base, other))) == resume.identity(plain)


def test_a_stopped_slurm_sweep_leaves_its_jobs_runs_alone(tmp_path, capsys):
    from bench import sweep, tracking

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    experiment_id = tracking.ensure_experiment(uri, "digits")
    states = {}
    for scheduled in (True, False):
        parent = tracking.start_sweep(uri, experiment_id, "sweep", {}, [])
        child = tracking.RunRecorder(uri, experiment_id, "cosine-seed0", {}, parent_run_id=parent)
        stopped = sweep.Sweep(uri, experiment_id, "digits", parent, 1)
        sweep._active[:] = [stopped]
        sweep._scheduled[:] = [stopped] if scheduled else []
        try:
            sweep.interrupted("SIGINT")
        finally:
            sweep._active.clear()
            sweep._scheduled.clear()
        mc = tracking.client(uri)
        states[scheduled] = [mc.get_run(r).info.status for r in (parent, child.run_id)]
    # SLURM jobs are not stopped by a signal to the launching command: their runs go on.
    assert states == {True: ["KILLED", "RUNNING"], False: ["KILLED", "KILLED"]}
    assert "The SLURM jobs already submitted go on" in capsys.readouterr().err
