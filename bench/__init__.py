"""bench: which learning-rate schedule should I train with, answered with evidence.

Where each part lives (the reference pages: README.md and the README.md files beside the
code and the configs):

bench/schedules.py
    the LR formulas, one pure function each with its knobs' rules, warmup, the snapshot steps of
    warm restarts
bench/rules.py
    what a config value may be: the rules behind every "allowed: ..." message, and checked,
    which declares a component's rules beside it
bench/config.py
    the checks before any run: config values, arguments, data and weights on disk, the run's
    length
bench/devices.py
    the machine a run lands on: accelerators, devices, Lightning's precision values, how many
    processes train, and the trainer's auto values settled for the device
bench/spec.py
    the checked run (RunSpec): frozen, cut into what the model, optimizer, schedule and Trainer
    take, made once by the checks
bench/optim.py
    parameter groups and weight decay (norms and biases, coupling to the LR), schedule-free
    optimizers, BatchNorm recalibration
bench/ensemble.py
    snapshot ensembles: averaging the snapshots' softmax
bench/lr_find.py
    the LR range test (bench-lr-find): the curve's reference points and the suggestions
bench/data/
    one module per dataset (digits.py, cifar10.py, image_folder.py), what image datasets share
    (images.py), the split logic (splits.py), batches cut from data held on the device
    (batches.py), the batched augmentation (augment.py)
bench/models/
    the networks (small_cnn.py, resnet.py), starting weights (weights.py), the factories the
    configs name (__init__.py)
bench/lightning.py
    the LightningModule (two-stage fine-tuning, schedule-free modes, label smoothing), the
    callbacks that feed MLflow, keep snapshots, stop a diverging run and make checkpoints
    resumable, progress display
bench/resume.py
    a run's identity, and what a re-run does with the runs the store has (skip, resume, run)
bench/tracking/
    everything that talks to MLflow, one job per module: tags.py (the names on the runs),
    store.py (opening the store under a lock, writes retried while it is locked or a server
    is away, no signal inside a store call), ownership.py (owners, stale runs, claims),
    writing.py (parent runs, RunRecorder), reading.py (bulk reads into tidy frames)
bench/cli.py
    the commands bench, bench-train and bench-lr-find, and the Hydra tasks
bench/launch.py
    several runs at once: how many jobs the gpus and cpus launchers start, which GPU each run
    trains on
bench/sweep.py
    a sweep's life: the resolved config of each grid point (its paths made absolute) and its
    checks, the MLflow parent run, what the store already has, an interrupt, the end
bench/run.py
    one training run, on plain data: data, model, Lightning, MLflow record, weights
bench/analysis/
    the report's numbers, pure functions of tidy frames: stats.py (intervals, paired tests,
    Holm, seeds needed), curves.py (what one run's curve says), pooling.py (settings, cells
    counted once), tables.py (accuracy, stability, ensemble, ranks, LR sensitivity), claims.py
    (the claims and their verdicts)
bench/plots.py
    the figures, one function each (one fixed colour per schedule)
bench/report/
    bench-report, in the order the data flows: options.py (what a report compares),
    analyse.py (runs -> frames, pure), views.py (frames -> tables for readers), document.py
    (report.md, the table files, the parent run's description), figures.py, data.py (the
    runs a report was drawn from, kept in its data/), publish.py (the one edge: runs read from
    MLflow once or from a report's data, the folder swapped in whole, the parent run updated),
    cli.py (the command)
bench/perf/
    nox -s perf, one module per part: train.py (bench against a bare PyTorch loop, MLflow's
    share), augment.py (augmentation throughput), sweep.py (a sweep's overhead, start-up),
    synthetic.py and report.py (the report over many runs), timers.py, common.py, cli.py
conf/
    the Hydra config groups; conf/hydra/launcher/ the launchers gpus, cpus and slurm
"""
