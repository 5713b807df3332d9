"""No other user can hold PALHM's locks: they live in a directory only PALHM's
user can write, never on the config file; a lock directory or lock file that
another user could use is refused (exit 2); the exit-75 line names the lock
file held; and a run never mistakes running out of file descriptors for a
busy lock."""

from __future__ import annotations

import os
import resource
import stat
import subprocess
from pathlib import Path

import pytest
from conftest import PALHM, backup_task, inline, write_config
from timers_util import GUARD, gate, kill_marked, new_marker, palhm_env, start_palhm, wait_for

NOBODY = 65534


@pytest.fixture
def marker():
    m = new_marker()
    yield m
    kill_marked(m)


def gated_null_task(go, task_id="n"):
    """A backup into the null backend whose one object waits for the file GO."""
    return backup_task(
        task_id, backend="null", objects=[{"path": "x", "pipeline": [inline(*gate(go))]}]
    )


def quick_null_task(task_id="n"):
    return backup_task(
        task_id, backend="null", objects=[{"path": "x", "pipeline": [inline("true")]}]
    )


def palhm(*args, config, env, **kw):
    return subprocess.run(
        [PALHM, "-f", str(config), *map(str, args)],
        env=env,
        capture_output=True,
        text=True,
        timeout=GUARD,
        **kw,
    )


def one_line(result) -> str:
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


def holding(argv, env=None) -> subprocess.Popen:
    """``flock ... sleep``: started, and holding its lock once it printed."""
    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    assert proc.stdout.readline() == "held\n", proc.communicate()
    return proc


needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as another user")


@pytest.fixture
def public_dir():
    """A directory every user can read (pytest's own are root's only)."""
    import shutil
    import tempfile

    path = tempfile.mkdtemp(prefix="palhm-test-")
    os.chmod(path, 0o755)
    yield Path(path)
    shutil.rmtree(path)


@needs_root
def test_another_user_locking_the_config_file_blocks_nothing(tmp_path, public_dir, marker):
    """`flock -x palhm.conf sleep` by any user who can read the config used
    to make every run exit 75."""
    config = write_config(public_dir, {"tasks": [quick_null_task()]})
    os.chmod(config, 0o644)
    reader = holding(
        [
            "setpriv",
            f"--reuid={NOBODY}",
            f"--regid={NOBODY}",
            "--clear-groups",
            "flock",
            "-x",
            str(config),
            "sh",
            "-c",
            "echo held; exec sleep 60",
        ]
    )
    try:
        result = palhm("run", "n", config=config, env=palhm_env(tmp_path, marker))
        assert result.returncode == 0, result.stderr
        waited = palhm("-q", "run", "--wait=5", "n", config=config, env=palhm_env(tmp_path, marker))
        assert waited.returncode == 0, waited.stderr
    finally:
        reader.kill()
        reader.wait()


@needs_root
def test_no_other_user_can_open_the_lock_files(tmp_path, marker):
    config = write_config(tmp_path, {"tasks": [quick_null_task()]})
    os.chmod(tmp_path, 0o755)
    result = palhm("run", "n", config=config, env=palhm_env(tmp_path, marker))
    assert result.returncode == 0, result.stderr
    locks = tmp_path / "locks"
    assert stat.S_IMODE(locks.stat().st_mode) == 0o700
    (lock,) = locks.iterdir()
    assert stat.S_IMODE(lock.stat().st_mode) == 0o600
    for target in (lock, locks):
        attempt = subprocess.run(
            [
                "setpriv",
                f"--reuid={NOBODY}",
                f"--regid={NOBODY}",
                "--clear-groups",
                "flock",
                "-n",
                "-x",
                str(target),
                "true",
            ],
            capture_output=True,
            text=True,
            timeout=GUARD,
        )
        assert attempt.returncode != 0 and "Permission denied" in attempt.stderr


def test_the_busy_line_names_the_lock_file_held(tmp_path, marker):
    go = tmp_path / "GO"
    config = write_config(tmp_path, {"tasks": [gated_null_task(go)]})
    env = palhm_env(tmp_path, marker)
    first = start_palhm("run", "n", config=config, env=env)
    locks = tmp_path / "locks"
    wait_for(lambda: locks.exists() and list(locks.iterdir()), "the lock file", proc=first)
    (lock,) = locks.iterdir()
    wait_for(lambda: lock.read_text().strip() == str(first.pid), "the PID in the lock file")
    second = palhm("run", "n", config=config, env=env)
    assert second.returncode == 75
    line = one_line(second)
    assert f"PID {first.pid}" in line and f"lock {lock}" in line
    go.touch()
    assert first.wait(GUARD) == 0, first.communicate()[1]


