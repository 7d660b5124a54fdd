"""Everything that talks to MLflow: where runs are written and where they are read back.

Layout of the store:

- one MLflow experiment per bench experiment (``tracking.experiment`` in the config);
- one parent run per sweep (tag ``bench.kind=sweep``), its runs nested under it through the
  ``mlflow.parentRunId`` tag (tag ``bench.kind=run``);
- each run holds the flattened config as params plus ``total_steps`` and ``steps_per_epoch``, tags
  ``schedule`` and ``seed``, the metrics ``lr`` and ``train_loss_step`` at every optimizer step
  (step = 0-based optimizer step), ``train_loss``, ``val_acc`` and ``val_loss`` once per epoch
  (step = epoch number, 1 after the first epoch), ``test_acc`` once at the end, and the resolved
  config as ``config.yaml``; tags ``bench.key`` (its identity, ``bench.resume``), ``bench.owner``
  (the process running it) and, while it can be resumed, ``bench.checkpoint``;
- a run that a later sweep reused (skipped as finished, or resumed) carries the tag
  ``bench.sweep.<that sweep's parent id>`` and counts in that sweep too.

Every experiment carries the tag ``mlflow.experimentKind=custom_model_development`` (MLflow
3.17's UI still opens an experiment on its GenAI overview: the addresses bench prints name the
training-runs side). A reported sweep leaves a saved view of the runs page (experiment tag
``mlflow.sharedViewState.bench-<parent id>``): its runs grouped by schedule, charts shown.

One job per module: ``tags`` (the names on the runs), ``store`` (opening the store, retries,
signals), ``ownership`` (who runs what), ``writing`` (parent runs, ``RunRecorder``, the journal
of writes a server could not take), ``reading`` (bulk reads into tidy frames), ``views`` (a
sweep's comparison as a saved view of MLflow's UI, and the address that opens it). The names
below are the package's interface.
"""

from bench.tracking.ownership import (
    CLAIM_KIND,
    CLAIM_SECONDS,
    CLAIM_SETTLE_SECONDS,
    alive,
    claimed,
    close_stale,
    kill_running,
    link,
    owner,
    previous_runs,
)
from bench.tracking.reading import (
    BULK_PAGE,
    BULK_RUNS,
    EPOCH_COLUMNS,
    LR_COLUMNS,
    RUN_COLUMNS,
    Point,
    Runs,
    branch_point,
    check_sweep,
    elapsed_ms,
    equals,
    experiment_id,
    experiment_names,
    latest_sweep,
    load_lr,
    load_runs,
    search,
    seconds_of,
    sweep_info,
    sweep_runs,
)
from bench.tracking.store import (
    ANSWERED,
    CACHE_ENV,
    LOCKED,
    RETRY_SECONDS,
    StoreError,
    client,
    close_stores,
    ensure_experiment,
    exit_quickly,
    resolve_uri,
    retry_call,
    retrying,
    signals_deferred,
    sqlite_file,
    store_call,
    store_template,
)
from bench.tracking.tags import (
    BRANCHED_AT_TAG,
    BRANCHED_FROM_TAG,
    BRANCHES_TAG,
    CHECKPOINT_TAG,
    DIVERGED_STEP_TAG,
    DIVERGED_TAG,
    ENSEMBLE_METRICS,
    EPOCH_METRICS,
    ERROR_TAG,
    EXPERIMENT_KIND,
    EXPERIMENT_KIND_TAG,
    KEY_TAG,
    KIND_TAG,
    LINK_PREFIX,
    LOSSES,
    OVERRIDES_TAG,
    OWNER_TAG,
    PARENT_TAG,
    STEP_METRICS,
)
from bench.tracking.views import (
    VIEW_PARAM,
    VIEW_TAG,
    accuracy_range,
    address,
    browse_hint,
    run_filter,
    view_key,
    write_view,
)
from bench.tracking.writing import (
    RunRecorder,
    apply_write,
    end_run,
    flatten,
    log_artifacts,
    log_metrics,
    send_pending,
    set_tags,
    start_sweep,
)

__all__ = [
    "branch_point",
    "BRANCHED_AT_TAG",
    "BRANCHED_FROM_TAG",
    "BRANCHES_TAG",
    "STEP_METRICS",
    "elapsed_ms",
    "ANSWERED",
    "CACHE_ENV",
    "BULK_PAGE",
    "BULK_RUNS",
    "CHECKPOINT_TAG",
    "CLAIM_KIND",
    "CLAIM_SECONDS",
    "CLAIM_SETTLE_SECONDS",
    "DIVERGED_STEP_TAG",
    "DIVERGED_TAG",
    "ENSEMBLE_METRICS",
    "EPOCH_COLUMNS",
    "EPOCH_METRICS",
    "ERROR_TAG",
    "EXPERIMENT_KIND",
    "EXPERIMENT_KIND_TAG",
    "KEY_TAG",
    "KIND_TAG",
    "LINK_PREFIX",
    "LOCKED",
    "LOSSES",
    "LR_COLUMNS",
    "OVERRIDES_TAG",
    "OWNER_TAG",
    "PARENT_TAG",
    "Point",
    "RETRY_SECONDS",
    "RUN_COLUMNS",
    "RunRecorder",
    "Runs",
    "StoreError",
    "alive",
    "apply_write",
    "browse_hint",
    "VIEW_PARAM",
    "VIEW_TAG",
    "accuracy_range",
    "address",
    "run_filter",
    "view_key",
    "write_view",
    "check_sweep",
    "claimed",
    "client",
    "close_stale",
    "close_stores",
    "end_run",
    "ensure_experiment",
    "equals",
    "exit_quickly",
    "experiment_id",
    "experiment_names",
    "flatten",
    "kill_running",
    "latest_sweep",
    "link",
    "load_lr",
    "load_runs",
    "log_artifacts",
    "log_metrics",
    "owner",
    "previous_runs",
    "resolve_uri",
    "retry_call",
    "retrying",
    "search",
    "seconds_of",
    "send_pending",
    "set_tags",
    "signals_deferred",
    "sqlite_file",
    "start_sweep",
    "store_call",
    "store_template",
    "sweep_info",
    "sweep_runs",
]
