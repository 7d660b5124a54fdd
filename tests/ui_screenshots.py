"""Check bench's runs in the real MLflow UI with a headless browser, and save screenshots.

What it does, top to bottom:

1. Makes a small real store (``bench trainer.max_epochs=4`` in a temp folder: the default sweep,
   5 schedules x 3 seeds on sklearn digits, 1.5 to 3 min on 2 CPU cores), or reuses ``--store``.
   Checks with MlflowClient what bench promises to record: the experiment ``digits`` tagged
   ``mlflow.experimentKind=custom_model_development``, one sweep parent run (tag
   ``bench.kind=sweep``) with the headline metrics and report.md, its runs nested under it with
   params ``schedule`` and ``seed`` and metric ``val_acc``.
2. Serves it with ``mlflow server`` on 127.0.0.1 and drives headless Chromium with Selenium:

   - ``landing.png``: the experiment as MLflow first opens it (``#/experiments/<id>``); prints
     whether that is the training-runs view or the GenAI overview. (MLflow 3.17's UI opens every
     experiment on the GenAI overview, whatever its ``mlflow.experimentKind`` tag: the view follows
     the sidebar's "GenAI | Model training" switch, GenAI by default, remembered by the browser.)
   - ``runs.png``: sidebar switch "Model training" (when MLflow opened on GenAI), the sweep's
     parent row expanded with its [+], "Columns": val_acc, test_acc, schedule and seed ticked,
     Dataset, Source and Models (empty for bench) unticked.
   - ``grouped_chart.png``: "Group by" -> Params -> schedule, then the Chart view (the chart icon
     beside the table icon), chart search "val_acc", the val_acc chart's Y axis set to the data's
     range ("Edit chart"), shown full screen: one line per schedule, the mean over its seeds with a
     min-max band. ``grouped_view.png``: the Chart view behind it, with the grouped runs list
     (its small val_acc chart keeps the 0-1 axis: only the full-screen chart takes the range).
   - ``parent_run.png``: the sweep's parent run, its Overview with the headline metrics;
     ``report_artifact.png``: its Artifacts tab with report.md rendered.
3. Prints each check and exits non-zero with a message naming the step that failed (and saves
   ``failed_<step>.png`` and ``.html`` beside the screenshots). The server and the browser are
   always stopped.

Run it (needs ``pip install selenium`` and Debian's ``chromium`` and ``chromium-driver``):

    python tests/ui_screenshots.py --out results/ui
    python tests/ui_screenshots.py --out /tmp/ui --store DIR   # DIR/mlflow.db of an earlier bench

Not collected by pytest (the name does not start with ``test_``); ``nox -s ui`` runs it.
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from mlflow import MlflowClient
from selenium import webdriver
from selenium.common.exceptions import TimeoutException, WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
WINDOW = (1600, 1000)
WAIT_S = 30  # longest explicit wait for one element
GUIDANCE_WAIT_S = 10  # how long the GenAI overview may take to pop its "Detect Issues" tip
SERVER_START_S = 90  # mlflow server takes 10-20 s to answer /health on 2 busy cores
SETTLE_S = 1.0  # let Plotly and the table finish drawing before a screenshot

EXPERIMENT = "digits"
EXPERIMENT_KIND = ("mlflow.experimentKind", "custom_model_development")
BENCH_ARGS = ["trainer.max_epochs=4"]
GROUP_PARAM = "schedule"
CHART_METRIC = "val_acc"
TABLE_COLUMNS = ["val_acc", "test_acc", "schedule", "seed"]  # ticked in "Columns"
EMPTY_COLUMNS = ["Dataset", "Source", "Models"]  # shown by default, all "-" for bench: unticked

# Locators in MLflow 3.17's UI, found by reading its DOM.
GUIDANCE_CLOSE = (By.CSS_SELECTOR, "[aria-label='Close guidance']")
ASSISTANT_CLOSE = (By.CSS_SELECTOR, "[data-component-id='mlflow.assistant.chat_panel.close']")
MODEL_TRAINING_TOGGLE = (By.XPATH, "//div[@role='button'][normalize-space(.)='Model training']")
RUN_LINKS = (By.XPATH, "//div[@role='gridcell']//a[contains(@href, '/runs/')]")
EXPAND_CHILD_RUNS = (By.CSS_SELECTOR, "button[data-component-id$='runnamecellrenderer.tsx_46']")
MATCHING_RUNS = (By.XPATH, "//span[strong][contains(normalize-space(.), 'matching runs')]")
COLUMNS_BUTTON = (By.CSS_SELECTOR, "[data-testid='column-selection-dropdown']")
COLUMNS_SEARCH = (By.CSS_SELECTOR, "input[placeholder='Search columns']")
GROUP_BY_BUTTON = (By.XPATH, "//button[normalize-space(.)='Group by']")
GROUP_BY_SEARCH = (By.XPATH, "//input[@placeholder='Search']")
CHART_VIEW = (By.XPATH, "//input[@name='runs-view-mode'][@value='CHART']/ancestor::label")
CHART_SEARCH = (By.XPATH, "//input[@placeholder='Search metric charts']")
CARD = "//div[@data-testid='experiment-view-compare-runs-card']"  # a chart; its h4 is the title
CARD_MENU = (By.CSS_SELECTOR, "[data-testid='experiment-view-compare-runs-card-menu']")
CARD_EDIT = (By.CSS_SELECTOR, "[data-testid='experiment-view-compare-runs-card-edit']")
CARD_TO_TOP = (By.CSS_SELECTOR, "[data-testid='experiment-view-compare-runs-move-to-top']")
Y_MIN = (By.CSS_SELECTOR, "input[aria-label='y-axis-min']")
Y_MAX = (By.CSS_SELECTOR, "input[aria-label='y-axis-max']")
SAVE_CHART = (By.CSS_SELECTOR, "[data-testid='experiment-view-compare-runs-chart-modal-confirm']")
FULLSCREEN = (By.CSS_SELECTOR, "button[data-component-id='fullscreen_button_chartcard']")
LEGEND_TEXT = (By.XPATH, "//div[@role='dialog']//span[contains(normalize-space(.), ' (')]")
DIALOG_CLOSE = (By.XPATH, "//div[@role='dialog']//button[@aria-label='Close']")


class UICheckFailed(Exception):
    """A step's check failed; the message says what was expected and what the UI showed."""


