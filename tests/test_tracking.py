"""Writes to the MLflow store are never cut in half by Ctrl-C or SIGTERM."""

import os
import signal

import pytest

from bench import tracking


@pytest.fixture(autouse=True)
def ctrl_c_raises():
    """Python's own Ctrl-C handler, whatever this process inherited (a job started in the
    background of a shell ignores SIGINT)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_signals_wait_for_the_store_call_to_end():
    done = []
    with pytest.raises(KeyboardInterrupt):
        with tracking.signals_deferred():
            os.kill(os.getpid(), signal.SIGINT)  # delivered at once without the deferral
            done.append("the write finished")
        done.append("not reached: the interrupt lands here")
    assert done == ["the write finished"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handler restored


def test_interrupted_run_is_marked_killed_in_the_store(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    experiment_id = tracking.ensure_experiment(uri, "e")
    recorder = tracking.RunRecorder(uri, experiment_id, "r", tags={})
    recorder.add({"lr": 0.1}, step=0)
    with pytest.raises(KeyboardInterrupt), tracking.signals_deferred():
        os.kill(os.getpid(), signal.SIGINT)
        recorder.flush()  # a real write, while the signal waits
    recorder.finish("KILLED", error="interrupted")  # the store is not left locked
    from mlflow.tracking import MlflowClient

    run = MlflowClient(uri).get_run(recorder.run_id)
    assert run.info.status == "KILLED"
    assert [m.value for m in MlflowClient(uri).get_metric_history(recorder.run_id, "lr")] == [0.1]
