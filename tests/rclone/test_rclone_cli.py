"""The rclone backend as an administrator uses it: ``palhm`` runs, verifies,
reads back and rotates copies on a local remote and on ``rclone serve
sftp``; a missing program or an unknown remote is one config error line
(exit 2), bad credentials one line at run time (exit 1), never a traceback
and never the secret."""

from __future__ import annotations

import json
import os
import subprocess
import time

import pytest
from conftest import PALHM, backup_task, inline, run_palhm, write_config

from .conftest import PASSWORD, fresh_root, rclone_program


def task(remote: str, *objects, **params) -> dict:
    objs = objects or ({"path": "db/dump.sql", "pipeline": [inline("echo", "rows")]},)
    return backup_task("backup", "rclone", objs, remote=remote, rclone=rclone_program(), **params)


def config(tmp_path, *tasks):
    return write_config(tmp_path, {"tasks": list(tasks)})


def one_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


def test_the_plugin_is_discovered():
    out = run_palhm("plugins", "--json")
    assert out.returncode == 0, out.stderr
    plugins = {p["name"]: p for p in json.loads(out.stdout)["plugins"]}
    assert plugins["rclone"]["provides"]["backend"] == ["rclone"]


@pytest.mark.parametrize("where", ["local", "sftp"])
def test_copies_are_made_verified_read_back_and_rotated(tmp_path, rclone_env, request, where):
    if where == "local":
        remote = f"{tmp_path}/root"
    else:
        remote = fresh_root(request.getfixturevalue("sftp_served"))
    conf = config(tmp_path, task(remote, **{"nb-copy-limit": 2}))
    for _ in range(3):
        result = run_palhm("run", "backup", config=conf)
        assert result.returncode == 0, result.stderr
    listed = json.loads(run_palhm("backups", "list", "--json", "backup", config=conf).stdout)
    assert [c["state"] for c in listed["copies"]] == ["complete", "complete"]
    verify = run_palhm("backups", "verify", "backup", config=conf)
    assert verify.returncode == 0, verify.stderr
    cat = run_palhm("backups", "cat", "backup", "latest", "db/dump.sql", config=conf)
    assert (cat.returncode, cat.stdout) == (0, "rows\n"), cat.stderr
    if where == "local":  # the rotated copies' directories are gone too
        assert sorted(p.name for p in (tmp_path / "root").iterdir()) == sorted(
            c["prefix"] for c in listed["copies"]
        )


def test_a_failed_pipeline_leaves_nothing(tmp_path, rclone_env):
    objs = [
        {"path": "ok", "pipeline": [inline("echo", "fine")]},
        {"path": "bad", "pipeline": [inline("sh", "-c", "echo part; exit 3")]},
    ]
    conf = config(tmp_path, task(f"{tmp_path}/root", *objs))
    result = run_palhm("run", "backup", config=conf)
    assert result.returncode == 1, result.stderr
    assert not (tmp_path / "root").exists() or list((tmp_path / "root").iterdir()) == []


def test_a_missing_program_is_a_config_error(tmp_path):
    conf = config(
        tmp_path,
        {
            **task(f"{tmp_path}/root"),
            "backend-param": {"remote": f"{tmp_path}/root", "rclone": str(tmp_path / "no-rclone")},
        },
    )
    result = run_palhm("config", "check", config=conf)
    assert result.returncode == 2
    line = one_line(result.stderr)
    assert "backend-param.rclone" in line and "no such program" in line


def test_an_unknown_remote_is_a_config_error(tmp_path):
    rc = tmp_path / "rclone.conf"
    rc.write_text("[elsewhere]\ntype = local\n")
    conf = config(tmp_path, task("nosuch:backup", config=str(rc)))
    result = run_palhm("config", "check", config=conf)
    assert result.returncode == 2
    line = one_line(result.stderr)
    assert "backend-param.remote" in line and "no remote 'nosuch'" in line
    known = config(tmp_path, task("elsewhere:" + str(tmp_path / "root"), config=str(rc)))
    assert run_palhm("config", "check", config=known).returncode == 0


