"""A sweep's comparison in MLflow's own UI, opened by one address.

MLflow 3's runs page keeps "saved views" as experiment tags: ``mlflow.sharedViewState.<key>``
holds ``{"name", "createdAt", "updatedAt", "state"}``, ``state`` being the page's state as JSON
(the filter, the columns, the grouping, the charts), and ``#/experiments/<id>/runs?
viewStateShareKey=<key>`` opens it (the "Views" menu lists it by name too). MLflow 3.17's UI
writes the state deflated (``deflate;<base64>``) and reads plain JSON as well, which is what
bench writes. The state below is the one the UI itself saves after a person has filtered to one
sweep, ticked the columns, grouped by ``schedule`` and zoomed the ``val_acc`` chart
(``tests/ui_screenshots.py`` checks it in a real browser).

What a sweep's view shows: only that sweep's runs; columns ``val_acc``, ``test_acc``,
``schedule``, ``seed`` and the settings that vary; the runs grouped by schedule (and by each
setting that varies), one line per group, the mean over its seeds; the chart view with
``val_acc`` per epoch on the data's range, ``test_acc`` per group, then ``val_loss`` and ``lr``.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence

from bench.tracking.store import client, store_call
from bench.tracking.tags import PARENT_TAG

VIEW_TAG = "mlflow.sharedViewState."  # + key: one saved view of the experiment's runs page
VIEW_PARAM = "viewStateShareKey"  # the address parameter that opens a saved view
SECTION = "bench-schedules"  # the charts' section
# The charts, in order: (metric, chart type); val_acc gets the data's range.
CHARTS = (("val_acc", "LINE"), ("test_acc", "BAR"), ("val_loss", "LINE"), ("lr", "LINE"))
COLUMNS = ("metrics.`val_acc`", "metrics.`test_acc`", "params.`schedule`", "params.`seed`")


def view_key(sweep_id: str) -> str:
    """The saved view's key for a sweep: one per sweep, rewritten by each report of it."""
    return f"bench-{sweep_id}"


def run_filter(sweep_id: str, run_ids: Sequence[str], parents: Sequence[str]) -> str:
    """The runs-page filter that shows the sweep's runs and nothing else: its children, or, when
    it reused runs of earlier sweeps (their parent is another run), those runs by id."""
    if set(parents) <= {sweep_id}:
        return f"tags.`{PARENT_TAG}` = '{sweep_id}'"
    return "attributes.run_id IN (" + ", ".join(f"'{r}'" for r in run_ids) + ")"


def accuracy_range(values: Sequence[float]) -> dict[str, float]:
    """The ``val_acc`` chart's Y range: every value inside with a point to spare (MLflow draws
    an accuracy from 0 to 1 otherwise, which squeezes schedules a point apart into one line)."""
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return {}
    low = max(0.0, math.floor(min(finite) * 100 - 1) / 100)
    high = min(1.0, math.ceil(max(finite) * 100 + 1) / 100)
    return {"yMin": low, "yMax": high}


def _chart(metric: str, kind: str, y_range: dict[str, float]) -> dict:
    chart = {
        "uuid": f"bench-{metric}",
        "type": kind,
        "runsCountToCompare": 100,
        "metricSectionId": SECTION,
        "deleted": False,
        "isGenerated": False,
        "displayName": metric,
        "metricKey": metric,
    }
    if kind == "LINE":
        chart |= {
            "selectedMetricKeys": [metric],
            "lineSmoothness": 0,
            "xAxisScaleType": "linear",
            "scaleType": "linear",
            "range": y_range if metric == "val_acc" else {},
            "xAxisKey": "step",
            "selectedXAxisMetricKey": "",
            "yAxisKey": "metric",
            "yAxisExpressions": [],
            "ignoreOutliers": False,
            "useGlobalXaxisKey": True,
            "useGlobalLineSmoothing": True,
        }
    return chart


def comparison_state(filter_: str, group_by: Sequence[str], y_range: dict[str, float]) -> dict:
    """The runs page's state for comparing schedules (the fields MLflow 3.17's UI saves; the
    ones left out take the UI's defaults)."""
    return {
        "searchFilter": filter_,
        "orderByKey": "attributes.start_time",
        "orderByAsc": False,
        "startTime": "ALL",
        "lifecycleFilter": "Active",
        "datasetsFilter": [],
        "modelVersionFilter": "All Runs",
        "selectedColumns": [*COLUMNS, *(f"params.`{k}`" for k in group_by if k != "schedule")],
        "runsHiddenMode": "SHOW_ALL",
        "compareRunCharts": [_chart(m, kind, y_range) for m, kind in CHARTS],
        "compareRunSections": [
            {
                "uuid": SECTION,
                "name": "Schedules compared",
                "display": True,
                "isReordered": False,
                "deleted": False,
                "isGenerated": False,
            }
        ],
        "useGroupedValuesInCharts": True,
        "hideEmptyCharts": True,
        "groupBy": {
            "aggregateFunction": "average",
            "groupByKeys": [{"mode": "param", "groupByData": k} for k in group_by],
        },
        "globalLineChartConfig": {"xAxisKey": "step", "lineSmoothness": 0},
        "chartsSearchFilter": "",
    }


def saved_view(name: str, state: dict, now_ms: int) -> str:
    """The experiment tag's value: MLflow's saved-view envelope around ``state``."""
    return json.dumps(
        {"name": name, "createdAt": now_ms, "updatedAt": now_ms, "state": json.dumps(state)}
    )


@store_call
def write_view(
    uri: str,
    experiment_id: str,
    sweep_id: str,
    name: str,
    filter_: str,
    group_by: Sequence[str],
    y_range: dict[str, float],
) -> str:
    """Save the sweep's comparison as a view of the experiment's runs page; returns its key."""
    key = view_key(sweep_id)
    value = saved_view(name, comparison_state(filter_, group_by, y_range), int(time.time() * 1000))
    client(uri).set_experiment_tag(experiment_id, VIEW_TAG + key, value)
    return key


def address(base: str, experiment_id: str, key: str | None = None) -> str:
    """The runs page of an experiment on the training-runs side (MLflow 3 otherwise opens an
    experiment on its GenAI overview), in the sweep's saved view, charts shown, when ``key``."""
    page = f"{base.rstrip('/')}/#/experiments/{experiment_id}/runs?workflowType=machine_learning"
    return page + (f"&{VIEW_PARAM}={key}&compareRunsMode=CHART" if key else "")


def browse_hint(uri: str, experiment_id: str, key: str | None = None) -> str:
    """How to see an experiment's runs in MLflow's UI: the address of its training-runs table,
    or of the sweep's saved view ``key``; for a local store, the ``mlflow ui`` to start first."""
    if uri.startswith(("http://", "https://")):
        return f"Browse the runs: {address(uri, experiment_id, key)}"
    return (
        f"Browse the runs: mlflow ui --backend-store-uri {uri}, then "
        f"{address('http://127.0.0.1:5000', experiment_id, key)}"
    )