# --- the store ---------------------------------------------------------------------------------


def make_store(folder: Path) -> None:
    """Run bench's default sweep, shortened, in ``folder``: its mlflow.db and mlruns/ land there."""
    bench = Path(sys.executable).with_name("bench")
    command = [str(bench) if bench.exists() else "bench", *BENCH_ARGS]
    print(f"store: running `{' '.join(command)}` in {folder} ...", flush=True)
    started = time.monotonic()
    env = {**os.environ, "MLFLOW_TRACKING_URI": ""}
    with open(folder / "bench.log", "w") as log:
        done = subprocess.run(command, cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT)
    if done.returncode != 0:
        tail = (folder / "bench.log").read_text().splitlines()[-30:]
        raise UICheckFailed(f"bench exited {done.returncode}:\n" + "\n".join(tail))
    print(f"store: bench finished in {time.monotonic() - started:.0f} s")


def check_store(folder: Path) -> dict:
    """What bench recorded, as MlflowClient sees it; raises if a promised fact is missing."""
    client = MlflowClient(f"sqlite:///{folder / 'mlflow.db'}")
    experiment = client.get_experiment_by_name(EXPERIMENT)
    if experiment is None:
        raise UICheckFailed(f"no experiment {EXPERIMENT!r} in {folder / 'mlflow.db'}")
    key, value = EXPERIMENT_KIND
    if experiment.tags.get(key) != value:
        raise UICheckFailed(
            f"experiment {EXPERIMENT!r} has tag {key}={experiment.tags.get(key)!r}, want {value!r}"
        )
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    sweeps = [r for r in runs if r.data.tags.get("bench.kind") == "sweep"]
    if not sweeps:
        raise UICheckFailed("no sweep parent run (tag bench.kind=sweep)")
    parent = max(sweeps, key=lambda r: r.info.start_time)
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    schedules = sorted({r.data.params.get(GROUP_PARAM) for r in children} - {None})
    if not children or not schedules:
        raise UICheckFailed(f"the sweep {parent.info.run_id} has no child runs with param schedule")
    headline = parent.data.metrics  # <schedule>.final_val_acc_pct, .diff_vs_baseline_pt
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    if not any(m.endswith(".final_val_acc_pct") for m in headline) or "report.md" not in artifacts:
        raise UICheckFailed(f"the sweep parent lacks headline metrics or report.md: {artifacts}")
    accuracies = [
        m.value for r in children for m in client.get_metric_history(r.info.run_id, CHART_METRIC)
    ]
    print(
        f"store: experiment {EXPERIMENT!r} (id {experiment.experiment_id}) tagged {key}={value}; "
        f"sweep {parent.info.run_name} with {len(children)} runs over {len(schedules)} schedules "
        f"({', '.join(schedules)}); {len(headline)} headline metrics; report.md logged"
    )
    return {
        "experiment_id": experiment.experiment_id,
        "parent_id": parent.info.run_id,
        "parent_name": parent.info.run_name,
        "n_runs": len(runs),
        "n_children": len(children),
        "schedules": schedules,
        "headline": headline,
        "acc_range": (min(accuracies), max(accuracies)),
    }


