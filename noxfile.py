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

    Run it from the repository root to refresh the committed report under results/.
    """
    session.install(".")
    session.run("python", "-c", "import time; print('start', time.time())", silent=False)
    session.run("bash", "-c", "time bench " + " ".join(session.posargs), external=True)
