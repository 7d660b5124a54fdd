"""Networks: ResNet-18 as torchvision builds it, both stems, weights files, two-stage
fine-tuning."""

import pytest
import pytorch_lightning as pl
import torch
import torchvision
from conftest import compose_run
from torch.nn import functional as F

from bench import lightning, models, schedules, spec
from bench.config import validate
from bench.data import DigitsDataModule
from bench.models import WeightsError


def features(net, x):
    """What the backbone computes: the input of the head."""
    head, net.fc = net.fc, torch.nn.Identity()
    try:
        return net.eval()(x)
    finally:
        net.fc = head


def test_resnet18_is_torchvisions_resnet18():
    torch.manual_seed(0)
    theirs = torchvision.models.resnet18(num_classes=10).eval()
    ours = models.resnet(num_classes=10)
    ours.load_state_dict(theirs.state_dict())  # strict: the same names and shapes
    x = torch.randn(2, 3, 64, 64)
    assert torch.allclose(ours.eval()(x), theirs(x), atol=1e-5)
    n = sum(p.numel() for p in ours.parameters())
    assert n == sum(p.numel() for p in theirs.parameters()) == 11_181_642


@pytest.mark.parametrize(("stem", "spatial"), [("imagenet", 1), ("cifar", 4)])
def test_both_stems_forward_and_train_one_step(stem, spatial):
    torch.manual_seed(0)
    net = models.resnet(num_classes=7, stem=stem, width=8)
    shapes = []
    net.layer4.register_forward_hook(lambda module, inputs, out: shapes.append(out.shape))
    x, y = torch.randn(4, 3, 32, 32), torch.randint(0, 7, (4,))
    assert net(x).shape == (4, 7)
    assert shapes == [(4, 64, spatial, spatial)]  # 32x32: stride 32 with the ImageNet stem, 8
    before = [p.detach().clone() for p in net.parameters()]
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    loss = F.cross_entropy(net(x), y)
    loss.backward()
    optimizer.step()
    assert torch.isfinite(loss)
    assert all(not torch.equal(b, p) for b, p in zip(before, net.parameters(), strict=True))


def test_weights_file_round_trip(tmp_path):
    torch.manual_seed(0)
    source = models.resnet(num_classes=5, stem="cifar", width=8)
    torch.save(source.state_dict(), tmp_path / "weights.pt")
    loaded = models.resnet(10, stem="cifar", width=8, weights=str(tmp_path / "weights.pt"))
    x = torch.randn(3, 3, 32, 32)
    assert torch.equal(features(loaded, x), features(source, x))
    assert loaded.fc.out_features == 10  # a new head for the new classes

    # A Lightning checkpoint holds the same tensors under the module's `net.` prefix.
    state = {f"net.{k}": v for k, v in source.state_dict().items()}
    torch.save({"state_dict": state, "epoch": 3}, tmp_path / "last.ckpt")
    from_ckpt = models.resnet(10, stem="cifar", width=8, weights=str(tmp_path / "last.ckpt"))
    assert torch.equal(features(from_ckpt, x), features(source, x))


def test_weights_that_do_not_fit_are_named(tmp_path):
    torch.save(models.resnet(10, stem="cifar", width=8).state_dict(), tmp_path / "small.pt")
    with pytest.raises(WeightsError) as e:
        models.resnet(10, stem="imagenet", width=8, weights=str(tmp_path / "small.pt"))
    assert "wrong shape conv1.weight (8, 3, 3, 3) (the model has (8, 3, 7, 7))" in str(e.value)

    with pytest.raises(WeightsError, match=r"missing layer1\.2\.conv1\.weight, .* and 6 more"):
        models.resnet(
            10, stem="cifar", width=8, blocks=[3, 2, 2, 2], weights=str(tmp_path / "small.pt")
        )
    with pytest.raises(WeightsError, match="model.weights: no file at"):
        models.resnet(10, weights=str(tmp_path / "absent.pt"))
    (tmp_path / "junk.pt").write_text("not a checkpoint")
    with pytest.raises(WeightsError, match=r"cannot read .*weights_only=True"):
        models.resnet(10, weights=str(tmp_path / "junk.pt"))
    with pytest.raises(WeightsError, match="imagenet weights exist for ResNet-18 only"):
        models.resnet(10, width=16, weights="imagenet")


class Snapshots(pl.Callback):
    """The backbone's and the head's tensors (BatchNorm statistics included) after each epoch."""

    def __init__(self):
        self.seen = []

    def on_train_epoch_end(self, trainer, module):
        state = {k: v.detach().clone() for k, v in module.net.state_dict().items()}
        self.seen.append(state)


def changed(a, b, prefix):
    return {k for k in a if k.startswith(prefix) and not torch.equal(a[k], b[k])}


def test_freeze_then_unfreeze_changes_which_parameters_move():
    pl.seed_everything(0)
    net = models.small_cnn(num_classes=10, in_channels=1, image_size=8)
    start = {k: v.detach().clone() for k, v in net.state_dict().items()}
    module = lightning.Classifier(
        net,
        lambda params: torch.optim.SGD(params, lr=0.05, momentum=0.9),
        schedules.make("constant", base=0.05),
        freeze_epochs=1,
    )
    snapshots = Snapshots()
    trainer = pl.Trainer(
        max_epochs=2,
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        limit_train_batches=5,
        limit_val_batches=1,
        callbacks=[snapshots],
    )
    trainer.fit(module, datamodule=DigitsDataModule())
    first, second = snapshots.seen
    # Epoch 1: only the head moves; the backbone's weights and BatchNorm statistics stay.
    assert changed(start, first, "features.") == set()
    assert changed(start, first, "fc.") == {"fc.weight", "fc.bias"}
    # Epoch 2: everything trains, BatchNorm statistics included.
    assert {"features.0.weight", "features.1.running_mean"} <= changed(first, second, "features.")
    assert all(p.requires_grad for p in module.parameters())


def test_a_torchvision_builder_by_target_gets_a_head_for_the_datas_classes(cifar_archive):
    """torchvision's resnet18(*, weights, progress, **kwargs) names no num_classes: it is
    handed through **kwargs, so the head fits the data (3 of CIFAR-10's classes), not
    ImageNet's 1000. On 1-channel digits the same model is refused, saying why."""
    from bench import run
    from bench.config import ConfigError

    torchvision_model = ["model._target_=torchvision.models.resnet18", "~model.width"]
    torchvision_model += ["~model.weights"]
    config = compose_run(
        *torchvision_model,
        "data=cifar10",
        f"data.root={cifar_archive}",
        "data.val_size=9",
        "data.classes=[cat,dog,ship]",
    )
    _, module = run.build(spec.of(config))
    assert tuple(module.net.fc.weight.shape) == (3, 512)
    with pytest.raises(ConfigError, match=r"expected input\[2, 1, 8, 8\] to have 3 channels"):
        validate(compose_run(*torchvision_model))


def test_a_model_whose_output_does_not_fit_the_classes_is_refused_before_training():
    from bench.config import ConfigError

    config = compose_run("model._target_=torch.nn.Flatten", "~model.width", "~model.weights")
    with pytest.raises(ConfigError) as e:
        validate(config)
    [problem] = e.value.problems
    assert problem.startswith("model._target_=torch.nn.Flatten: its output for a batch of 2 is")
    assert "(2, 64)" in problem and "expected (2, 10)" in problem
