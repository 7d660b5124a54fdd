"""Check bench's runs in the real MLflow UI with a headless browser, and save screenshots.

What it does, top to bottom:

1. Makes a small real store (``bench trainer.max_epochs=4`` in a temp folder: the default sweep,
   5 schedules x 3 seeds on sklearn digits, 1.5 to 3 min on 2 CPU cores) and keeps the address
   bench printed at its end ("Browse the runs: ..."), or reuses ``--store`` (the address then
   built as bench builds it). Checks with MlflowClient what bench promises to record: the
   experiment ``digits``, one sweep parent run (tag ``bench.kind=sweep``) with the headline
   metrics and report.md, its runs nested under it with params ``schedule`` and ``seed`` and
   metric ``val_acc``, and the sweep's saved view (experiment tag
   ``mlflow.sharedViewState.bench-<parent id>``).
2. Serves it with ``mlflow server`` on 127.0.0.1 and drives headless Chromium with Selenium,
   from the address bench printed and nothing else:

   - ``compare.png``: what that address opens: the sweep's saved view, its runs grouped by
     ``schedule``, the chart view with ``val_acc`` per epoch on the data's range (one line per
     schedule, the mean over its seeds with a min-max band), ``test_acc``, ``val_loss``, ``lr``;
     ``compare_chart.png``: the ``val_acc`` chart full screen, its legend naming every schedule.
   - ``runs.png``: the same view as a table (the first of the view buttons): the columns
     ``val_acc``, ``test_acc``, ``schedule`` and ``seed``.
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
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

from bench.tracking import VIEW_TAG, address, view_key

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
WINDOW = (1600, 1000)
WAIT_S = 30  # longest explicit wait for one element
SERVER_START_S = 90  # mlflow server takes 10-20 s to answer /health on 2 busy cores
SETTLE_S = 1.0  # let Plotly and the table finish drawing before a screenshot

EXPERIMENT = "digits"
BENCH_ARGS = ["trainer.max_epochs=4"]
GROUP_PARAM = "schedule"
CHART_METRIC = "val_acc"
TABLE_COLUMNS = ["val_acc", "test_acc", "schedule", "seed"]  # in the view's table
LOCAL_UI = "http://127.0.0.1:5000"  # where the address bench prints points (``mlflow ui``)

# Locators in MLflow 3.17's UI, found by reading its DOM.
ASSISTANT_CLOSE = (By.CSS_SELECTOR, "[data-component-id='mlflow.assistant.chat_panel.close']")
RUN_LINKS = (By.XPATH, "//div[@role='gridcell']//a[contains(@href, '/runs/')]")
GROUPED_BY = (By.XPATH, f"//button[starts-with(normalize-space(.), 'Group by: {GROUP_PARAM}')]")
TABLE_VIEW = (By.XPATH, "//input[@name='runs-view-mode'][@value='TABLE']/ancestor::label")
CARD = "//div[@data-testid='experiment-view-compare-runs-card']"  # a chart; its h4 is the title
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
    view = f"{VIEW_TAG}{view_key(parent.info.run_id)}"
    if view not in experiment.tags:
        raise UICheckFailed(f"no saved view of the sweep: experiment tag {view} missing")
    print(
        f"store: experiment {EXPERIMENT!r} (id {experiment.experiment_id}); sweep "
        f"{parent.info.run_name} with {len(children)} runs over {len(schedules)} schedules "
        f"({', '.join(schedules)}); {len(headline)} headline metrics; report.md logged; "
        f"saved view {view}"
    )
    return {
        "experiment_id": experiment.experiment_id,
        "parent_id": parent.info.run_id,
        "parent_name": parent.info.run_name,
        "n_children": len(children),
        "schedules": schedules,
        "headline": headline,
        "address": printed_address(folder)
        or address(LOCAL_UI, experiment.experiment_id, view_key(parent.info.run_id)),
    }


def printed_address(folder: Path) -> str | None:
    """The address in bench's last words, "Browse the runs: mlflow ui ..., then ADDRESS"."""
    log = folder / "bench.log"
    lines = log.read_text().splitlines() if log.exists() else []
    said = [line for line in lines if line.startswith("Browse the runs:")]
    return said[-1].rsplit(" ", 1)[-1] if said else None


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


def screenshot(driver, out: Path, name: str) -> None:
    driver.execute_script("document.activeElement && document.activeElement.blur()")
    away = {"type": "mouseMoved", "x": WINDOW[0] - 5, "y": 5}  # no hover tooltip left open
    driver.execute_cdp_cmd("Input.dispatchMouseEvent", away)
    time.sleep(SETTLE_S)
    path = out / name
    driver.save_screenshot(str(path))
    print(f"  saved {path}")


def compare_view(driver, base: str, facts: dict, out: Path) -> None:
    """Open the address bench printed (on this server's port) and check it shows the
    schedules compared: grouped by schedule, charts with val_acc, one legend entry each."""
    url = facts["address"].replace(LOCAL_UI, base, 1)
    print(f"  opening the address bench printed: {facts['address']}")
    driver.get(url)
    wait_for(driver, GROUPED_BY)
    card = wait_for(driver, (By.XPATH, f"{CARD}[.//h4[@title='{CHART_METRIC}']]"))
    close_if_present(driver, ASSISTANT_CLOSE)
    for schedule in facts["schedules"]:
        wait_for(driver, (By.XPATH, f"//*[normalize-space(text())='Group: {schedule}']"))
    titles = [e.get_attribute("title") for e in driver.find_elements(By.XPATH, f"{CARD}//h4")]
    print(f"  grouped by {GROUP_PARAM}: {len(facts['schedules'])} groups; charts: {titles}")
    screenshot(driver, out, "compare.png")

    card.find_element(*FULLSCREEN).click()
    want = [f"{schedule} ({CHART_METRIC})" for schedule in facts["schedules"]]
    try:
        WebDriverWait(driver, WAIT_S).until(
            lambda d: set(want) <= {e.text for e in d.find_elements(*LEGEND_TEXT)}
        )
    except TimeoutException as error:
        shown = [e.text for e in driver.find_elements(*LEGEND_TEXT)]
        raise UICheckFailed(f"chart legend shows {shown}, want {want}") from error
    print(f"  {CHART_METRIC} full screen, one line per schedule: {', '.join(want)}")
    screenshot(driver, out, "compare_chart.png")
    click(driver, DIALOG_CLOSE)


def runs_table(driver, facts: dict, out: Path) -> None:
    """The same view as a table: the sweep's runs under their groups, with the view's columns."""
    click(driver, TABLE_VIEW)
    for name in TABLE_COLUMNS:
        header = (By.XPATH, f"//div[@role='columnheader'][normalize-space(.)='{name}']")
        wait_for(driver, header)
    rows = len(wait_until(driver, lambda d: d.find_elements(*RUN_LINKS), "run rows"))
    print(f"  table: columns {', '.join(TABLE_COLUMNS)}; {rows} run rows shown")
    if rows < facts["n_children"]:
        raise UICheckFailed(f"the table shows {rows} runs, the sweep has {facts['n_children']}")
    screenshot(driver, out, "runs.png")


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
            ("compare", lambda: compare_view(driver, base, facts, out)),
            ("runs", lambda: runs_table(driver, facts, out)),
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
