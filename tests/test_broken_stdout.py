"""Output that cannot be written (stdout closed, a full disk) is one line on
stderr and exit status 1, never a traceback; and a closed stdout never lets a
file PALHM opens take descriptor 1."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from conftest import PALHM, backup_task, inline, write_config

GUARD = 60
#: Writes where the process's descriptor 1 leads into the file argv[1].
WHERE_IS_FD_1 = "import os, sys; open(sys.argv[1], 'w').write(os.readlink('/proc/self/fd/1'))"


def palhm(*args, config, stdout, tmp_path):
    """``palhm ARGS`` with its stdout closed (None) or sent to a file."""
    env = {**os.environ, "PALHM_LOCK_DIR": str(tmp_path / "locks")}
    env.pop("PALHM_CONFIG", None)
    argv = [PALHM, "-f", str(config), *map(str, args)]
    if stdout is None:
        # close_fds cannot close 1; the shell does, as `>&-` would.
        argv = ["sh", "-c", 'exec "$@" >&-', "sh", *argv]
        out = subprocess.DEVNULL
    else:
        out = stdout
    return subprocess.run(
        argv, stdout=out, stderr=subprocess.PIPE, text=True, env=env, timeout=GUARD
    )


def one_error(result, problem):
    assert result.stderr.splitlines() == [f"palhm: cannot write to stdout: {problem}"], (
        result.stderr
    )
    assert result.returncode == 1


@pytest.fixture
def backed_up(tmp_path):
    """A config whose task b has one copy of a 300 KB object."""
    data = tmp_path / "data"
    data.write_bytes(os.urandom(300_000))
    task = backup_task(
        "b",
        objects=[{"path": "x", "pipeline": [inline("cat", str(data))]}],
        root=str(tmp_path / "r"),
    )
    config = write_config(tmp_path, {"tasks": [task]})
    with open(os.devnull, "w") as devnull:
        done = palhm("run", "b", config=config, stdout=devnull, tmp_path=tmp_path)
    assert done.returncode == 0, done.stderr
    return config


CLOSED = (None, "Bad file descriptor")
FULL = ("/dev/full", "No space left on device")


def _stdout(spec):
    return None if spec is None else open(spec, "w")


@pytest.mark.parametrize("out, problem", [CLOSED, FULL])
@pytest.mark.parametrize("command", [["config", "show"], ["config", "schema"], ["plan", "b"]])
def test_printing_commands(tmp_path, backed_up, command, out, problem):
    stdout = _stdout(out)
    try:
        result = palhm(*command, config=backed_up, stdout=stdout, tmp_path=tmp_path)
    finally:
        if stdout is not None:
            stdout.close()
    one_error(result, problem)


@pytest.mark.parametrize("out, problem", [CLOSED, FULL])
def test_backups_cat(tmp_path, backed_up, out, problem):
    stdout = _stdout(out)
    try:
        result = palhm(
            "backups", "cat", "b", "latest", "x", config=backed_up, stdout=stdout, tmp_path=tmp_path
        )
    finally:
        if stdout is not None:
            stdout.close()
    one_error(result, problem)


def test_a_run_with_stdout_closed_keeps_descriptor_1_for_nothing(tmp_path):
    """A command's stdout is PALHM's descriptor 1: with it closed, the first
    file PALHM opened (a lock file) used to become the command's stdout."""
    seen = tmp_path / "fd1"
    task = {
        "id": "r",
        "type": "routine",
        "routine": [inline(sys.executable, "-c", WHERE_IS_FD_1, str(seen), **{"vl-stdout": 0})],
    }
    config = write_config(tmp_path, {"tasks": [task]})
    result = palhm("run", "r", config=config, stdout=None, tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr
    assert seen.read_text().strip() == "/dev/null"
