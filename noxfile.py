"""Developer sessions: `nox -s tests`, `nox -s lint`, `nox -s demo`.

Each session installs the project into its own virtual environment under .nox/.
"""

import resource
import time

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
    it refreshes the committed report under results/. Extra arguments go to bench as overrides:
    `nox -s demo -- trainer.max_epochs=5`.
    """
    session.install(".")
    start = time.perf_counter()
    session.run("bench", *session.posargs)
    seconds = time.perf_counter() - start
    peak_gib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20
    session.log(f"bench took {seconds:.1f} s wall time, peak memory {peak_gib:.2f} GiB")
