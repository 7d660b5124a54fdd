"""Weight decay and label smoothing as sweep axes, schedule-free optimizers' weights and
BatchNorm statistics, and snapshot ensembles: each through the real Trainer and store."""

import functools
import itertools

import pytest
import pytorch_lightning as pl
import schedulefree
import torch
from conftest import compose_run, train_here
from torch.nn import functional as F

from bench import ensemble, lightning, models, optim, schedules, spec
from bench.data.digits import DigitsDataModule


def only_run(store):
    return store.search_runs([store.get_experiment_by_name("digits").experiment_id])[0]


def history(store, run, key):
    return [
        m.value
        for m in sorted(store.get_metric_history(run.info.run_id, key), key=lambda m: m.step)
    ]


def small_net():
    return models.small_cnn(num_classes=10, in_channels=1, image_size=8)


def fit(module, callbacks=(), epochs=2):
    trainer = pl.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        callbacks=list(callbacks),
    )
    datamodule = DigitsDataModule()
    trainer.fit(module, datamodule=datamodule)
    trainer.test(module, datamodule=datamodule, verbose=False)
    return trainer


@pytest.mark.parametrize("name", ["linear", "exponential", "one_cycle", "wsd", "cyclic"])
def test_logged_lr_of_every_new_schedule_follows_its_formula(store, name):
    train_here(
        compose_run(f"schedule={name}", "trainer.max_epochs=1", "schedule.warmup_fraction=0.1")
    )
    run = only_run(store)
    total = int(run.data.params["total_steps"])
    f = schedules.make(name, base=0.05, **{**schedules.knobs(name), "warmup_fraction": 0.1})
    assert history(store, run, "lr") == pytest.approx([f(t, total) for t in range(total)])
    assert run.data.tags["schedule"] == name


def test_label_smoothing_smooths_the_training_loss_only():
    torch.manual_seed(0)
    module = lightning.Classifier(small_net(), None, None, label_smoothing=0.2).eval()
    logged = {}
    module.log = lambda key, value, **kw: logged.__setitem__(key, float(value))
    x, y = torch.randn(16, 1, 8, 8), torch.randint(0, 10, (16,))
    with torch.no_grad():
        logits = module(x)
        train_loss = float(module.training_step((x, y), 0))
        module.validation_step((x, y), 0)
    assert train_loss == pytest.approx(float(F.cross_entropy(logits, y, label_smoothing=0.2)))
    assert logged["val_loss"] == pytest.approx(float(F.cross_entropy(logits, y)))
    assert train_loss != pytest.approx(logged["val_loss"])


def test_label_smoothing_runs_and_is_recorded(store):
    train_here(compose_run("trainer.max_epochs=1", "model.label_smoothing=0.1"))
    assert only_run(store).data.params["model.label_smoothing"] == "0.1"


def test_no_decay_on_norms_and_biases():
    sgd = functools.partial(torch.optim.SGD, lr=0.1, momentum=0.9, weight_decay=0.01)
    module = lightning.Classifier(
        small_net(), sgd, schedules.make("constant", 0.1), wd_norm_and_bias=False
    )
    trainer = fit(module, epochs=1)
    groups = trainer.optimizers[0].param_groups
    decayed = {id(p) for g in groups if g["weight_decay"] == 0.01 for p in g["params"]}
    plain = {id(p) for g in groups if g["weight_decay"] == 0.0 for p in g["params"]}
    for name, p in module.net.named_parameters():
        is_norm_or_bias = name.endswith(".bias") or ".1." in name or ".4." in name  # BatchNorm
        assert (id(p) in plain) == is_norm_or_bias, name
        assert (id(p) in decayed) != is_norm_or_bias, name


def test_norms_and_biases_decay_by_default():
    sgd = functools.partial(torch.optim.SGD, lr=0.1, weight_decay=0.01)
    trainer = fit(lightning.Classifier(small_net(), sgd, schedules.make("constant", 0.1)), epochs=1)
    assert [g["weight_decay"] for g in trainer.optimizers[0].param_groups] == [0.01]


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_coupled_weight_decay_holds_lr_times_wd(store, optimizer):
    train_here(
        compose_run(
            f"optimizer={optimizer}",
            "optimizer.wd_coupled=true",
            "schedule=cosine",
            "schedule.warmup_fraction=0.2",
            "schedule.min_lr_ratio=0.01",
            "trainer.max_epochs=2",
        )
    )
    run = only_run(store)
    lr, wd = history(store, run, "lr"), history(store, run, "weight_decay")
    base_lr = float(run.data.params["optimizer.lr"])
    base_wd = float(run.data.params["optimizer.weight_decay"])
    assert len(lr) == len(wd) == int(run.data.params["total_steps"])
    assert [a * b for a, b in zip(lr, wd, strict=True)] == pytest.approx(
        [base_lr * base_wd] * len(lr)
    )
    assert max(wd) > 4 * base_wd  # it really moves: the warmup starts at a fifth of the LR


def test_weight_decay_is_not_logged_when_not_coupled(store):
    train_here(compose_run("trainer.max_epochs=1"))
    assert history(store, only_run(store), "weight_decay") == []


class OptimizerModes(pl.Callback):
    """Which weights a schedule-free optimizer holds in each stage."""

    def __init__(self):
        self.seen = {"train": set(), "val": set(), "test": set()}

    def _mode(self, trainer):
        return trainer.optimizers[0].param_groups[0]["train_mode"] if trainer.optimizers else None

    def on_train_batch_start(self, trainer, *args):
        self.seen["train"].add(self._mode(trainer))

    def on_validation_batch_start(self, trainer, *args):
        self.seen["val"].add(self._mode(trainer))

    def on_test_batch_start(self, trainer, *args):
        self.seen["test"].add(self._mode(trainer))


