"""SIGINT, SIGTERM and SIGHUP stop a run: commands end, the copy is rolled
back, PALHM exits 128+N, and no process it started is left alive (checked in
/proc). The sigmask builtin still keeps SIGTERM out for the reboot routine."""

from __future__ import annotations

import json
import os
import pty
import signal
import subprocess

import pytest
from conftest import PALHM, backup_task, copies, inline, write_config
from timers_util import (
    GUARD,
    assert_none_left,
    gate,
    kill_marked,
    marked_processes,
    new_marker,
    palhm_env,
    start_palhm,
    wait_for,
)

STOP_SIGNALS = [signal.SIGINT, signal.SIGTERM, signal.SIGHUP]


@pytest.fixture
def marker():
    m = new_marker()
    yield m
    kill_marked(m)


def sleepers(marker, n):
    """At least ``n`` sleep processes started by the PALHM under test."""
    found = [p for p, cmd in marked_processes(marker) if cmd.startswith("sleep")]
    return len(found) >= n


def pending(pid: int, sig: signal.Signals) -> bool:
    """``sig`` is pending for the whole process ``pid``: sent, and blocked
    by every thread (/proc/PID/status, ShdPnd)."""
    with open(f"/proc/{pid}/status") as f:
        shared = next(line for line in f if line.startswith("ShdPnd:"))
    return bool(int(shared.split()[1], 16) & (1 << (sig - 1)))


def busy_backup(tmp_path):
    """A localfs backup with a finished object and two that never end: one
    whose stages sleep (one with background children of its own), one whose
    command writes into the staging file and then sleeps."""
    return backup_task(
        "b",
        objects=[
            {"path": "done", "pipeline": [inline("echo", "done")]},
            {
                "path": "pipe",
                "pipeline": [
                    inline("sh", "-c", "sleep 1000 & sleep 1000 & wait"),
                    inline("cat"),
                ],
            },
            {"path": "file", "pipeline": [inline("sh", "-c", "echo partial; exec sleep 1000")]},
        ],
        root=str(tmp_path / "root"),
    )


def assert_rolled_back(root):
    """No copy and nothing of the stopped one: the root holds nothing at all."""
    assert copies(root) == []
    assert sorted(os.listdir(root)) == []


@pytest.mark.parametrize("sig", STOP_SIGNALS, ids=lambda s: s.name)
def test_stop_signal_rolls_back_and_exits_128_plus_n(tmp_path, marker, sig):
    config = write_config(tmp_path, {"tasks": [busy_backup(tmp_path)]})
    report = tmp_path / "report.json"
    proc = start_palhm(
        "run",
        "--report",
        report,
        "--metrics-dir",
        tmp_path,
        "b",
        config=config,
        env=palhm_env(tmp_path, marker),
    )
    wait_for(lambda: sleepers(marker, 3), "the pipelines to run", proc=proc)
    staging = [n for n in os.listdir(tmp_path / "root") if n.startswith(".")]
    assert staging, "the copy being made is staged in the root"

    proc.send_signal(sig)
    _, err = proc.communicate(timeout=GUARD)
    assert proc.returncode == 128 + sig, err
    assert f"stopped by {sig.name}" in err
    assert "rolling back" in err
    assert_rolled_back(tmp_path / "root")
    assert_none_left(marker)
    doc = json.loads(report.read_text())
    assert doc["success"] is False and doc["exit-status"] == 128 + sig
    prom = (tmp_path / "palhm_b.prom").read_text()
    assert 'palhm_last_run_success{task="b"} 0' in prom


@pytest.mark.parametrize("sig", STOP_SIGNALS, ids=lambda s: s.name)
def test_stop_signal_ends_a_routine(tmp_path, marker, sig):
    routine = {
        "id": "r",
        "type": "routine",
        "routine": [
            inline("sh", "-c", "sleep 1000 & exec sleep 1000"),
            inline("touch", str(tmp_path / "NEVER")),
        ],
    }
    config = write_config(tmp_path, {"tasks": [routine]})
    proc = start_palhm("run", "r", config=config, env=palhm_env(tmp_path, marker))
    wait_for(lambda: sleepers(marker, 2), "the routine's command", proc=proc)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=GUARD)
    assert proc.returncode == 128 + sig, err
    assert not (tmp_path / "NEVER").exists()
    assert_none_left(marker)


