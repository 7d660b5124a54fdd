"""``report``: loading and reporting many synthetic runs (``synthetic``)."""

from __future__ import annotations

import contextlib
import io
import tempfile
import time
from pathlib import Path

import pandas as pd

from bench import tracking
from bench.perf.common import REPORT_TARGET_RUNS, REPORT_TARGET_SECONDS, Part, measure, say
from bench.perf.synthetic import WORKERS, build, experiment_name


def time_load(uri: str, runs: int, epochs: int) -> float:
    start = time.perf_counter()
    data = tracking.load_runs(uri, experiment_name(runs, epochs))
    seconds = time.perf_counter() - start
    assert len(data.runs) == runs, (len(data.runs), runs)
    assert len(data.epochs) == runs * epochs, (len(data.epochs), runs * epochs)
    return seconds


def time_report(uri: str, runs: int, epochs: int, out: Path) -> float | str:
    """Seconds the whole report takes, or the error it ended with."""
    argv = ["--experiment", experiment_name(runs, epochs), "--all", "--out", str(out)]
    argv += ["--tracking-uri", uri]
    printed = io.StringIO()
    start = time.perf_counter()
    try:
        from bench import report

        with contextlib.redirect_stdout(printed), contextlib.redirect_stderr(printed):
            code = report.main(argv)
    except (Exception, SystemExit) as e:
        detail = printed.getvalue().strip().splitlines()[-3:]
        return f"{type(e).__name__}: {e} {' '.join(detail)}".strip()
    if code:
        return f"exit code {code}: {' '.join(printed.getvalue().strip().splitlines()[-3:])}"
    return time.perf_counter() - start


def time_reports(sizes: list[int], epochs: int, store: str | None) -> Part:
    rows, errors = [], []
    with contextlib.ExitStack() as stack:
        folder = store or stack.enter_context(tempfile.TemporaryDirectory(prefix="perf-"))
        folder = Path(folder).resolve()
        folder.mkdir(parents=True, exist_ok=True)
        uri = f"sqlite:///{folder / 'mlflow.db'}"
        say(f"report: store {uri}")
        for runs in sizes:
            say(f"report: building {runs} runs of {epochs} epochs (unless the store has them)")
            created = build(uri, runs, epochs)
            loaded = time_load(uri, runs, epochs)
            say(f"report: the report over {runs} runs")
            reported = time_report(uri, runs, epochs, folder / "reports")
            if isinstance(reported, str):
                errors.append(f"report of {runs} runs failed: {reported}")
                reported = float("nan")
            rows.append(
                {
                    "runs": runs,
                    "epochs": epochs,
                    "create s": float("nan") if created is None else created,
                    "load s": loaded,
                    "report s": reported,
                }
            )
            say(f"report: {runs} runs done")
    summary = []
    for row in rows:
        what = f"report over {row['runs']:,} runs of {epochs} epochs (s)"
        if row["runs"] >= REPORT_TARGET_RUNS:
            limit = REPORT_TARGET_SECONDS
            why = (
                f"loading the runs: {row['load s']:.2f} s (`bench.tracking.load_runs`); the rest "
                "is the tables, the statistics and the figures (`bench.report`)"
            )
            summary.append(
                measure(what, row["report s"], f"<= {limit:g}", row["report s"] <= limit, why)
            )
        else:
            summary.append(measure(what, row["report s"]))
    return Part(
        "report",
        "The report over many synthetic runs",
        pd.DataFrame(rows),
        about=(
            "Synthetic finished runs in a SQLite store, shaped like bench's: `create s` builds "
            f"them ({WORKERS} writer processes), `load s` is `bench.tracking.load_runs`, "
            "`report s` the whole `bench-report --all` (its loading included), in-process."
        ),
        summary=summary,
        errors=errors,
    )
