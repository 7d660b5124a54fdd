"""A run's identity, and what a re-run does with the runs the store already has."""

import pytest
from conftest import compose_run

from bench import resume
from bench.resume import Previous, decide

BASE = ("trainer.max_epochs=2",)


@pytest.mark.parametrize(
    "other",
    [
        "tracking.uri=sqlite:///elsewhere.db",
        "tracking.experiment=other",
        "run_name=renamed",
        "rerun=true",
        "report.baseline=cosine",
        "report.dir=results",
        "trainer.enable_progress_bar=false",
        "trainer.enable_checkpointing=false",
    ],
)
def test_what_cannot_change_the_numbers_keeps_the_identity(other):
    assert resume.identity(compose_run(*BASE, other)) == resume.identity(compose_run(*BASE))


@pytest.mark.parametrize(
    "other",
    [
        "seed=1",
        "optimizer.lr=0.1",
        "schedule=step",
        "schedule.warmup_fraction=0.1",
        "data.batch_size=32",
        "data.split_seed=1",
        "trainer.max_epochs=3",
        "trainer.max_loss=10",
        "model.width=8",
    ],
)
def test_what_changes_the_numbers_changes_the_identity(other):
    assert resume.identity(compose_run(*BASE, other)) != resume.identity(compose_run(*BASE))


def previous(run_id, status, start, checkpoint=None, sweeps=("s1",)):
    return Previous(run_id, status, start, sweeps[0], sweeps, checkpoint)


def there(path):
    return path.startswith("/there")


def test_a_finished_run_is_skipped_whatever_else_the_store_has():
    runs = [
        previous("killed", "KILLED", 3, "/there/last.ckpt"),
        previous("done", "FINISHED", 2),
        previous("failed", "FAILED", 1),
    ]
    decision = decide(runs, exists=there)
    assert (decision.action, decision.run_id) == (resume.SKIP, "done")
    assert decision.sweeps == ("s1",)


def test_the_latest_finished_run_counts():
    runs = [previous("old", "FINISHED", 1), previous("new", "FINISHED", 5)]
    assert decide(runs).run_id == "new"


def test_a_run_in_progress_is_not_started_twice():
    decision = decide([previous("live", "RUNNING", 1), previous("dead", "KILLED", 2)])
    assert (decision.action, decision.run_id) == (resume.RUNNING, "live")


def test_an_unfinished_run_resumes_from_its_latest_checkpoint_that_exists():
    runs = [
        previous("gone", "KILLED", 3, "/gone/last.ckpt"),  # its file was deleted
        previous("killed", "KILLED", 2, "/there/a/last.ckpt"),
        previous("older", "FAILED", 1, "/there/b/last.ckpt"),
    ]
    decision = decide(runs, exists=there)
    assert decision.action == resume.RESUME
    assert (decision.run_id, decision.checkpoint) == ("killed", "/there/a/last.ckpt")


def test_without_a_checkpoint_the_run_starts_afresh():
    assert decide([previous("killed", "KILLED", 2)], exists=there).action == resume.RUN
    assert decide([]).action == resume.RUN


def test_rerun_ignores_earlier_sweeps_but_not_the_current_one():
    runs = [
        previous("earlier", "FINISHED", 1, sweeps=("s1",)),
        previous("requeued", "KILLED", 2, "/there/last.ckpt", sweeps=("s0", "s2")),
    ]
    assert decide(runs, rerun=True, sweep="s3", exists=there).action == resume.RUN
    assert decide(runs, rerun=True, sweep=None, exists=there).action == resume.RUN
    decision = decide(runs, rerun=True, sweep="s2", exists=there)
    assert (decision.action, decision.run_id) == (resume.RESUME, "requeued")


def test_starting_weights_trained_again_under_the_same_name_make_a_new_run(tmp_path):
    import torch

    from bench import run

    weights = tmp_path / "weights.pt"
    torch.save({"w": torch.zeros(3)}, weights)
    config = compose_run(*BASE, f"model.weights={weights}")
    before = run.identity(config)
    assert run.identity(config) == before
    torch.save({"w": torch.ones(3)}, weights)  # the source run trained again
    assert run.identity(config) != before


