"""The hot path of a run: data held on the run's device and augmented there in whole batches,
the DataLoader path beside it, losses read back from the device in batches, and the settings a
GPU gets (precision, channels_last, cuDNN's autotuner, torch.compile)."""

import numpy as np
import pytest
import torch
from conftest import compose_run
from conftest import train_here as train
from scipy import stats
from torch.utils.data import BatchSampler, DataLoader, RandomSampler, TensorDataset

from bench import lightning
from bench.config import validate
from bench.data import CIFAR10DataModule, DigitsDataModule, augment
from bench.data.batches import DeviceBatches
from bench.devices import device_settings

KEYS = ("train_loss_step", "lr", "val_acc", "val_loss", "train_loss", "test_acc")


def histories(client, experiment: str = "digits") -> list[dict[str, list]]:
    """Every run's metric histories, oldest run first."""
    found = client.get_experiment_by_name(experiment)
    runs = client.search_runs([found.experiment_id], order_by=["attributes.start_time ASC"])
    return [
        {k: [(m.step, m.value) for m in client.get_metric_history(r.info.run_id, k)] for k in KEYS}
        for r in runs
    ]


def drawn(loader, seed: int) -> tuple[list, torch.Tensor]:
    """Two passes over ``loader`` with a draw from the global generator after each batch (as
    augmentation makes), and the generator's next draw: what a run sees of the loader."""
    torch.manual_seed(seed)
    if isinstance(loader, DeviceBatches):
        iter(loader)  # Lightning makes one only to check that it can (not of a DataLoader)
    seen = [(*batch, torch.rand(1)) for _ in range(2) for batch in loader]
    return seen, torch.rand(4)


@pytest.mark.parametrize("shuffle", [True, False])
def test_device_batches_are_a_dataloaders_batches_and_draws(shuffle):
    images = torch.randint(0, 256, (1000, 3, 4, 4), dtype=torch.uint8)
    labels = torch.randperm(1000)
    sampler = RandomSampler(range(1000)) if shuffle else range(1000)
    loader = DataLoader(
        TensorDataset(images, labels), batch_size=None, sampler=BatchSampler(sampler, 128, False)
    )
    device = DeviceBatches(images, labels, batch_size=128, shuffle=shuffle)
    (expected, after), (got, got_after) = drawn(loader, 7), drawn(device, 7)
    assert len(device) == len(loader) == 8 and len(got) == len(expected) == 16
    assert [len(b[0]) for b in got] == [len(b[0]) for b in expected]
    for a, b in zip(got, expected, strict=True):
        assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    assert torch.equal(got_after, after)
    if shuffle:  # and each pass draws a fresh order
        assert not torch.equal(got[0][1], got[8][1])


def test_digits_batches_are_the_same_on_either_path():
    on_device, loader = DigitsDataModule(on_device=True), DigitsDataModule(on_device=False)
    on_device.setup(), loader.setup()
    for split in ("train_dataloader", "val_dataloader"):
        a, a_after = drawn(getattr(on_device, split)(), 3)
        b, b_after = drawn(getattr(loader, split)(), 3)
        assert isinstance(getattr(on_device, split)(), DeviceBatches)
        assert len(a) == len(b) and torch.equal(a_after, b_after)
        for p, q in zip(a, b, strict=True):
            assert all(torch.equal(x, y) for x, y in zip(p, q, strict=True))


def test_a_run_records_the_same_numbers_with_its_data_on_the_device_or_not(store):
    for on_device in ("true", "false"):
        train(compose_run("trainer.max_epochs=2", f"data.on_device={on_device}", "rerun=true"))
    on_device, loader = histories(store)
    assert on_device == loader
    assert len(on_device["train_loss_step"]) == 36 and len(on_device["val_acc"]) == 2


def cifar_module(root, on_device: bool, **kw) -> CIFAR10DataModule:
    dm = CIFAR10DataModule(
        root=str(root), val_size=20, on_device=on_device, num_workers=0, batch_size=16, **kw
    )
    dm.setup("fit")
    return dm


def test_augmented_batches_have_the_networks_shape_type_and_range(cifar_archive):
    for on_device in (True, False):
        dm = cifar_module(cifar_archive, on_device, resize=40)
        x, y = dm.prepare_batch(next(iter(dm.train_dataloader())), train=True)
        assert x.shape == (16, 3, 40, 40) and x.dtype == torch.float32 and y.dtype == torch.int64
        mean, std = torch.tensor(dm.mean).view(3, 1, 1), torch.tensor(dm.std).view(3, 1, 1)
        low, high = (0 - mean) / std, (1 - mean) / std  # the normalised ends of [0, 255]
        assert (x >= low - 1e-4).all() and (x <= high + 1e-4).all()
        assert (x == low.expand_as(x[0])).any()  # zero padding shows: some crops are shifted
    dm = cifar_module(cifar_archive, True)
    x, _ = dm.prepare_batch(next(iter(dm.val_dataloader())), train=False)
    images = dm.splits["val"].images  # evaluation: normalised, never cropped or flipped
    assert torch.equal(x, augment.normalize(augment.to_float(images), dm.mean, dm.std))