@pytest.mark.parametrize(
    "problem",
    ["group-writable", "world-writable", "other owner", "symlink", "lock file 0644", "not a dir"],
)
def test_a_lock_directory_others_could_use_is_refused(tmp_path, marker, problem):
    config = write_config(tmp_path, {"tasks": [quick_null_task()]})
    locks = tmp_path / "locks"
    locks.mkdir(mode=0o700)
    env = palhm_env(tmp_path, marker)
    if problem == "group-writable":
        os.chmod(locks, 0o770)
    elif problem == "world-writable":
        os.chmod(locks, 0o1777)
    elif problem == "other owner":
        if os.geteuid() != 0:
            pytest.skip("needs root to give the directory to another user")
        os.chown(locks, NOBODY, NOBODY)
    elif problem == "symlink":
        real = tmp_path / "real"
        locks.rename(real)
        locks.symlink_to(real)
    elif problem == "lock file 0644":
        palhm("run", "n", config=config, env=env)  # makes the lock file
        (lock,) = locks.iterdir()
        os.chmod(lock, 0o644)
    elif problem == "not a dir":
        locks.rmdir()
        locks.write_text("")
        env["PALHM_LOCK_DIR"] = str(locks / "sub")
    result = palhm("run", "n", config=config, env=env)
    assert result.returncode == 2
    line = one_line(result)
    assert str(locks) in line and ("lock directory" in line or "lock file" in line), line


def test_non_root_without_a_runtime_directory_locks_in_its_home():
    from palhm_core.lock import default_lock_dir

    assert default_lock_dir({}, 0) == "/run/palhm"
    assert default_lock_dir({}, 1000) is None
    assert default_lock_dir({"XDG_RUNTIME_DIR": "relative"}, 1000) is None
    home = {"HOME": "/home/op"}
    assert default_lock_dir(home, 1000) == "/home/op/.local/state/palhm/locks"
    assert default_lock_dir({**home, "XDG_STATE_HOME": "/st"}, 1000) == "/st/palhm/locks"
    assert default_lock_dir({**home, "XDG_RUNTIME_DIR": "/run/user/1000"}, 1000) == (
        "/run/user/1000/palhm"
    )


def test_a_user_crontab_locks_in_the_home(public_dir, marker):
    """cron gives a user's job HOME but no XDG_RUNTIME_DIR: the run locks in
    ~/.local/state/palhm/locks, made mode 0700 (as root, the run is made as
    user nobody)."""
    config = write_config(public_dir, {"tasks": [quick_null_task()]})
    os.chmod(config, 0o644)
    home = public_dir / "home"
    home.mkdir(mode=0o700)
    env = palhm_env(public_dir, marker)
    del env["PALHM_LOCK_DIR"]
    env.pop("XDG_RUNTIME_DIR", None)
    env.pop("XDG_STATE_HOME", None)
    env["HOME"] = str(home)
    argv = [PALHM, "-f", str(config), "run", "n"]
    if os.geteuid() == 0:
        os.chown(home, NOBODY, NOBODY)
        argv = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", *argv]
    result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=GUARD)
    assert result.returncode == 0, result.stderr
    locks = home / ".local" / "state" / "palhm" / "locks"
    assert stat.S_IMODE(locks.stat().st_mode) == 0o700
    assert any(p.name.endswith(".lock") for p in locks.iterdir())


def test_no_lock_directory_is_one_line_and_exit_2(public_dir, marker):
    """A user with neither a runtime directory nor a home (as root, the run
    is made as user nobody, since root always has /run/palhm)."""
    config = write_config(public_dir, {"tasks": [quick_null_task()]})
    os.chmod(config, 0o644)
    env = palhm_env(public_dir, marker)
    del env["PALHM_LOCK_DIR"]
    for name in ("XDG_RUNTIME_DIR", "XDG_STATE_HOME", "HOME"):
        env.pop(name, None)
    argv = [PALHM, "-f", str(config), "run", "n"]
    if os.geteuid() == 0:
        argv = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", *argv]
    result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=GUARD)
    assert result.returncode == 2, result.stderr
    line = one_line(result)
    assert "no lock directory" in line and "--lock-dir" in line


def _limit_files(n):
    return lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (n, n))


def many_tasks(n):
    tasks = [{"id": f"t{i:03}", "type": "routine", "routine": [inline("true")]} for i in range(n)]
    steps = [{"type": "task", "task-id": t["id"]} for t in tasks]
    return [{"id": "all", "type": "routine", "routine": steps}, *tasks]


def test_a_routine_of_200_tasks_runs_under_256_open_files(tmp_path, marker):
    """One descriptor per lock: 201 locks fit in 256, and the run is not
    "already running" because it ran out of descriptors."""
    config = write_config(tmp_path, {"tasks": many_tasks(200)})
    env = palhm_env(tmp_path, marker)
    for wait in ([], ["--wait=5"]):
        result = palhm(
            "-q", "run", *wait, "all", config=config, env=env, preexec_fn=_limit_files(256)
        )
        assert result.returncode == 0, result.stderr


def test_too_few_file_descriptors_is_an_error_not_a_busy_lock(tmp_path, marker):
    config = write_config(tmp_path, {"tasks": many_tasks(200)})
    env = palhm_env(tmp_path, marker)
    result = palhm("run", "--wait", "all", config=config, env=env, preexec_fn=_limit_files(64))
    assert result.returncode == 1
    line = one_line(result)
    assert "cannot open lock file" in line and "Too many open files" in line
    assert "already running" not in line
