"""What bench costs, measured: ``python -m bench.perf all`` (``nox -s perf``).

Six parts, each printed as a table when it completes, then one summary of every measure beside
its target (``--out DIR`` also writes ``perf.md``, the machine described, and a CSV per table):

- ``train``: one bench run against a bare PyTorch loop, and MLflow's share of the run. The bench
  run is ``bench.run.train`` in this process, into a SQLite store in a temporary folder, with a
  run folder for its per-epoch checkpoint and final weights (as ``bench-train`` gives it); its
  progress is one log line per epoch, as off a terminal. The bare loop is written here plainly:
  the same network (``bench.models.build``), the same data tensors (the data module's splits),
  batch size, seed, augmentation (``bench.data.augment``'s batched functions), optimizer steps,
  SGD with the same schedule through ``LambdaLR``, a validation pass per epoch and a test pass.
  Two settings: ``digits``, the default config (``conf/train.yaml``), and ``cifar10_cpu``, the
  CIFAR-10 CPU study (``experiment=cifar10_cpu``: the small ResNet on 5,000 training images)
  cut to ``--cifar-epochs`` epochs, on random images in torchvision's layout unless
  ``--cifar-root`` names the real data (the time does not depend on the pixels). Each side runs
  once to warm up (imports, first calls), then ``--repeats`` times, alternating; the table gives
  the median, min and max seconds and the ratio of the medians, bench / bare. MLflow's share is
  the time spent inside the store calls of ``bench.tracking`` (every write of a run's
  ``RunRecorder`` goes through ``tracking.store.retry_call``, which is timed here) over the
  run's wall time, the median over the timed runs; beside it, the time spent writing the run's
  checkpoint and final weights (``AtomicCheckpointIO.save_checkpoint`` and ``torch.save``, timed).
- ``augment``: training-batch throughput, images/s, of ``bench.data.CIFAR10DataModule`` on
  ``--images`` random 32x32 uint8 images, batches of ``--batch``: ``on_device=True`` (batches
  cut from the tensors on the device, cropped, flipped and normalised whole by
  ``prepare_batch``) against ``on_device=False`` (a DataLoader whose ``--workers`` processes
  crop, flip and normalise each image with torchvision). The time of an epoch is that of
  iterating the training loader and preparing every batch; ``--repeats`` epochs from one loader
  (its workers persist between epochs, as in a run), the median taken; the first epoch, worker
  start-up included, is shown apart.
- ``sweep``: a real ``bench-train -m`` grid of ``--jobs`` one-epoch digits runs (seeds
  0..N-1), a subprocess writing into a fresh store: its wall time, the time until its first run
  started (MLflow's start time of the run), and the per-job overhead, (wall time - the runs' own
  time from MLflow's start to end) / N; also the start-up of ``bench-train --help`` and of a
  bad-input error (``bench-train optimizer.lr=-1``), each the median of ``--repeats``, and their
  ratio (target: the error within 1.3x of ``--help``).
- ``report``: the report over ``--runs`` synthetic runs of ``--epochs`` epochs (below).
- ``gpu``, on a CUDA GPU (skipped without one): the ``cifar10_scratch`` run cut to
  ``--gpu-epochs`` epochs against the bare loop on the same GPU, per variant (float32, bf16,
  bf16 + channels_last, + torch.compile), seconds per epoch from the times of its per-epoch
  points, the GPU's busy share and peak memory; then ``--gpu-jobs`` runs sharing the GPU
  (``hydra/launcher=gpus``, ``--mps`` under CUDA MPS) against one alone (``bench.perf.gpu``).

``all`` runs them in that order (or name the parts to run). ``--quick`` shrinks every part to a
try-out of a few minutes (the sizes it uses show in the tables).

The ``report`` part builds synthetic runs in a real SQLite MLflow store, shaped like the runs
``bench`` records (see ``bench.tracking``): one experiment per size, a sweep's parent run with
every run nested under it, tags ``bench.kind=run``, ``schedule`` and ``seed``, the flattened
config as params, ``val_acc``, ``val_loss`` and ``train_loss`` per epoch (step = epoch, 1..E),
``lr`` at every optimizer step (LR_STEPS_PER_EPOCH per epoch) and ``test_acc`` at the end, status
FINISHED. Then it times

- ``load``: ``bench.tracking.load_runs`` of the whole experiment, in this process (whose MLflow
  client is already open: a fresh process first spends a second or two opening the store);
- ``report``: ``bench.report.main([... "--all" ...])``, the whole report (its loading included),
  in this process too; an error there is printed for that row and the next size goes on.

and prints one row per size: runs, epochs, create s, load s, report s. With ``--store DIR`` the
store is kept in DIR and a size already built there is reused (its create s is then empty);
without it the store lives in a temporary folder.

    python -m bench.perf all --out results/perf
    python -m bench.perf all --quick
    python -m bench.perf train --settings digits --repeats 5
    python -m bench.perf report --runs 100 1000 --epochs 100 --store /tmp/perf

One module per part: ``common`` (targets, sizes, tables, the machine), ``timers``, ``train``
(and ``accuracy``), ``augment``, ``sweep``, ``synthetic`` (the runs ``report`` times) and
``report``, ``gpu``; ``cli`` is the command.
"""

from bench.perf.augment import time_augment
from bench.perf.cli import main, parser, write_out
from bench.perf.common import Part, compose, machine, write_cifar10
from bench.perf.report import time_reports
from bench.perf.sweep import time_sweep
from bench.perf.timers import CallTimer, file_timer, store_timer
from bench.perf.train import (
    bare_run,
    bench_run,
    check_accuracy,
    setting_overrides,
    stored_run,
    time_train,
)

__all__ = [
    "CallTimer",
    "Part",
    "bare_run",
    "bench_run",
    "check_accuracy",
    "compose",
    "file_timer",
    "machine",
    "main",
    "parser",
    "setting_overrides",
    "store_timer",
    "stored_run",
    "time_augment",
    "time_reports",
    "time_sweep",
    "time_train",
    "write_cifar10",
    "write_out",
]