def test_unaugmented_training_batches_are_the_same_on_either_path(cifar_archive):
    """What BatchNorm recalibration reads: the training images in a fresh order, never cropped
    or flipped, and the same on either path (not the DataLoader workers' augmented ones)."""
    batches = []
    for on_device in (True, False):
        dm = cifar_module(cifar_archive, on_device)
        torch.manual_seed(5)
        loader = dm.train_dataloader(augmented=False)
        batches.append([dm.prepare_batch(b, train=False) for b in loader])
    for (x, y), (x2, y2) in zip(*batches, strict=True):
        assert torch.equal(x, x2) and torch.equal(y, y2)


def test_the_dataloader_path_crops_images_that_are_not_square(cifar_archive):
    dm = cifar_module(cifar_archive, False)
    dm.splits["train"].images = torch.randint(0, 256, (8, 3, 24, 40), dtype=torch.uint8)
    transform = dm.image_transform(train=True)
    assert {tuple(transform(image).shape) for image in dm.splits["train"].images} == {(3, 24, 40)}


def outcomes(image: torch.Tensor, mean, std) -> torch.Tensor:
    """Every input one uint8 image can become: 9 x 9 crop offsets x (flipped or not), normalised,
    indexed ``(dy * 9 + dx) * 2 + flipped``."""
    padded = torch.nn.functional.pad(augment.to_float(image[None]), (4, 4, 4, 4))[0]
    found = []
    for dy in range(9):
        for dx in range(9):
            crop = padded[:, dy : dy + 32, dx : dx + 32]
            for flipped in (crop, crop.flip(2)):
                found.append(augment.normalize(flipped[None], mean, std)[0])
    return torch.stack(found)


def test_both_paths_draw_crops_and_flips_from_the_same_distribution(tmp_path):
    """One image augmented 3,240 times by each path: every result is one of the 162 crops and
    flips the augmentation allows, each path draws them uniformly (chi-square), and the two
    paths' counts agree (a contingency test)."""
    from conftest import write_cifar_archive

    root = write_cifar_archive(tmp_path / "cifar", per_batch=30, test=10)
    rng = np.random.default_rng(0)
    image = torch.from_numpy(rng.integers(0, 256, (3, 32, 32), dtype=np.uint8))
    n = 3240  # 20 per outcome
    counts = []
    for on_device in (True, False):
        torch.manual_seed(0)
        dm = cifar_module(root, on_device)
        dm.splits["train"].images = image.expand(n, 3, 32, 32).contiguous()
        dm.splits["train"].labels = torch.zeros(n, dtype=torch.int64)
        dm.batch_size = 540
        dm._placed.clear()
        every = outcomes(image, dm.mean, dm.std).flatten(1)
        got = torch.cat([dm.prepare_batch(b, train=True)[0] for b in dm.train_dataloader()])
        distance = torch.cdist(got.flatten(1), every, compute_mode="donot_use_mm_for_euclid_dist")
        nearest = distance.argmin(dim=1)
        assert distance.min(dim=1).values.max() < 1e-3  # each is one of the allowed outcomes
        counts.append(np.bincount(nearest.numpy(), minlength=len(every)))
    for c in counts:
        assert c.sum() == n and stats.chisquare(c).pvalue > 1e-3
        flipped = c[1::2].sum() / n
        assert abs(flipped - 0.5) < 0.04
    assert stats.chi2_contingency(np.stack(counts)).pvalue > 1e-3