@pytest.mark.parametrize("remote", ["--config=/etc/passwd", "-vv"])
def test_a_remote_rclone_would_take_for_an_option_is_a_config_error(tmp_path, remote):
    conf = config(tmp_path, task(remote))
    result = run_palhm("config", "check", config=conf)
    assert result.returncode == 2, result.stderr
    line = one_line(result.stderr)
    assert "backend-param.remote" in line and "option" in line, line


@pytest.mark.parametrize(
    ("flags", "bad"),
    [
        (["--dry-run"], 0),
        (["-n"], 0),
        (["--bwlimit", "1M", "--exclude=*.sql"], 2),
        (["--max-depth", "1"], 0),
        (["-vv"], 0),
        (["--log-level", "DEBUG"], 0),
        (["--log-file=/tmp/rclone.log"], 0),
    ],
)
def test_flags_that_make_rclone_store_list_or_delete_less_are_a_config_error(tmp_path, flags, bad):
    """A dry run would report copies complete with nothing stored; a filter
    hides copies or PALHM's own files from the listing and rotation; a log
    level fails every command beside PALHM's --quiet, a log file hides
    rclone's errors from PALHM's messages."""
    conf = config(tmp_path, task(f"{tmp_path}/root", flags=flags))
    result = run_palhm("config", "check", config=conf)
    assert result.returncode == 2, result.stderr
    assert f"backend-param.flags[{bad}]" in one_line(result.stderr)


def test_bad_credentials_fail_the_run_in_one_line_without_the_secret(tmp_path, sftp_served):
    wrong = fresh_root(sftp_served).replace("pass=", "pass=x", 1)
    conf = config(tmp_path, task(wrong, flags=["--low-level-retries", "1", "--retries", "1"]))
    result = run_palhm("run", "backup", config=conf)
    assert result.returncode == 1
    line = one_line(result.stderr)
    assert "rclone lsjson" in line, line
    assert PASSWORD not in result.stderr
    assert "pass=***" in line or "pass=<hidden>" in line, line


def test_config_show_and_plan_hide_the_password_of_a_connection_string(tmp_path):
    conf = config(tmp_path, task(":sftp,host=127.0.0.1,user=u,pass=VERYSECRET:root"))
    for args in (["config", "show"], ["plan", "backup"]):
        out = run_palhm(*args, config=conf)
        assert out.returncode == 0, out.stderr
        assert "VERYSECRET" not in out.stdout + out.stderr
    assert "pass=<hidden>" in run_palhm("config", "show", config=conf).stdout


def _children_of(pid: int) -> dict[int, str]:
    """PID -> command line of the live children of ``pid`` (from /proc)."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, ValueError, IndexError):
            continue
        if ppid == pid:
            found[int(entry)] = cmdline
    return found


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_a_killed_run_leaves_no_rclone_running_and_the_next_run_cleans_up(tmp_path, rclone_env):
    slow = {"path": "slow", "pipeline": [inline("sh", "-c", "echo part; exec sleep 60")]}
    conf = config(tmp_path, task(f"{tmp_path}/root", slow))
    proc = subprocess.Popen(
        [PALHM, "-f", str(conf), "run", "backup"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    rcat: list[int] = []
    while not rcat:
        assert time.monotonic() < deadline, "palhm never started rclone rcat"
        rcat = [p for p, cmd in _children_of(proc.pid).items() if cmd.endswith("/slow ")]
        time.sleep(0.05)
    proc.kill()
    proc.wait(timeout=60)
    deadline = time.monotonic() + 30
    while any(_alive(p) for p in rcat):
        assert time.monotonic() < deadline, f"rclone rcat {rcat} outlived the killed palhm"
        time.sleep(0.05)
    quick = config(tmp_path, task(f"{tmp_path}/root"))
    result = run_palhm("run", "backup", config=quick)
    assert result.returncode == 0, result.stderr
    assert "incomplete copy" in result.stderr
    listed = json.loads(run_palhm("backups", "list", "--json", "backup", config=quick).stdout)
    assert [c["state"] for c in listed["copies"]] == ["complete"]
    assert len(list((tmp_path / "root").iterdir())) == 1
