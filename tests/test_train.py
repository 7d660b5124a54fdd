"""One run in-process (composed like the app composes it): reproducible from its seed, and sized
from the real number of optimizer steps."""

import os

import pytest
from conftest import compose_run
from conftest import train_here as train


def histories(client, key):
    experiment = client.get_experiment_by_name("digits")
    runs = client.search_runs([experiment.experiment_id], order_by=["attributes.start_time ASC"])
    return [
        [
            m.value
            for m in sorted(client.get_metric_history(r.info.run_id, key), key=lambda m: m.step)
        ]
        for r in runs
    ]


def test_same_seed_same_run_on_cpu(store):
    cfg = compose_run("trainer.max_epochs=2", "seed=3", "trainer.accelerator=cpu")
    train(cfg)
    train(cfg)
    train(compose_run("trainer.max_epochs=2", "seed=4", "trainer.accelerator=cpu"))
    first, again, other = histories(store, "train_loss_step")
    assert first == again
    assert first != other
    assert histories(store, "val_acc")[0] == histories(store, "val_acc")[1]


@pytest.mark.parametrize(
    ("overrides", "steps_per_epoch"),
    [
        # digits: 1,797 images -> 1,149 for training after the test (20%) and val (20%) splits
        (["data.batch_size=64"], 18),
        (["data.batch_size=100"], 12),
        (["data.batch_size=64", "+trainer.accumulate_grad_batches=2"], 9),
        # 18 batches in windows of 4: Lightning also steps on the last, partial window
        (["data.batch_size=64", "+trainer.accumulate_grad_batches=4"], 5),
    ],
)
def test_schedule_length_is_the_real_number_of_optimizer_steps(store, overrides, steps_per_epoch):
    cfg = compose_run("trainer.max_epochs=2", "schedule=polynomial", "schedule.power=1", *overrides)
    train(cfg)
    run = store.search_runs([store.get_experiment_by_name("digits").experiment_id])[0]
    assert int(run.data.params["steps_per_epoch"]) == steps_per_epoch
    assert int(run.data.params["total_steps"]) == 2 * steps_per_epoch
    lr = sorted(store.get_metric_history(run.info.run_id, "lr"), key=lambda m: m.step)
    assert [m.step for m in lr] == list(range(2 * steps_per_epoch))
    losses = store.get_metric_history(run.info.run_id, "train_loss_step")
    assert sorted(m.step for m in losses) == list(range(2 * steps_per_epoch))
    assert [m.step for m in store.get_metric_history(run.info.run_id, "train_loss")] == [1, 2]
    # Linear decay to zero over exactly those steps: the last step is one step's worth above 0.
    assert lr[-1].value == pytest.approx(0.05 / (2 * steps_per_epoch))


def test_adamw_is_the_other_optimizer(store):
    metrics = train(compose_run("optimizer=adamw", "trainer.max_epochs=1", "schedule=constant"))
    assert metrics["val_acc"] > 0.5
    run = store.search_runs([store.get_experiment_by_name("digits").experiment_id])[0]
    assert run.data.params["optimizer._target_"] == "torch.optim.AdamW"
    assert {m.value for m in store.get_metric_history(run.info.run_id, "lr")} == {0.001}


def test_backbone_lr_is_scaled_and_logged_beside_the_heads(store):
    train(compose_run("trainer.max_epochs=1", "finetune.backbone_lr_mult=0.1"))
    run = store.search_runs([store.get_experiment_by_name("digits").experiment_id])[0]
    head = sorted(store.get_metric_history(run.info.run_id, "lr"), key=lambda m: m.step)
    body = sorted(store.get_metric_history(run.info.run_id, "lr_backbone"), key=lambda m: m.step)
    assert [m.step for m in body] == [m.step for m in head] == list(range(18))
    assert head[0].value == pytest.approx(0.05)  # cosine from the base LR
    assert [b.value for b in body] == pytest.approx([0.1 * h.value for h in head])


def test_one_lr_is_logged_without_a_backbone_multiplier(store):
    train(compose_run("trainer.max_epochs=1"))
    run = store.search_runs([store.get_experiment_by_name("digits").experiment_id])[0]
    assert store.get_metric_history(run.info.run_id, "lr_backbone") == []


def test_a_diverging_run_stops_and_finishes_tagged_diverged(store):
    metrics = train(compose_run("optimizer.lr=1e4", "schedule=constant", "trainer.max_epochs=3"))
    [run] = store.search_runs([store.get_experiment_by_name("digits").experiment_id])
    assert run.info.status == "FINISHED"
    assert run.data.tags["bench.diverged"] == "true"
    step = int(run.data.tags["bench.diverged_step"])
    losses = sorted(
        store.get_metric_history(run.info.run_id, "train_loss_step"), key=lambda m: m.step
    )
    # Training stopped at the first step whose loss passed trainer.max_loss (100), in epoch 1.
    assert losses[-1].step == step < 18
    assert losses[-1].value > 100 or losses[-1].value != losses[-1].value
    assert all(m.value <= 100 for m in losses[:-1])
    assert "test_acc" in metrics

    from bench import tracking

    [row] = tracking.load_runs(store.tracking_uri, "digits").runs.itertuples()
    assert row.diverged


@pytest.mark.parametrize("one_process", [True, False])
def test_lightnings_srun_advice_is_silenced_for_one_device_runs(tmp_path, monkeypatch, one_process):
    """Where SLURM's srun exists (a login node), Lightning advises launching with it on every
    run: advice for multi-process jobs, noise for bench's one-device runs."""
    import warnings

    from lightning_fabric.plugins.environments import SLURMEnvironment

    from bench import lightning

    srun = tmp_path / "srun"
    srun.write_text("#!/bin/sh\nexit 0\n")
    srun.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        lightning.quiet_lightning(one_process)
        SLURMEnvironment.detect()
    said = [str(w.message) for w in caught if "srun" in str(w.message)]
    assert (said == []) if one_process else said
