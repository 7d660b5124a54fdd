"""Image data: the ImageFolder path on real CIFAR-10, the CIFAR-10 path on a generated archive in
torchvision's layout, the split knobs, and the batched augmentation."""

import pathlib
import pickle

import numpy as np
import pytest
import torch
from conftest import CIFAR_CLASSES, write_cifar_archive
from test_app import run

from bench.data import CIFAR10DataModule, DataError, ImageFolderDataModule, augment, cifar10, splits


def module(cls, root, **kw):
    dm = cls(root=str(root), **kw)
    dm.setup()
    return dm


def test_image_folder_reads_real_cifar10_with_fixed_stratified_splits(cifar_subset):
    dm = module(ImageFolderDataModule, cifar_subset, val_size=100)
    assert dm.classes == CIFAR_CLASSES
    assert (dm.num_classes, dm.in_channels, dm.image_size) == (10, 3, 32)
    assert {s: len(dm.splits[s]) for s in dm.splits} == {"train": 500, "val": 100, "test": 200}
    for split in ("train", "val", "test"):
        counts = np.bincount(dm.splits[split].labels.numpy(), minlength=10)
        assert counts.min() == counts.max()  # stratified
    images = dm.splits["train"].images
    assert images.dtype == torch.uint8 and images.shape[1:] == (3, 32, 32)
    assert 0.3 < images.float().mean() / 255 < 0.6  # real photographs, not blank
    # Per-channel statistics of the training split normalise it.
    assert all(0.35 < m < 0.6 for m in dm.mean) and all(0.15 < s < 0.35 for s in dm.std)

    # The same split_seed gives the same validation images whatever torch's seed.
    torch.manual_seed(123)
    again = module(ImageFolderDataModule, cifar_subset, val_size=100)
    assert torch.equal(again.splits["val"].images, dm.splits["val"].images)
    other = module(ImageFolderDataModule, cifar_subset, val_size=100, split_seed=1)
    assert not torch.equal(other.splits["val"].images, dm.splits["val"].images)


def test_subsets_keep_classes_relabelled_and_per_class_counts(cifar_subset):
    dm = module(
        ImageFolderDataModule,
        cifar_subset,
        val_size=20,
        classes=["ship", "cat", 0],
        train_per_class=15,
        test_per_class=5,
    )
    assert dm.classes == ["ship", "cat", "airplane"]
    assert dm.num_classes == 3
    assert np.bincount(dm.splits["train"].labels.numpy()).tolist() == [15, 15, 15]
    assert len(dm.splits["val"]) == 20
    assert np.bincount(dm.splits["test"].labels.numpy()).tolist() == [5, 5, 5]
    # The validation split does not move when the training subset changes size.
    more = module(ImageFolderDataModule, cifar_subset, val_size=20, classes=["ship", "cat", 0])
    assert torch.equal(more.splits["val"].images, dm.splits["val"].images)
    assert len(more.splits["train"]) == 3 * 60 - 20