def test_schedule_free_trains_on_train_weights_and_evaluates_on_eval_weights():
    opt = functools.partial(schedulefree.SGDScheduleFree, lr=0.5, momentum=0.9)
    modes = OptimizerModes()
    trainer = fit(lightning.Classifier(small_net(), opt, schedules.make("constant", 0.5)), [modes])
    assert modes.seen == {"train": {True}, "val": {False}, "test": {False}}
    assert optim.is_schedule_free(trainer.optimizers[0])


def test_schedule_free_records_the_eval_weights_with_recalibrated_batchnorm(store, tmp_path):
    metrics = train_here(
        compose_run("optimizer=sgd_schedulefree", "schedule=constant", "trainer.max_epochs=3"),
        output_dir=tmp_path,
    )
    run = only_run(store)
    assert run.data.tags["schedule"] == "sgd_schedulefree"
    saved = torch.load(tmp_path / "weights.pt", weights_only=True)
    net = small_net()
    net.load_state_dict(saved)
    net.eval()
    data = DigitsDataModule()
    data.setup()
    # The recorded test accuracy is the saved (evaluation) weights' with their BN statistics.
    x, y = data.splits["test"].tensors
    assert float((net(x).argmax(1) == y).float().mean()) == metrics["test_acc"]
    assert history(store, run, "test_acc") == [metrics["test_acc"]]
    # Those statistics are the ones the evaluation weights give on the recalibration batches.
    with torch.random.fork_rng():
        torch.manual_seed(optim.BN_SEED)
        inputs = [xb for xb, _ in itertools.islice(data.train_dataloader(), 50)]
    fresh = small_net()
    fresh.load_state_dict(saved)
    torch.optim.swa_utils.update_bn(inputs, fresh)
    for key in ("features.1.running_mean", "features.1.running_var", "features.4.running_var"):
        assert torch.allclose(fresh.state_dict()[key], saved[key], atol=1e-6), key
    # ... and not the running averages a training pass leaves behind.
    assert not torch.allclose(saved["features.1.running_mean"], torch.zeros(16))


def test_snapshot_ensemble_is_the_mean_of_the_snapshots_softmax(store, tmp_path):
    metrics = train_here(
        compose_run("schedule=cosine_restarts", "trainer.max_epochs=3"), output_dir=tmp_path
    )
    run = only_run(store)
    total = int(run.data.params["total_steps"])
    steps = schedules.snapshot_steps("cosine_restarts", total)
    paths = sorted((tmp_path / "snapshots").glob("*.pt"), key=lambda p: int(p.name.split("-")[1]))
    assert [p.name for p in paths] == [ensemble.snapshot_name(i, s) for i, s in enumerate(steps)]
    assert len(steps) == 3 and steps[-1] == total - 1
    assert run.data.params["n_snapshots"] == "3"
    artifacts = store.list_artifacts(run.info.run_id, "snapshots")
    assert sorted(a.path for a in artifacts) == sorted(f"snapshots/{p.name}" for p in paths)
    # The last snapshot is the final model.
    final = torch.load(tmp_path / "weights.pt", weights_only=True)
    last = torch.load(paths[-1], weights_only=True)
    assert all(torch.equal(final[k], last[k]) for k in final)

    data = DigitsDataModule()
    data.setup()
    for split in ("val", "test"):
        x, y = data.splits[split].tensors
        probs = []
        for path in paths:
            net = small_net()
            net.load_state_dict(torch.load(path, weights_only=True))
            net.eval()
            with torch.no_grad():
                probs.append(torch.softmax(net(x), dim=1))
        by_hand = float(((sum(probs) / 3).argmax(1) == y).float().mean())
        assert metrics[f"{split}_acc_ensemble"] == pytest.approx(by_hand, abs=1e-9)
        assert history(store, run, f"{split}_acc_ensemble") == [metrics[f"{split}_acc_ensemble"]]


def test_no_snapshots_without_restarts(store, tmp_path):
    metrics = train_here(compose_run("trainer.max_epochs=1"), output_dir=tmp_path)
    assert "val_acc_ensemble" not in metrics
    assert not (tmp_path / "snapshots").exists()
    assert "n_snapshots" not in only_run(store).data.params


def test_schedule_free_sgd_runs_on_its_own_lr_scale_under_a_study_lr():
    """A study sets optimizer.lr for its schedules (the CIFAR-10 presets: 0.1); picking
    optimizer=sgd_schedulefree on top runs it at lr_scale times that, the 10x its authors
    recommend, while plain SGD under the same study runs at the LR itself."""
    from bench import run

    free = compose_run("experiment=cifar10_cpu", "optimizer=sgd_schedulefree", "schedule=constant")
    assert free["optimizer"]["lr"] == 0.1 and free["optimizer"]["lr_scale"] == 10
    plain = compose_run("experiment=cifar10_cpu", "schedule=constant")
    assert "lr_scale" not in plain["optimizer"]
    digits = {"data": compose_run()["data"]}  # build on the small embedded data
    _, module = run.build(spec.of(free | digits | {"model": compose_run()["model"]}))
    optimizer = module.optimizer_factory(params=module.net.parameters())
    assert optimizer.defaults["lr"] == pytest.approx(1.0)
    assert module.schedule(0, 10) == pytest.approx(1.0)
