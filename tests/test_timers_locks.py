"""Two runs of one task never overlap: the second exits 75 at once naming the
first's PID, or waits with --wait; locks are never stale; in a read-only
sandbox the lock directory itself is locked."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess

import pytest
from conftest import PALHM, backup_task, copies, inline, write_config
from timers_util import (
    GUARD,
    LineReader,
    gate,
    kill_marked,
    marked_processes,
    new_marker,
    palhm_env,
    start_palhm,
    wait_for,
)

from palhm_core.lock import default_lock_dir, flock_holders, lock_name


@pytest.fixture
def marker():
    m = new_marker()
    yield m
    kill_marked(m)


def gated_backup(tmp_path, task_id="b", log=None, go=None):
    """A localfs backup whose one object waits for the file GO, writing
    "start"/"end" lines into LOG around the wait."""
    go = go or tmp_path / "GO"
    log = log or tmp_path / "LOG"
    script = (
        f'echo start >> "{log}"; while [ ! -e "{go}" ]; do sleep 0.02; done; '
        f'echo end >> "{log}"; echo data'
    )
    return backup_task(
        task_id,
        objects=[{"path": "out", "pipeline": [inline("sh", "-c", script)]}],
        root=str(tmp_path / "root"),
    )


def started(tmp_path):
    log = tmp_path / "LOG"
    return log.exists() and log.read_text().count("start")


def test_second_run_exits_75_at_once_naming_the_pid(tmp_path, marker):
    config = write_config(tmp_path, {"tasks": [gated_backup(tmp_path)]})
    env = palhm_env(tmp_path, marker)
    first = start_palhm("run", "b", config=config, env=env)
    wait_for(lambda: started(tmp_path), "the first run's pipeline", proc=first)

    second = subprocess.run(
        [PALHM, "-f", str(config), "run", "b"],
        env=env,
        capture_output=True,
        text=True,
        timeout=GUARD,
    )
    # It did not wait: the first run is still going.
    assert first.poll() is None
    assert second.returncode == 75, second.stderr
    lines = second.stderr.splitlines()
    assert len(lines) == 1, second.stderr
    assert f"PID {first.pid}" in lines[0]
    assert "'b'" in lines[0] and "already running" in lines[0]
    # The lock file names the holder too.
    (lock,) = (tmp_path / "locks").iterdir()
    assert lock.read_text().strip() == str(first.pid)

    (tmp_path / "GO").touch()
    assert first.wait(GUARD) == 0, first.communicate()[1]
    assert len(copies(tmp_path / "root")) == 1
    assert (tmp_path / "LOG").read_text().split() == ["start", "end"]


def test_wait_runs_after_the_first_run_ends(tmp_path, marker):
    config = write_config(tmp_path, {"tasks": [gated_backup(tmp_path)]})
    env = palhm_env(tmp_path, marker)
    first = start_palhm("run", "b", config=config, env=env)
    wait_for(lambda: started(tmp_path), "the first run's pipeline", proc=first)

    # "--wait b": the word after a bare --wait is the task.
    second = start_palhm("run", "--wait", "b", config=config, env=env)
    waiting = LineReader(second.stderr).next()
    assert f"(PID {first.pid}, lock {tmp_path / 'locks'}/b." in waiting and "); waiting" in waiting
    assert first.poll() is None and second.poll() is None
    assert (tmp_path / "LOG").read_text().split() == ["start"]

    (tmp_path / "GO").touch()
    assert first.wait(GUARD) == 0
    assert second.wait(GUARD) == 0, second.communicate()[1]
    # Never overlapped: the second pipeline started after the first ended.
    assert (tmp_path / "LOG").read_text().split() == ["start", "end", "start", "end"]
    assert len(copies(tmp_path / "root")) == 2


def test_wait_with_a_limit_gives_up_with_75(tmp_path, marker):
    config = write_config(tmp_path, {"tasks": [gated_backup(tmp_path)]})
    env = palhm_env(tmp_path, marker)
    first = start_palhm("run", "b", config=config, env=env)
    wait_for(lambda: started(tmp_path), "the first run's pipeline", proc=first)
    second = subprocess.run(
        [PALHM, "-q", "-f", str(config), "run", "--wait=0.3", "b"],
        env=env,
        capture_output=True,
        text=True,
        timeout=GUARD,
    )
    assert second.returncode == 75
    assert "still running" in second.stderr and f"PID {first.pid}" in second.stderr
    assert first.poll() is None
    (tmp_path / "GO").touch()
    assert first.wait(GUARD) == 0


def test_stop_signal_while_waiting_exits_143(tmp_path, marker):
    config = write_config(tmp_path, {"tasks": [gated_backup(tmp_path)]})
    env = palhm_env(tmp_path, marker)
    first = start_palhm("run", "b", config=config, env=env)
    wait_for(lambda: started(tmp_path), "the first run's pipeline", proc=first)
    second = start_palhm("run", "--wait", "b", config=config, env=env)
    waiting = LineReader(second.stderr).next()
    assert f"(PID {first.pid}, lock {tmp_path / 'locks'}/b." in waiting and "); waiting" in waiting
    second.send_signal(signal.SIGTERM)
    assert second.wait(GUARD) == 143
    assert first.poll() is None
    (tmp_path / "GO").touch()
    assert first.wait(GUARD) == 0


def test_other_tasks_and_other_configs_do_not_wait(tmp_path, marker):
    quick = backup_task(
        "quick",
        objects=[{"path": "x", "pipeline": [inline("echo", "x")]}],
        root=str(tmp_path / "quick"),
    )
    config = write_config(tmp_path, {"tasks": [gated_backup(tmp_path), quick]})
    other_dir = tmp_path / "other"
    other = write_config(
        other_dir,
        {
            "tasks": [
                backup_task(
                    "b",
                    objects=[{"path": "x", "pipeline": [inline("echo")]}],
                    root=str(other_dir / "root"),
                )
            ]
        },
    )
    env = palhm_env(tmp_path, marker)
    first = start_palhm("run", "b", config=config, env=env)
    wait_for(lambda: started(tmp_path), "the first run's pipeline", proc=first)
    for conf, task in ((config, "quick"), (other, "b")):
        result = subprocess.run(
            [PALHM, "-q", "-f", str(conf), "run", task],
            env=env,
            capture_output=True,
            text=True,
            timeout=GUARD,
        )
        assert result.returncode == 0, result.stderr
    assert first.poll() is None
    (tmp_path / "GO").touch()
    assert first.wait(GUARD) == 0


def test_routine_locks_itself_and_the_tasks_it_runs(tmp_path, marker):
    routine = {"id": "r", "type": "routine", "routine": [{"type": "task", "task-id": "b"}]}
    config = write_config(tmp_path, {"tasks": [gated_backup(tmp_path), routine]})
    env = palhm_env(tmp_path, marker)
    first = start_palhm("run", "r", config=config, env=env)
    wait_for(lambda: started(tmp_path), "the routine's backup", proc=first)
    again = subprocess.run(
        [PALHM, "-f", str(config), "run", "r"],
        env=env,
        capture_output=True,
        text=True,
        timeout=GUARD,
    )
    assert again.returncode == 75 and f"PID {first.pid}" in again.stderr
    assert len(list((tmp_path / "locks").iterdir())) == 2  # r and b
    (tmp_path / "GO").touch()
    assert first.wait(GUARD) == 0


def test_lock_of_a_killed_run_is_not_stale(tmp_path, marker):
    config = write_config(tmp_path, {"tasks": [gated_backup(tmp_path)]})
    env = palhm_env(tmp_path, marker)
    first = start_palhm("run", "b", config=config, env=env)
    wait_for(lambda: started(tmp_path), "the first run's pipeline", proc=first)
    first.kill()  # SIGKILL: no cleanup at all
    first.wait(GUARD)
    kill_marked(marker)  # what it started (a real timer's cgroup would end them)
    wait_for(lambda: not marked_processes(marker), "the killed run's children to end")
    (tmp_path / "GO").touch()
    result = subprocess.run(
        [PALHM, "-q", "-f", str(config), "run", "b"],
        env=env,
        capture_output=True,
        text=True,
        timeout=GUARD,
    )
    assert result.returncode == 0, result.stderr


def test_lock_files_are_per_config_and_task():
    a = lock_name("/etc/palhm/palhm.conf", "backup")
    assert a.startswith("backup.") and a.endswith(".lock")
    assert a != lock_name("/etc/palhm/other.conf", "backup")
    assert a != lock_name("/etc/palhm/palhm.conf", "update")
    odd = lock_name("/c", "../x y/z")
    assert "/" not in odd and not odd.startswith(".")


def test_default_lock_directory():
    assert default_lock_dir({}, 0) == "/run/palhm"
    assert default_lock_dir({"XDG_RUNTIME_DIR": "/run/user/1000"}, 1000) == "/run/user/1000/palhm"
    assert default_lock_dir({}, 1000) is None
    assert default_lock_dir({"PALHM_LOCK_DIR": "/x", "XDG_RUNTIME_DIR": "/y"}, 1000) == "/x"
    assert default_lock_dir({"PALHM_LOCK_DIR": "/x"}, 0) == "/x"


def test_flock_holders_reads_proc_locks(tmp_path):
    locks = tmp_path / "locks"
    dev = os.makedev(0xFE, 0x01)
    locks.write_text(
        "1: FLOCK  ADVISORY  WRITE 4242 fe:01:1234 0 EOF\n"
        "1: -> FLOCK  ADVISORY  WRITE 4343 fe:01:1234 0 EOF\n"
        "2: POSIX  ADVISORY  WRITE 99 fe:01:1234 0 EOF\n"
        "3: FLOCK  ADVISORY  READ 77 fe:01:9999 0 EOF\n"
    )
    assert flock_holders(dev, 1234, str(locks)) == [4242]


def test_a_lock_directory_that_cannot_be_made_is_one_line_and_exit_2(tmp_path, marker):
    """PALHM never falls back to locking a file other users can open (the
    config file): without a lock directory the run does not start."""
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    config = write_config(tmp_path, {"tasks": [gated_backup(tmp_path)]})
    env = palhm_env(tmp_path, marker, PALHM_LOCK_DIR=str(blocker / "locks"))
    result = subprocess.run(
        [PALHM, "-f", str(config), "run", "b"],
        env=env,
        capture_output=True,
        text=True,
        timeout=GUARD,
    )
    assert result.returncode == 2
    (line,) = result.stderr.splitlines()
    assert f"lock directory {blocker / 'locks'}: cannot create it" in line
    assert not (tmp_path / "LOG").exists()


READ_ONLY_SANDBOX = r"""
set -e
mount --make-rprivate /
awk '{print $2}' /proc/self/mounts | sort -u | while read -r m; do
    mount -o remount,bind,ro "$m" 2>/dev/null || true
