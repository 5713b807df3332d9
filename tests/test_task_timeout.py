"""A task's ``timeout``: when it is up, every command of the task is ended,
a backup copy being made is rolled back, and the run fails (status 1) with
one line naming the task and its timeout; no process PALHM started is left.

The commands would run for 1000 s: that the run ended within the tests'
GUARD, with the timeout's line and nothing left running, is what shows the
timeout ended them. How long that takes on a loaded machine is not asserted."""

from __future__ import annotations

import signal
import subprocess
import time

import pytest
from conftest import PALHM, backup_task, copies, inline, write_config
from timers_util import GUARD, assert_none_left, kill_marked, new_marker, palhm_env


@pytest.fixture
def marker():
    m = new_marker()
    yield m
    kill_marked(m)


def run(tmp_path, marker, doc, task_id):
    """``palhm -q run TASK``."""
    config = write_config(tmp_path, doc)
    return subprocess.run(
        [PALHM, "-q", "-f", str(config), "run", task_id],
        env=palhm_env(tmp_path, marker),
        capture_output=True,
        text=True,
        timeout=GUARD,
    )


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("palhm: ")]


@pytest.mark.parametrize(
    "argv",
    [
        ["sh", "-c", "kill -STOP $$"],  # a stage that stopped (a hung NFS read, a dead peer)
        ["sh", "-c", "trap '' TERM; sleep 1000 & wait"],  # one that ignores SIGTERM
        ["sh", "-c", "echo partial; exec sleep 1000"],  # one that wrote, then hangs
    ],
    ids=["stopped", "ignores-term", "hangs-after-writing"],
)
def test_backup_past_its_timeout_fails_and_rolls_back(tmp_path, marker, argv):
    root = tmp_path / "root"
    task = backup_task(
        "b",
        objects=[
            {"path": "done", "pipeline": [inline("echo", "done")]},
            {"path": "stuck", "pipeline": [inline(*argv), inline("cat")]},
        ],
        root=str(root),
    )
    task["timeout"] = 2
    result = run(tmp_path, marker, {"tasks": [task]}, "b")
    assert result.returncode == 1, result.stderr
    assert error_lines(result.stderr) == ["palhm: task 'b': timed out after 2 s (its timeout)"]
    assert copies(root) == [] and list(root.iterdir()) == []
    assert_none_left(marker)


def test_routine_past_its_timeout_stops_at_the_step(tmp_path, marker):
    never = tmp_path / "NEVER"
    routine = {
        "id": "r",
        "type": "routine",
        "timeout": 1.5,
        "routine": [
            inline("true"),
            inline("sh", "-c", "sleep 1000 & exec sleep 1000"),
            inline("touch", str(never)),
        ],
    }
    result = run(tmp_path, marker, {"tasks": [routine]}, "r")
    assert result.returncode == 1, result.stderr
    assert error_lines(result.stderr) == ["palhm: task 'r': timed out after 1.5 s (its timeout)"]
    assert not never.exists()
    assert_none_left(marker)


def test_the_timeout_of_a_task_run_by_a_routine_names_that_task(tmp_path, marker):
    root = tmp_path / "root"
    backup = backup_task(
        "b",
        objects=[{"path": "x", "pipeline": [inline("sleep", "1000")]}],
        root=str(root),
    )
    backup["timeout"] = 1
    after = tmp_path / "AFTER"
    routine = {
        "id": "r",
        "type": "routine",
        "routine": [{"type": "task", "task-id": "b"}, inline("touch", str(after))],
    }
    result = run(tmp_path, marker, {"tasks": [routine, backup]}, "r")
    assert result.returncode == 1, result.stderr
    assert error_lines(result.stderr) == ["palhm: task 'b': timed out after 1 s (its timeout)"]
    assert not after.exists() and list(root.iterdir()) == []
    assert_none_left(marker)


def test_a_task_within_its_timeout_runs_as_without(tmp_path, marker):
    root = tmp_path / "root"
    task = backup_task(
        "b",
        objects=[{"path": "x", "pipeline": [inline("sh", "-c", "sleep 0.5; echo x")]}],
        root=str(root),
    )
    task["timeout"] = 30
    routine = {
        "id": "r",
        "type": "routine",
        "timeout": 60,
        "routine": [{"type": "task", "task-id": "b"}],
    }
    result = run(tmp_path, marker, {"tasks": [routine, task]}, "r")
    assert result.returncode == 0, result.stderr
    assert len(copies(root)) == 1
    assert (root / copies(root)[0] / "x").read_text() == "x\n"


def test_a_stop_signal_during_a_timed_task_still_exits_128_plus_n(tmp_path, marker):
    """A timeout that has not expired changes nothing about signals."""
    routine = {
        "id": "r",
        "type": "routine",
        "timeout": 600,
        "routine": [inline("sh", "-c", f"touch {tmp_path / 'STARTED'}; exec sleep 1000")],
    }
    config = write_config(tmp_path, {"tasks": [routine]})
    proc = subprocess.Popen(
        [PALHM, "-q", "-f", str(config), "run", "r"],
        env=palhm_env(tmp_path, marker),
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + GUARD
    while not (tmp_path / "STARTED").exists():
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=GUARD)
    assert proc.returncode == 143, err
    assert error_lines(err) == ["palhm: stopped by SIGTERM"]


@pytest.mark.parametrize(
    "value, problem",
    [
        (0, "0"),
        (-5, "-5"),
        ("10", '"10"'),
        (10**9, "1000000000"),
    ],
)
def test_a_bad_timeout_is_a_config_error(tmp_path, value, problem):
    routine = {"id": "r", "type": "routine", "timeout": value, "routine": [inline("true")]}
    config = write_config(tmp_path, {"tasks": [routine]})
    result = subprocess.run(
        [PALHM, "-f", str(config), "config", "check"],
        capture_output=True,
        text=True,
        timeout=GUARD,
    )
    assert result.returncode == 2
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"palhm: {config}: tasks[0].timeout: "), line
    assert problem in line and "Traceback" not in result.stderr


def test_commands_get_sigterm_first(tmp_path, marker):
    """The timeout ends commands with SIGTERM, which they can act on (a dump
    that cleans up), before any SIGKILL."""
    termed = tmp_path / "TERMED"
    trap = f"trap 'touch \"{termed}\"; exit 1' TERM; sleep 1000 & wait"
    root = tmp_path / "root"
    task = backup_task(
        "b",
        objects=[{"path": "x", "pipeline": [inline("sh", "-c", trap), inline("cat")]}],
        root=str(root),
    )
    task["timeout"] = 1
    result = run(tmp_path, marker, {"tasks": [task]}, "b")
    assert result.returncode == 1, result.stderr
    assert termed.exists()
    assert_none_left(marker)