def test_a_run_from_a_weights_file_records_which_content_it_started_from(tmp_path):
    import torch

    from bench import run, spec

    weights = tmp_path / "weights.pt"
    torch.save({"w": torch.zeros(3)}, weights)
    first = run.provenance(spec.of(compose_run(*BASE, f"model.weights={weights}")))
    torch.save({"w": torch.ones(3)}, weights)  # the source run trained again
    second = run.provenance(spec.of(compose_run(*BASE, f"model.weights={weights}")))
    assert first["bench.weights"].startswith(f"{weights} (sha256 ")
    assert first["bench.weights"] != second["bench.weights"]
    assert "bench.weights" not in run.provenance(spec.of(compose_run(*BASE)))


def test_a_checkpoint_changed_after_it_was_written_is_set_aside(tmp_path):
    """Bytes flipped inside a tensor leave a file torch still loads, holding other weights: the
    digest written beside it tells. A checkpoint without its digest is not trusted either."""
    import torch

    from bench import run
    from bench.lightning import AtomicCheckpointIO, digest_path

    path = tmp_path / "run.ckpt"
    weights = torch.arange(1000, dtype=torch.float32)
    AtomicCheckpointIO().save_checkpoint({"state_dict": {"w": weights}, "epoch": 2}, path)
    assert run.checkpoint_usable(str(path))
    data = bytearray(path.read_bytes())
    at = data.find(weights[500:510].numpy().tobytes())  # inside the tensor's storage
    data[at : at + 100] = bytes(b ^ 0xFF for b in data[at : at + 100])
    path.write_bytes(bytes(data))
    flipped = torch.load(path, weights_only=True)["state_dict"]["w"]  # loads, but is not it
    assert not torch.equal(flipped, weights)
    assert not run.checkpoint_usable(str(path))
    assert (tmp_path / "run.ckpt.damaged").exists() and not digest_path(path).exists()

    AtomicCheckpointIO().save_checkpoint({"state_dict": {"w": weights}, "epoch": 2}, path)
    digest_path(path).unlink()
    assert not run.checkpoint_usable(str(path))


def test_a_damaged_checkpoint_is_set_aside_and_not_resumed(tmp_path):
    import torch

    from bench import run
    from bench.lightning import AtomicCheckpointIO, digest_path

    good, cut = tmp_path / "good.ckpt", tmp_path / "cut.ckpt"
    AtomicCheckpointIO().save_checkpoint({"state_dict": {"w": torch.zeros(3)}, "epoch": 2}, good)
    cut.write_bytes(good.read_bytes()[:100])  # a write cut short
    digest_path(cut).write_text(digest_path(good).read_text())
    assert run.checkpoint_usable(str(good))
    assert not run.checkpoint_usable(str(cut))
    assert not cut.exists() and (tmp_path / "cut.ckpt.damaged").exists()
    assert not run.checkpoint_usable(str(tmp_path / "absent.ckpt"))
    runs = [previous("killed", "KILLED", 1, str(cut))]
    assert decide(runs, exists=run.checkpoint_usable).action == resume.RUN


def test_a_cpu_run_names_its_processor_closely_enough_to_tell_where_its_numbers_repeat():
    # "AMD EPYC" alone covers generations whose kernels give other runs from the same seed:
    # the device tag adds the family and model numbers and the kernel set torch picks.
    import re
    from pathlib import Path

    import torch

    from bench import run, spec

    device = run.provenance(spec.of(compose_run(*BASE)))["bench.device"]
    assert device.startswith("CPU ") and device.endswith(" cores")
    assert f"torch kernels {torch.backends.cpu.get_cpu_capability()}" in device
    cpuinfo = Path("/proc/cpuinfo")
    text = cpuinfo.read_text() if cpuinfo.exists() else ""
    family = re.search(r"^cpu family\s*:\s*(\d+)", text, re.M)
    model = re.search(r"^model\s*:\s*(\d+)", text, re.M)
    if family and model:  # Linux on x86
        assert f"family {family[1]} model {model[1]}" in device