done
if touch /tmp/.palhm-rw-probe 2>/dev/null; then echo "/ is still writable" >&2; exit 99; fi
exec "$@"
"""


def _can_make_read_only_sandbox() -> str | None:
    if os.geteuid() != 0:
        return "needs root to make a read-only mount namespace (unshare -m)"
    if not shutil.which("unshare"):
        return "unshare (util-linux) is not installed"
    probe = subprocess.run(["unshare", "-m", "true"], capture_output=True)
    if probe.returncode != 0:
        return f"unshare -m is not permitted here: {probe.stderr.decode().strip()}"
    return None


@pytest.mark.skipif(
    _can_make_read_only_sandbox() is not None, reason=str(_can_make_read_only_sandbox())
)
def test_read_only_sandbox_runs_and_locks(tmp_path, marker):
    """The seed's check, `systemd-run -p ProtectSystem=strict -p
    ReadOnlyPaths=/ palhm run TASK` with a null backend, done with a mount
    namespace in which every mount is read-only, including the lock
    directory (made before, as RuntimeDirectory= does): with no lock file to
    lock, the run locks the whole lock directory; a lock file made by an
    earlier run is locked read-only, per task."""
    go = tmp_path / "GO"
    task = backup_task(
        "n", backend="null", objects=[{"path": "x", "pipeline": [inline(*gate(go))]}]
    )
    quick = backup_task("q", backend="null", objects=[{"path": "x", "pipeline": [inline("true")]}])
    config = write_config(tmp_path, {"tasks": [task, quick]})
    script = tmp_path / "ro.sh"
    script.write_text(READ_ONLY_SANDBOX)
    env = palhm_env(tmp_path, marker)
    (tmp_path / "locks").mkdir(mode=0o700)

    def sandboxed(task_id):
        return ["unshare", "-m", "sh", str(script), PALHM, "-f", str(config), "run", task_id]

    def pipeline_started():
        return [p for p, cmd in marked_processes(marker) if cmd.startswith("sh -c")]

    first = subprocess.Popen(
        sandboxed("n"), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    wait_for(pipeline_started, "the sandboxed pipeline", proc=first)
    assert list((tmp_path / "locks").iterdir()) == []  # nothing could be written
    for argv in (sandboxed("q"), [PALHM, "-f", str(config), "run", "q"]):
        other = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=GUARD)
        assert other.returncode == 75, other.stderr
        # unshare and sh exec PALHM: same PID.
        assert f"PID {first.pid}, lock {tmp_path / 'locks'}" in other.stderr
    go.touch()
    assert first.wait(GUARD) == 0, first.communicate()[1]

    # Lock files made by runs outside the sandbox (GO is there: no waiting)
    # are then locked per task: another task runs, the same task does not.
    for task_id in ("n", "q"):
        done = subprocess.run(
            [PALHM, "-q", "-f", str(config), "run", task_id],
            env=env,
            capture_output=True,
            text=True,
            timeout=GUARD,
        )
        assert done.returncode == 0, done.stderr
    go.unlink()
    first = subprocess.Popen(
        sandboxed("n"), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    wait_for(pipeline_started, "the sandboxed pipeline", proc=first)
    assert subprocess.run(sandboxed("q"), env=env, timeout=GUARD).returncode == 0
    second = subprocess.run(sandboxed("n"), env=env, capture_output=True, text=True, timeout=GUARD)
    assert second.returncode == 75 and f"PID {first.pid}" in second.stderr
    go.touch()
    assert first.wait(GUARD) == 0, first.communicate()[1]


def test_a_routine_does_not_overlap_a_run_of_a_task_it_points_to(tmp_path, marker):
    routine = {"id": "nightly", "type": "routine", "routine": [{"type": "task", "task-id": "b"}]}
    config = write_config(tmp_path, {"tasks": [gated_backup(tmp_path), routine]})
    env = palhm_env(tmp_path, marker)
    first = start_palhm("run", "b", config=config, env=env)
    wait_for(lambda: started(tmp_path), "the first run's pipeline", proc=first)
    second = subprocess.run(
        [PALHM, "-f", str(config), "run", "nightly"],
        env=env,
        capture_output=True,
        text=True,
        timeout=GUARD,
    )
    assert second.returncode == 75, second.stderr
    assert "'b'" in second.stderr and f"PID {first.pid}" in second.stderr
    (tmp_path / "GO").touch()
    assert first.wait(GUARD) == 0, first.communicate()[1]
    assert (tmp_path / "LOG").read_text().split() == ["start", "end"]
