"""Every way to test, lint and benchmark PALHM. A bare ``nox`` runs what CI runs."""

from __future__ import annotations

import glob
import os

import nox

nox.options.sessions = ["lint", "tests"]
nox.options.reuse_existing_virtualenvs = False

ROOT = os.path.dirname(os.path.abspath(__file__))
#: Every plugin distribution of the repository, installed like a user would.
PLUGINS = sorted(os.path.dirname(p) for p in glob.glob("plugins/*/pyproject.toml"))
#: Distributions the tests install to prove third-party discovery.
TEST_PLUGINS = sorted(os.path.dirname(p) for p in glob.glob("tests/plugins/*/pyproject.toml"))
TEST_DEPS = ["pytest>=8", "moto[server]>=5.1", "hypothesis>=6"]


def install_palhm(session: nox.Session, *extra: str) -> None:
    """The core and every plugin as distributions (not editable), so entry
    point discovery is what gets tested."""
    session.install(".", *PLUGINS, *extra)


@nox.session
def tests(session: nox.Session) -> None:
    """The test suite, against installed distributions."""
    install_palhm(session, *TEST_PLUGINS, *TEST_DEPS)
    session.run("pytest", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff check and ruff format --check."""
    session.install("ruff")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
