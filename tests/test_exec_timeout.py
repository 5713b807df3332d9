"""``timeout`` on execs and steps: a command that hangs (stopped, waiting on
a dead peer, a background child holding the pipe) ends within its timeout
plus a grace period, the object or step fails naming it, the copy is rolled
back and no process is left behind."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest
from conftest import backup_task, copies, inline, run_palhm, write_config
from timers_util import marked_processes


def marked() -> str:
    """A word to put into a command's argv, to find its processes in /proc."""
    return f"palhm-test-{uuid.uuid4().hex}"


def wait_until_gone(word: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while marked_processes(word):
        assert time.monotonic() < deadline, f"still running: {marked_processes(word)}"
        time.sleep(0.05)


def palhm_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("palhm: ")]


def test_a_stopped_stage_times_out_and_nothing_is_left(tmp_path):
    word = marked()
    # The stage stops itself after its first bytes, leaving a child in its group.
    stopped = inline(
        "sh", "-c", 'sh -c "sleep 300" "$0-child" & echo start; kill -STOP $$; echo never', word
    )
    stopped["timeout"] = 2
    root = tmp_path / "root"
    task = backup_task(
        objects=[{"path": "obj", "pipeline": [stopped, inline("cat")]}], root=str(root)
    )
    conf = write_config(tmp_path, {"tasks": [task]})
    # Ended by its timeout (the child would sleep 300 s, the stage never
    # ends by itself): the line names it, and nothing is left running.
    result = run_palhm("run", "backup", config=conf, timeout=60)
    assert result.returncode == 1, result.stderr
    (line,) = [line for line in palhm_lines(result.stderr) if "timed out" in line]
    assert "object 'obj'" in line and "stage 1/2 'sh' timed out after 2 s" in line, line
    assert not root.exists() or list(root.iterdir()) == []
    wait_until_gone(word)


def test_the_timeout_of_an_exec_definition_and_of_a_step(tmp_path):
    """A step inherits its definition's timeout and may set its own."""
    word = marked()
    hang = ["sh", "-c", "sleep 300", word]
    root = tmp_path / "root"
    doc = {
        "execs": [{"id": "hang", "argv": hang, "timeout": 1}],
        "tasks": [
            backup_task(
                objects=[{"path": "a", "pipeline": [{"type": "exec", "exec-id": "hang"}]}],
                root=str(root),
            ),
            {
                "id": "routine",
                "type": "routine",
                "routine": [{"type": "exec-append", "exec-id": "hang", "timeout": 1.5}],
            },
        ],
    }
    conf = write_config(tmp_path, doc)
    result = run_palhm("run", "backup", config=conf, timeout=60)
    assert result.returncode == 1, result.stderr
    assert "stage 1/1 'sh' timed out after 1 s" in result.stderr, result.stderr
    assert not root.exists() or copies(root) == []
    result = run_palhm("run", "routine", config=conf, timeout=60)
    assert result.returncode == 1, result.stderr
    (line,) = [line for line in palhm_lines(result.stderr) if "timed out" in line]
    assert "task 'routine': 'sh' timed out after 1.5 s" in line, line
    wait_until_gone(word)


def test_a_stage_that_finishes_in_time_is_not_failed(tmp_path):
    root = tmp_path / "root"
    step = inline("sh", "-c", "seq 1 1000; sleep 0.2")
    step["timeout"] = 30
    task = backup_task(objects=[{"path": "obj", "pipeline": [step]}], root=str(root))
    conf = write_config(tmp_path, {"tasks": [task]})
    result = run_palhm("run", "backup", config=conf)
    assert result.returncode == 0, result.stderr
    (copy,) = copies(root)
    assert (Path(root) / copy / "obj").read_bytes() == b"".join(b"%d\n" % i for i in range(1, 1001))


@pytest.mark.parametrize("value", [0, -1, "5", True, 1e9])
def test_a_bad_timeout_is_a_config_error(tmp_path, value):
    step = inline("true")
    step["timeout"] = value
    conf = write_config(
        tmp_path,
        {
            "tasks": [
                backup_task(objects=[{"path": "a", "pipeline": [step]}], root=str(tmp_path / "r"))
            ]
        },
    )
    result = run_palhm("run", "backup", config=conf)
    assert result.returncode == 2, result.stderr
    (line,) = result.stderr.splitlines()
    assert "timeout" in line and "Traceback" not in result.stderr, line