def test_losses_read_back_in_batches_record_what_reading_every_step_records(store, monkeypatch):
    """On a GPU the losses stay on the device and are read back together: the store gets the
    same values, and a diverging run the same step and the same steps' values, as when every
    loss is read at once. (The diverged weights then train a few steps longer, which changes
    only their already meaningless validation and test numbers.)"""
    runs = [
        ("trainer.max_epochs=2",),
        ("optimizer.lr=1e4", "schedule=constant", "trainer.max_epochs=2"),
    ]
    for every in (1, 7):
        read_every = classmethod(lambda cls, device, n=every: n)
        monkeypatch.setattr(lightning.MetricsCallback, "sync_every", read_every)
        for overrides in runs:
            train(compose_run(*overrides, "rerun=true"))
    each_step, batched = histories(store)[:2], histories(store)[2:]
    assert each_step[0] == batched[0]
    for key in ("train_loss_step", "lr", "train_loss"):
        assert each_step[1][key] == batched[1][key]
    tags = [
        r.data.tags.get("bench.diverged_step")
        for r in store.search_runs(
            [store.get_experiment_by_name("digits").experiment_id],
            order_by=["attributes.start_time ASC"],
        )
    ]
    assert tags[0] is None and tags[1] is not None and tags[1] == tags[3]
    assert batched[1]["train_loss_step"][-1][0] == int(tags[3])


def test_auto_settings_give_a_gpu_its_fast_path_and_leave_the_cpu_as_it_was():
    trainer = {"precision": "auto", "channels_last": "auto", "deterministic": "auto"}
    assert device_settings(trainer, cuda=False, bf16=False) == {
        "precision": "32-true",
        "channels_last": False,
        "deterministic": True,
    }
    assert device_settings(trainer, cuda=True, bf16=True) == {
        "precision": "bf16-mixed",
        "channels_last": True,
        "deterministic": False,
        "benchmark": True,
    }
    assert device_settings(trainer, cuda=True, bf16=False)["precision"] == "16-mixed"
    chosen = {"precision": "32-true", "channels_last": False, "deterministic": True}
    assert device_settings(chosen, cuda=True, bf16=True) == chosen  # what a user sets stays


def test_a_compiled_network_never_compiles_again_as_the_lr_changes(store):
    """torch.compile traces the network once per shape and mode; the schedule changes the LR at
    every step outside it, so two epochs compile no more graphs than one."""
    import torch._dynamo
    from torch._dynamo.utils import counters

    graphs = []
    for epochs in (1, 2):
        torch._dynamo.reset()
        counters.clear()
        train(compose_run(f"trainer.max_epochs={epochs}", "trainer.compile=eager", "rerun=true"))
        graphs.append(counters["stats"]["unique_graphs"])
    assert 0 < graphs[0] == graphs[1]
    lrs = histories(store)[1]["lr"]
    assert len({v for _, v in lrs}) == len(lrs)  # the cosine LR changed at every step


@pytest.mark.parametrize(("seconds", "saves"), [(0, 3), (3600, 1)])
def test_checkpoints_are_written_at_most_once_per_interval_and_at_the_last_epoch(
    tmp_path, seconds, saves
):
    """A checkpoint is written at an epoch's end once ``seconds`` have passed (and at the last
    epoch's end), and the metrics it covers are flushed to the store just before it."""
    import pytorch_lightning as pl

    from bench import run

    datamodule, module = run.build(validate(compose_run("trainer.max_epochs=3")))
    events = []
    path = tmp_path / "checkpoints" / "run.ckpt"
    saver = lightning.EpochCheckpoint(path, lambda: events.append("flush"), seconds)
    saver._save_checkpoint = lambda trainer, filepath: events.append(trainer.current_epoch)
    trainer = pl.Trainer(
        max_epochs=3,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[saver],
        num_sanity_val_steps=0,
    )
    trainer.fit(module, datamodule=datamodule)
    expected = [0, 1, 2] if saves == 3 else [2]
    assert events == [e for epoch in expected for e in ("flush", epoch)]


def test_the_gpu_settings_also_run_on_the_cpu_and_are_recorded(store):
    """bf16 autocast, NHWC and non-deterministic kernels, asked for by name on the CPU (where
    ``auto`` never picks them): the run trains, and its tags say what it used."""
    train(
        compose_run(
            "trainer.max_epochs=1",
            "trainer.precision=bf16-mixed",
            "trainer.channels_last=true",
            "trainer.deterministic=false",
        )
    )
    train(compose_run("trainer.max_epochs=1", "rerun=true"))  # auto, on the CPU
    experiment = store.get_experiment_by_name("digits").experiment_id
    runs = store.search_runs([experiment], order_by=["attributes.start_time ASC"])
    chosen, auto = (r.data.tags for r in runs)
    assert [r.info.status for r in runs] == ["FINISHED", "FINISHED"]
    assert (chosen["bench.precision"], chosen["bench.channels_last"]) == ("bf16-mixed", "True")
    assert chosen["bench.deterministic"] == "False"
    assert (auto["bench.precision"], auto["bench.channels_last"]) == ("32-true", "False")
    assert auto["bench.deterministic"] == "True"
    assert runs[1].data.params["trainer.precision"] == "auto"  # the config as written
