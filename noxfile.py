"""Developer sessions: `nox -s tests`, `nox -s lint`, `nox -s demo`, `nox -s perf`.

Each session installs the project into its own virtual environment under .nox/.
"""

import nox

nox.options.sessions = ["lint", "tests"]
nox.options.reuse_existing_virtualenvs = True


@nox.session
def tests(session: nox.Session) -> None:
    """The test suite (the same command CI runs)."""
    session.install(".[test]")
    session.run("pytest", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff: lint and formatting check."""
    session.install("ruff")
    session.run("ruff", "check", "bench", "tests", "noxfile.py")
    session.run("ruff", "format", "--check", "bench", "tests", "noxfile.py")


@nox.session
def demo(session: nox.Session) -> None:
    """The default sweep and its report, timed: what `bench` does for a new user.

    Prints the wall time and the peak memory of the whole command. Run from the repository root,
    it refreshes the committed report under results/digits/ (report.dir=results). Extra arguments
    go to bench as overrides: `nox -s demo -- trainer.max_epochs=5`.
    """
    session.install(".")
    # Timed in a process of its own, so the figures are bench's alone (not pip's).
    session.run("python", "-c", _TIMED_BENCH, "report.dir=results", *session.posargs)


@nox.session
def ui(session: nox.Session) -> None:
    """The runs in MLflow's own UI, seen by a real headless browser: screenshots in results/ui/.

    Runs a short default sweep into a fresh store (or reuses `-- --store DIR`), serves it with
    `mlflow server`, and drives Debian's Chromium and chromedriver (`apt install chromium
    chromium-driver`) through Selenium: the runs table, the runs grouped by schedule in the chart
    view, the sweep's parent run. Not part of CI, which has no browser.
    """
    session.install(".", "selenium")
    session.run("python", "tests/ui_screenshots.py", "--out", "results/ui", *session.posargs)


@nox.session
def perf(session: nox.Session) -> None:
    """How long loading and reporting take over many runs: `python -m bench.perf report`.

    Builds synthetic runs (100 and 1,000 runs of 100 epochs by default) in a SQLite MLflow store
    and prints one row per size: runs, epochs, create s (building the store), load s
    (`bench.tracking.load_runs`) and report s (the whole `bench-report --all`). Extra arguments
    go to it: `nox -s perf -- --runs 1000 --epochs 50 --store /tmp/perf --csv perf.csv`
    (`--store` keeps the store and reuses it the next time).
    """
    session.install(".")
    session.run("python", "-m", "bench.perf", "report", *session.posargs)


_TIMED_BENCH = """
import resource, subprocess, sys, time
start = time.perf_counter()
code = subprocess.run(["bench", *sys.argv[1:]]).returncode
seconds = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20
print(f"bench took {seconds:.1f} s wall time, peak memory {peak:.2f} GiB")
sys.exit(code)
"""
