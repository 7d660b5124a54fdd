"""A sweep's saved view of MLflow's runs page: its filter finds the sweep's runs and no other,
reused runs included; its accuracy axis holds every value."""

import json

from mlflow import MlflowClient

from bench import tracking


def test_the_views_filter_finds_a_sweeps_runs_its_reused_ones_included(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    experiment = client.create_experiment("e")

    def sweep_with(n: int) -> tuple[str, list[str]]:
        parent = client.create_run(experiment).info.run_id
        kids = [
            client.create_run(experiment, tags={tracking.PARENT_TAG: parent}).info.run_id
            for _ in range(n)
        ]
        return parent, kids

    first, first_runs = sweep_with(3)
    second, second_runs = sweep_with(2)

    def found(filter_: str) -> set[str]:
        return {r.info.run_id for r in client.search_runs([experiment], filter_)}

    # A sweep of its own runs: its children, and not the other sweep's.
    own = tracking.run_filter(second, second_runs, [second] * 2)
    assert found(own) == set(second_runs)
    # A sweep that reused a run of an earlier sweep: that run too, still nested elsewhere.
    reused = [*second_runs, first_runs[0]]
    mixed = tracking.run_filter(second, reused, [second, second, first])
    assert found(mixed) == set(reused)

    key = tracking.write_view(uri, experiment, second, "a name", own, ["schedule"], {})
    tag = client.get_experiment(experiment).tags[tracking.VIEW_TAG + key]
    envelope = json.loads(tag)
    assert envelope["name"] == "a name" and envelope["createdAt"] == envelope["updatedAt"]
    assert json.loads(envelope["state"])["searchFilter"] == own
    # Written again (the sweep reported again), the same view is replaced, not added.
    tracking.write_view(uri, experiment, second, "a name", own, ["schedule", "x"], {})
    tags = client.get_experiment(experiment).tags
    assert [k for k in tags if k.startswith(tracking.VIEW_TAG)] == [tracking.VIEW_TAG + key]
    state = json.loads(json.loads(tags[tracking.VIEW_TAG + key])["state"])
    assert [k["groupByData"] for k in state["groupBy"]["groupByKeys"]] == ["schedule", "x"]


def test_the_accuracy_axis_holds_every_value_with_a_point_to_spare():
    assert tracking.accuracy_range([0.912, 0.975, float("nan")]) == {"yMin": 0.90, "yMax": 0.99}
    # Never beyond [0, 1], and nothing to draw gives MLflow's own axis.
    assert tracking.accuracy_range([0.005, 0.999]) == {"yMin": 0.0, "yMax": 1.0}
    assert tracking.accuracy_range([]) == {}


def test_the_address_opens_the_view_on_the_training_runs_side():
    hint = tracking.browse_hint("sqlite:///x.db", "7", "bench-abc")
    assert hint.endswith(
        "then http://127.0.0.1:5000/#/experiments/7/runs?workflowType=machine_learning"
        "&viewStateShareKey=bench-abc&compareRunsMode=CHART"
    )
    served = tracking.browse_hint("http://host:5000/", "7")
    assert (
        served
        == "Browse the runs: http://host:5000/#/experiments/7/runs?workflowType=machine_learning"
    )