# --- the server and the browser ----------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(folder: Path, port: int, log_path: Path) -> subprocess.Popen:
    """``mlflow server`` over the store; it reads runs' artifacts from the paths they recorded.
    One worker and no job runner (its 7 huey processes serve only GenAI jobs): quick to start and
    to stop on 2 cores."""
    command = [
        sys.executable, "-m", "mlflow", "server",
        "--backend-store-uri", f"sqlite:///{folder / 'mlflow.db'}",
        "--default-artifact-root", str(folder / "mlruns"),
        "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
    ]  # fmt: skip
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    started = time.monotonic()
    with open(log_path, "w") as log:
        server = subprocess.Popen(
            command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    while time.monotonic() < started + SERVER_START_S:
        if server.poll() is not None:
            raise UICheckFailed(f"mlflow server exited {server.returncode}; see {log_path}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as answer:
                if answer.status == 200:
                    waited = time.monotonic() - started
                    print(
                        f"server: mlflow server answers on http://127.0.0.1:{port} ({waited:.0f} s)"
                    )
                    return server
        except OSError:
            time.sleep(1)
    stop_server(server)
    raise UICheckFailed(f"mlflow server did not answer /health within {SERVER_START_S} s")


def stop_server(server: subprocess.Popen) -> None:
    if server.poll() is None:
        os.killpg(server.pid, signal.SIGTERM)  # its own session: uvicorn goes with it
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


def start_browser() -> webdriver.Chrome:
    for path in (CHROMIUM, CHROMEDRIVER):
        if not Path(path).exists():
            raise UICheckFailed(f"{path} missing: apt-get install chromium chromium-driver")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage"):
        options.add_argument(argument)
    options.add_argument(f"--window-size={WINDOW[0]},{WINDOW[1]}")
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    # Headless Chromium's viewport is smaller than --window-size; pin it so screenshots are WINDOW.
    metrics = {"width": WINDOW[0], "height": WINDOW[1], "deviceScaleFactor": 1, "mobile": False}
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)
    return driver


# --- helpers for the steps ---------------------------------------------------------------------


def wait_until(driver, condition, what: str):
    """Wait up to WAIT_S for ``condition``; on timeout the message says what did not show."""
    return WebDriverWait(driver, WAIT_S).until(condition, message=f"waited {WAIT_S} s for {what}")


def wait_for(driver, locator, clickable: bool = False):
    condition = EC.element_to_be_clickable if clickable else EC.presence_of_element_located
    return wait_until(driver, condition(locator), locator[1])


def click(driver, locator) -> None:
    wait_for(driver, locator, clickable=True).click()


def close_if_present(driver, locator) -> None:
    """Close a panel that MLflow opens on its own (the assistant)."""
    for element in driver.find_elements(*locator):
        if element.is_displayed():
            element.click()


def wait_for_guidance(driver):
    """The GenAI overview pops a "Detect Issues" tip once it has loaded; it blocks clicks elsewhere
    until closed. Its close button, or None if no tip came within GUIDANCE_WAIT_S."""
    try:
        tip = EC.element_to_be_clickable(GUIDANCE_CLOSE)
        return WebDriverWait(driver, GUIDANCE_WAIT_S).until(tip)
    except TimeoutException:
        return None


def screenshot(driver, out: Path, name: str) -> None:
    driver.execute_script("document.activeElement && document.activeElement.blur()")
    away = {"type": "mouseMoved", "x": WINDOW[0] - 5, "y": 5}  # no hover tooltip left open
    driver.execute_cdp_cmd("Input.dispatchMouseEvent", away)
    time.sleep(SETTLE_S)
    path = out / name
    driver.save_screenshot(str(path))
    print(f"  saved {path}")


def tree_checkbox(name: str):
    """The checkbox of the column ``name`` in the Columns dropdown (the first, if params and tags
    share the name: params are listed first)."""
    title = f"//span[contains(@class, 'tree-title')][normalize-space(.)='{name}']"
    checkbox = "//span[contains(@class, 'tree-checkbox')]"
    return (By.XPATH, f"(//div[contains(@class, 'tree-treenode')][.{title}]{checkbox})[1]")


# --- the steps ---------------------------------------------------------------------------------


def open_experiment(driver, base: str, facts: dict, out: Path) -> str:
    """Open the experiment as a person would; return which view MLflow chose."""
    driver.get(f"{base}/#/experiments/{facts['experiment_id']}")
    wait_until(driver, lambda d: "/overview" in d.current_url or "/runs" in d.current_url, "a view")
    landed = driver.current_url.split("#", 1)[1]
    view = "training runs" if "/runs" in landed else "GenAI overview"
    print(f"  experiment opens on: {view} (#{landed})")
    tip = wait_for_guidance(driver) if view != "training runs" else None
    screenshot(driver, out, "landing.png")
    if tip is not None:
        tip.click()
        wait_until(driver, EC.invisibility_of_element_located(GUIDANCE_CLOSE), "the tip to close")
    return view


def runs_table(driver, facts: dict, out: Path) -> None:
    if "/runs" not in driver.current_url:
        click(driver, MODEL_TRAINING_TOGGLE)  # the sidebar's "GenAI | Model training" switch
        wait_until(driver, lambda d: "/runs" in d.current_url, "the runs view")
    wait_for(driver, RUN_LINKS)
    close_if_present(driver, ASSISTANT_CLOSE)
    top_level = len(driver.find_elements(*RUN_LINKS))
    click(driver, EXPAND_CHILD_RUNS)  # the [+] before the sweep's parent run
    expected = 1 + facts["n_children"]
    try:
        WebDriverWait(driver, WAIT_S).until(lambda d: len(d.find_elements(*RUN_LINKS)) >= expected)
    except TimeoutException as error:
        shown = len(driver.find_elements(*RUN_LINKS))
        raise UICheckFailed(f"expanded the parent: {shown} run rows, want {expected}") from error
    matching = wait_for(driver, MATCHING_RUNS).text
    print(f"  runs table: {top_level} top-level row(s); expanded: {expected} rows; '{matching}'")
    if not matching.startswith(f"{facts['n_runs']} "):
        raise UICheckFailed(f"the table says '{matching}', the store has {facts['n_runs']} runs")
    click(driver, COLUMNS_BUTTON)
    search = wait_for(driver, COLUMNS_SEARCH, clickable=True)
    for name in TABLE_COLUMNS + EMPTY_COLUMNS:  # a click ticks or unticks
        search.send_keys(Keys.CONTROL, "a")
        search.send_keys(name)
        click(driver, tree_checkbox(name))
    search.send_keys(Keys.ESCAPE)
    for name in TABLE_COLUMNS:
        header = (By.XPATH, f"//div[@role='columnheader'][normalize-space(.)='{name}']")
        wait_for(driver, header)
    print(f"  columns added: {', '.join(TABLE_COLUMNS)}; removed: {', '.join(EMPTY_COLUMNS)}")
    screenshot(driver, out, "runs.png")


def grouped_chart(driver, facts: dict, out: Path) -> None:
    click(driver, GROUP_BY_BUTTON)
    wait_for(driver, GROUP_BY_SEARCH, clickable=True).send_keys(GROUP_PARAM)
    param_item = (
        By.XPATH,
        f"//div[@role='menuitemcheckbox'][normalize-space(.)='{GROUP_PARAM}']"
        "[preceding-sibling::div[normalize-space(.)='Params']]",
    )  # the param, not the tag of the same name
    click(driver, param_item)
    wait_for(
        driver, (By.XPATH, f"//button[starts-with(normalize-space(.), 'Group by: {GROUP_PARAM}')]")
    )
    for schedule in facts["schedules"]:
        wait_for(driver, (By.XPATH, f"//*[normalize-space(text())='Group: {schedule}']"))
    print(f"  grouped by param {GROUP_PARAM}: {len(facts['schedules'])} groups")

    click(driver, CHART_VIEW)
    wait_for(driver, CHART_SEARCH, clickable=True).send_keys(CHART_METRIC)
    card = wait_for(driver, (By.XPATH, f"{CARD}[.//h4[@title='{CHART_METRIC}']]"))
    # MLflow draws accuracy from 0 to 1, squeezing the schedules into one line: zoom the Y axis.
    low, high = facts["acc_range"]
    y_min, y_max = math.floor(low * 100 - 1) / 100, min(1.0, math.ceil(high * 100 + 1) / 100)
    card.find_element(*CARD_MENU).click()
    click(driver, CARD_EDIT)
    for locator, value in ((Y_MIN, y_min), (Y_MAX, y_max)):
        field = wait_for(driver, locator, clickable=True)
        field.send_keys(Keys.CONTROL, "a")
        field.send_keys(str(value))
    click(driver, SAVE_CHART)
    wait_until(driver, EC.invisibility_of_element_located(SAVE_CHART), "Edit chart to close")
    card.find_element(*CARD_MENU).click()
    click(driver, CARD_TO_TOP)
    wait_for(driver, (By.XPATH, f"({CARD}//h4)[1][@title='{CHART_METRIC}']"))
    screenshot(driver, out, "grouped_view.png")

    card.find_element(*FULLSCREEN).click()
    want = [f"{schedule} ({CHART_METRIC})" for schedule in facts["schedules"]]
    try:
        WebDriverWait(driver, WAIT_S).until(
            lambda d: set(want) <= {e.text for e in d.find_elements(*LEGEND_TEXT)}
        )
    except TimeoutException as error:
        shown = [e.text for e in driver.find_elements(*LEGEND_TEXT)]
        raise UICheckFailed(f"chart legend shows {shown}, want {want}") from error
    print(
        f"  {CHART_METRIC} chart, Y axis {y_min}..{y_max}, one line per schedule: {', '.join(want)}"
    )
    screenshot(driver, out, "grouped_chart.png")
    click(driver, DIALOG_CLOSE)


def parent_run(driver, base: str, facts: dict, out: Path) -> None:
    run_path = f"#/experiments/{facts['experiment_id']}/runs/{facts['parent_id']}"
    driver.get(f"{base}/{run_path}")
    wait_for(driver, (By.XPATH, f"//*[normalize-space(text())='{facts['parent_name']}']"))
    close_if_present(driver, ASSISTANT_CLOSE)
    for metric, value in facts["headline"].items():  # each metric's row: name, value
        row = f"//div[@role='row'][.//a[normalize-space(.)='{metric}']]/div[@role='cell'][2]"
        shown = wait_for(driver, (By.XPATH, row)).text
        if not math.isclose(float(shown), value, rel_tol=1e-9, abs_tol=1e-12):
            raise UICheckFailed(f"the parent run shows {metric} = {shown}, the store has {value}")
    print(f"  parent run {facts['parent_name']}: its {len(facts['headline'])} metrics and values")
    screenshot(driver, out, "parent_run.png")

    click(driver, (By.XPATH, "//*[@role='tab'][normalize-space(.)='Artifacts']"))
    click(driver, (By.XPATH, "//*[normalize-space(text())='report.md']"))
    heading = wait_for(driver, (By.XPATH, "//h1[starts-with(normalize-space(.), 'Report:')]"))
    print(f"  artifacts: report.md rendered, heading '{heading.text}'")
    screenshot(driver, out, "report_artifact.png")


# --- main --------------------------------------------------------------------------------------


def run_checks(store: Path, out: Path, port: int) -> None:
    facts = check_store(store)
    # The server's log stays beside the store, out of the folder of screenshots.
    server = start_server(store, port, store / "mlflow-server.log")
    driver = None
    step = "browser"
    try:
        driver = start_browser()
        base = f"http://127.0.0.1:{port}"
        steps = [
            ("landing", lambda: open_experiment(driver, base, facts, out)),
            ("runs", lambda: runs_table(driver, facts, out)),
            ("grouped_chart", lambda: grouped_chart(driver, facts, out)),
            ("parent_run", lambda: parent_run(driver, base, facts, out)),
        ]
        for step, action in steps:
            print(f"{step}:", flush=True)
            step_started = time.monotonic()
            action()
            print(f"  ({time.monotonic() - step_started:.0f} s)")
    except (UICheckFailed, WebDriverException) as error:
        if driver is not None:
            driver.save_screenshot(str(out / f"failed_{step}.png"))
            (out / f"failed_{step}.html").write_text(driver.page_source)
        message = getattr(error, "msg", None) or str(error)
        raise UICheckFailed(f"step {step}: {message.strip().splitlines()[0]}") from error
    finally:
        if driver is not None:
            driver.quit()
        stop_server(server)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for the screenshots")
    parser.add_argument("--store", type=Path, help="a folder with mlflow.db (default: run bench)")
    parser.add_argument("--port", type=int, help="the mlflow server's port (default: a free one)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    scratch = None
    try:
        if args.store is None:
            scratch = Path(tempfile.mkdtemp(prefix="bench-ui-"))
            make_store(scratch)
        store = (args.store or scratch).resolve()
        run_checks(store, args.out.resolve(), args.port or free_port())
    except UICheckFailed as error:
        print(f"FAILED: {error}", file=sys.stderr)
        return 1
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
    print(
        f"ok: all UI checks passed in {time.monotonic() - started:.0f} s; screenshots in {args.out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
