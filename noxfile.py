"""Developer sessions: `nox -s tests`, `nox -s lint`, `nox -s demo`.

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
    it refreshes the committed report under results/. Extra arguments go to bench as overrides:
    `nox -s demo -- trainer.max_epochs=5`.
    """
    session.install(".")
    # Timed in a process of its own, so the figures are bench's alone (not pip's).
    session.run("python", "-c", _TIMED_BENCH, *session.posargs)


_TIMED_BENCH = """
import resource, subprocess, sys, time
start = time.perf_counter()
code = subprocess.run(["bench", *sys.argv[1:]]).returncode
seconds = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20
print(f"bench took {seconds:.1f} s wall time, peak memory {peak:.2f} GiB")
sys.exit(code)
"""