def test_cifar10_reads_torchvisions_layout(cifar_archive):
    dm = module(CIFAR10DataModule, cifar_archive, val_size=10, normalize="imagenet")
    assert dm.classes == CIFAR_CLASSES and dm.image_size == 32
    assert {s: len(dm.splits[s]) for s in dm.splits} == {"train": 140, "val": 10, "test": 40}
    # Every generated image is filled with 20 * label + its place in the batch (< 20).
    for split in dm.splits.values():
        values = split.images[:, 0, 0, 0].long()
        assert torch.equal(values // 20, split.labels)
        assert bool((split.images == split.images[:, :1, :1, :1]).all())  # uniform, HWC -> CHW
    assert dm.mean == list(augment.IMAGENET_MEAN)


def test_cifar10_batches_reach_the_model_augmented_only_in_training(cifar_archive):
    dm = module(CIFAR10DataModule, cifar_archive, val_size=10, batch_size=32, resize=48)
    x, y = next(iter(dm.train_dataloader()))
    assert x.dtype == torch.uint8 and x.shape == (32, 3, 32, 32) and y.shape == (32,)
    assert len(dm.train_dataloader()) == 5  # 140 images in batches of 32
    out, _ = dm.on_after_batch_transfer((x, y), 0)  # no trainer: evaluation path
    expected = augment.resize(augment.normalize(x.float() / 255, dm.mean, dm.std), 48)
    assert out.shape == (32, 3, 48, 48) and torch.allclose(out, expected)


def test_missing_and_broken_data_is_named():
    with pytest.raises(DataError, match="data.root: no folder at"):
        ImageFolderDataModule.index("/nonexistent/folder")
    problems = CIFAR10DataModule.problems(root="/nonexistent", val_size=10)
    assert "looked for cifar-10-batches-py/ with data_batch_1" in problems[0]
    assert "data.download=true" in problems[0] and "data=image_folder" in problems[0]


def test_split_problems_name_the_field(cifar_subset):
    check = ImageFolderDataModule.problems
    root = str(cifar_subset)
    assert check(root=root, val_size=100) == []
    assert (
        "data.classes: ['dgo'] not in the data"
        in check(root=root, val_size=5, classes=["dgo", "cat"])[0]
    )
    assert "data.val_size: got 5" in check(root=root, val_size=5)[0]  # fewer than 10 classes
    assert "data.val_size: got 600" in check(root=root, val_size=600)[0]  # leaves no training
    assert "data.val_size: got 1.5" in check(root=root, val_size=1.5)[0]


def test_empty_class_folder_is_an_error(tmp_path):
    for split in ("train", "test"):
        for c in ("a", "b"):
            (tmp_path / split / c).mkdir(parents=True)
    from PIL import Image

    for split, c in (("train", "a"), ("train", "b"), ("test", "a")):
        Image.new("RGB", (8, 8)).save(tmp_path / split / c / "0.png")
    with pytest.raises(DataError, match=r"class folder\(s\) test/b .* hold no images"):
        ImageFolderDataModule.index(tmp_path)


@pytest.mark.parametrize("shape", [(64, 3, 8, 8), (64, 1, 6, 9), (64, 4, 9, 5)])
def test_random_crop_is_a_shifted_window_of_the_padded_image(shape):
    torch.manual_seed(0)
    x = torch.rand(*shape)
    h, w = shape[2:]
    out = augment.random_crop(x, padding=2)
    assert out.shape == x.shape
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    offsets = set()
    for i in range(len(x)):
        hits = [
            (dy, dx)
            for dy in range(5)
            for dx in range(5)
            if torch.equal(out[i], padded[i, :, dy : dy + h, dx : dx + w])
        ]
        assert len(hits) == 1
        offsets.add(hits[0])
    assert len(offsets) > 10  # offsets vary from image to image
    assert torch.equal(augment.random_crop(x, padding=0), x)


@pytest.mark.parametrize("dtype", [torch.float32, torch.uint8])
def test_random_flip_mirrors_about_half(dtype):
    torch.manual_seed(0)
    x = (torch.rand(400, 3, 4, 4) * 255).to(dtype)
    torch.manual_seed(1)
    out = augment.random_flip(x)
    assert out.dtype == dtype
    flipped = [torch.equal(o, i.flip(2)) for o, i in zip(out, x, strict=True)]
    kept = [torch.equal(o, i) for o, i in zip(out, x, strict=True)]
    assert all(f or k for f, k in zip(flipped, kept, strict=True))
    assert 150 < sum(flipped) < 250
    torch.manual_seed(1)  # the same draws whatever the images' type
    assert torch.equal(augment.random_flip(x.float()), out.float())


def test_channel_stats_match_numpy():
    images = torch.randint(0, 256, (50, 3, 5, 5), dtype=torch.uint8)
    mean, std = augment.channel_stats(images, chunk=7)
    data = images.numpy().astype(np.float64) / 255
    assert np.allclose(mean, data.mean(axis=(0, 2, 3)))
    assert np.allclose(std, data.std(axis=(0, 2, 3)))


def test_split_helpers():
    labels = np.repeat(np.arange(4), 25)
    train, val = splits.carve_val(labels, 20, split_seed=0)
    assert len(val) == 20 and np.bincount(labels[val]).tolist() == [5, 5, 5, 5]
    assert sorted(np.concatenate([train, val])) == list(range(100))
    keep = splits.per_class(labels, 3, split_seed=0)
    assert np.bincount(labels[keep]).tolist() == [3, 3, 3, 3]
    index, new, names = splits.select_classes(labels, ["a", "b", "c", "d"], ["c", 0])
    assert names == ["c", "a"] and sorted(set(new)) == [0, 1]
    assert (new[labels[index] == 2] == 0).all() and (new[labels[index] == 0] == 1).all()


class _RunsCode:
    """A pickle that, loaded by plain pickle.load, would create a file: a stand-in for any
    command a crafted batch could run."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])
def test_a_crafted_cifar10_batch_is_refused_as_data_and_never_run(
    cifar_archive, tmp_path, protocol
):
    marker = tmp_path / "ran"
    batch = cifar_archive / "cifar-10-batches-py" / "data_batch_3"
    with open(batch, "wb") as f:
        pickle.dump({"data": _RunsCode(marker), "labels": []}, f, protocol=protocol)
    result = run(
        "bench-train",
        "data=cifar10",
        f"data.root={cifar_archive}",
        "data.val_size=10",
        "model=resnet_small",
        cwd=tmp_path,
        env={"MLFLOW_TRACKING_URI": ""},
    )
    assert result.returncode == 2, result.stderr[-2000:]
    assert f"{batch} is not a CIFAR-10 batch" in result.stderr
    assert "it asks to load " in result.stderr  # the callable it wanted, refused
    assert not marker.exists()
    assert not (tmp_path / "mlflow.db").exists()  # refused before any run


def test_cifar10_batches_of_every_pickle_protocol_still_load(tmp_path):
    """The allow-list admits the arrays NumPy writes under every protocol."""
    root = write_cifar_archive(tmp_path / "old")
    for name in ("data_batch_1", "test_batch"):
        path = root / "cifar-10-batches-py" / name
        entry = pickle.loads(path.read_bytes())
        for protocol in range(2, pickle.HIGHEST_PROTOCOL + 1):
            path.write_bytes(pickle.dumps(entry, protocol=protocol))
            read = cifar10._unpickle(path)
            assert np.array_equal(read["data"], entry["data"]) and read["labels"] == entry["labels"]


def test_a_file_that_is_not_an_image_is_named_before_any_run(tmp_path):
    from PIL import Image

    for split in ("train", "test"):
        for c in ("a", "b"):
            (tmp_path / split / c).mkdir(parents=True)
            for i in range(6):
                Image.new("RGB", (8, 8), (40 * i, 0, 0)).save(tmp_path / split / c / f"{i}.png")
    good = (tmp_path / "train" / "b" / "3.png").read_bytes()
    (tmp_path / "train" / "b" / "3.png").write_bytes(good[:40] + b"\0" * 20 + good[60:])  # bad CRC
    (tmp_path / "test" / "a" / "1.png").write_bytes(b"not an image at all")
    result = run(
        "bench",
        "data=image_folder",
        f"data.root={tmp_path}",
        "data.val_size=2",
        "schedule=constant",
        "seed=0",
        cwd=tmp_path,
        env={"MLFLOW_TRACKING_URI": ""},
    )
    assert result.returncode == 2, result.stderr[-2000:]
    assert "2 file(s) in" in result.stderr and "are not readable images" in result.stderr
    assert str(tmp_path / "train" / "b" / "3.png") in result.stderr
    assert str(tmp_path / "test" / "a" / "1.png") in result.stderr
    assert not (tmp_path / "mlflow.db").exists()  # nothing was run
