"""Developer sessions: `nox -s tests`, `nox -s lint`, `nox -s demo`, `nox -s perf`,
`nox -s ui`, `nox -s server`.

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
    chromium-driver`) through Selenium from the address bench printed: the sweep's saved view
    (runs grouped by schedule in the chart view, then as a table), the sweep's parent run. Not
    part of CI, which has no browser.
    """
    session.install(".", "selenium")
    session.run("python", "tests/ui_screenshots.py", "--out", "results/ui", *session.posargs)


@nox.session
def server(session: nox.Session) -> None:
    """The README's recipe for many machines, run for real: PostgreSQL (Debian's `postgresql`
    package) on loopback behind `mlflow server`, eight `bench` sweeps writing to it at once, the
    server stopped for a minute mid-sweep and started again; then every run checked for every
    point (tests/server_recipe.py). Not part of CI. Extra arguments go to the script:
    `nox -s server -- --sweeps 4 --outage 120 --keep /tmp/server`.
    """
    session.install(".", "psycopg[binary]")
    session.run("python", "tests/server_recipe.py", *session.posargs)


@nox.session
def perf(session: nox.Session) -> None:
    """What bench costs, one table per part and a summary against the targets:
    `python -m bench.perf all` (the parts are described in bench/perf/__init__.py).

    - a bench run against a bare PyTorch loop doing the same training (digits, and the CIFAR-10
      CPU study cut to 2 epochs), and MLflow's share of the run's wall time;
    - augmentation throughput, images/s: data held on the device against a DataLoader;
    - a `bench-train -m` grid's per-job overhead, and the start-up of `--help` and of an error;
    - the report over 100 and 1,000 synthetic runs of 100 epochs;
    - on a CUDA GPU (skipped without): the cifar10_scratch run against the bare loop per variant
      (fp32, bf16, channels_last, torch.compile), and runs sharing the GPU.

    Run from the repository root, it writes results/perf/ (perf.md with the tables and the
    machine, and a CSV per table). `nox -s perf -- --quick` is a try-out of a few minutes that
    writes nothing; extra arguments go to bench.perf, parts' names first run those parts alone:
    `nox -s perf -- report --runs 1000 --store /tmp/perf`, `nox -s perf -- --cifar-root DIR`.
    """
    session.install(".")
    args = list(session.posargs)
    parts = []
    while args and args[0] in ("train", "augment", "sweep", "report", "gpu", "all"):
        parts.append(args.pop(0))
    if parts in ([], ["all"]) and "--quick" not in args and "--out" not in args:
        args += ["--out", "results/perf"]
    session.run("python", "-m", "bench.perf", *(parts or ["all"]), *args)


_TIMED_BENCH = """
import resource, subprocess, sys, time
start = time.perf_counter()
code = subprocess.run(["bench", *sys.argv[1:]]).returncode
seconds = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20
print(f"bench took {seconds:.1f} s wall time, peak memory {peak:.2f} GiB")
sys.exit(code)
"""