def test_children_that_ignore_sigterm_are_killed(tmp_path, marker):
    """A command that ignores SIGTERM gets SIGKILL after the grace period."""
    task = backup_task(
        "b",
        objects=[{"path": "x", "pipeline": [inline("sh", "-c", "trap '' TERM; sleep 1000")]}],
        root=str(tmp_path / "root"),
    )
    config = write_config(tmp_path, {"tasks": [task]})
    proc = start_palhm("run", "b", config=config, env=palhm_env(tmp_path, marker))
    wait_for(lambda: sleepers(marker, 1), "the pipeline to run", proc=proc)
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=GUARD)
    assert proc.returncode == 143
    assert_rolled_back(tmp_path / "root")
    assert_none_left(marker)


def test_no_process_outlives_a_successful_run(tmp_path, marker):
    """Background jobs a command leaves in its process group end with it."""
    routine = {
        "id": "r",
        "type": "routine",
        "routine": [inline("sh", "-c", "sleep 1000 & sleep 1000 & echo started")],
    }
    task = backup_task(
        "b",
        objects=[{"path": "x", "pipeline": [inline("sh", "-c", "sleep 1000 >/dev/null & echo x")]}],
        root=str(tmp_path / "root"),
    )
    config = write_config(tmp_path, {"tasks": [routine, task]})
    env = palhm_env(tmp_path, marker)
    for task_id in ("r", "b"):
        result = subprocess.run(
            [PALHM, "-q", "-f", str(config), "run", task_id],
            env=env,
            capture_output=True,
            text=True,
            timeout=GUARD,
        )
        assert result.returncode == 0, result.stderr
        assert_none_left(marker)


def test_no_process_outlives_a_failed_run(tmp_path, marker):
    task = backup_task(
        "b",
        objects=[
            {"path": "slow", "pipeline": [inline("sh", "-c", "sleep 1000 & sleep 1000")]},
            {"path": "bad", "pipeline": [inline("sh", "-c", "sleep 0.2; exit 3")]},
        ],
        root=str(tmp_path / "root"),
    )
    config = write_config(tmp_path, {"tasks": [task]})
    result = subprocess.run(
        [PALHM, "-q", "-f", str(config), "run", "b"],
        env=palhm_env(tmp_path, marker),
        capture_output=True,
        text=True,
        timeout=GUARD,
    )
    assert result.returncode == 1
    assert "exited with status 3" in result.stderr
    assert_rolled_back(tmp_path / "root")
    assert_none_left(marker)


@pytest.mark.parametrize("stderr_kind", ["file", "terminal"])
def test_sigmask_keeps_sigterm_out_for_the_reboot_routine(tmp_path, marker, stderr_kind):
    """The reboot routine blocks SIGTERM, then runs its commands: SIGTERM then
    neither stops PALHM nor the commands it starts (on a terminal the progress
    thread runs too, and must not take the signal behind the mask's back)."""
    started, go = tmp_path / "STARTED", tmp_path / "GO"
    routine = {
        "id": "reboot",
        "type": "routine",
        "routine": [
            {
                "type": "builtin",
                "builtin-id": "sigmask",
                "param": [{"action": "block", "sig": ["TERM"]}],
            },
            inline("sh", "-c", f'touch "{started}"; {gate(go)[2]}'),
            inline("touch", str(tmp_path / "DONE")),
        ],
    }
    config = write_config(tmp_path, {"tasks": [routine]})
    env = palhm_env(tmp_path, marker)
    if stderr_kind == "terminal":
        master, slave = pty.openpty()
        proc = start_palhm("run", "reboot", config=config, env=env, stderr=slave)
        os.close(slave)
    else:
        master = None
        proc = start_palhm("run", "reboot", config=config, env=env)
    try:
        wait_for(started.exists, "the routine's command", proc=proc)
        proc.send_signal(signal.SIGTERM)
        wait_for(lambda: pending(proc.pid, signal.SIGTERM), "SIGTERM held pending", proc=proc)
        go.touch()
        assert proc.wait(GUARD) == 0
    finally:
        if master is not None:
            os.close(master)
    assert (tmp_path / "DONE").exists()
