"""PALHM's log on stderr: syslog priority prefixes and no timestamps under
systemd's journal (JOURNAL_STREAM naming stderr), plain lines otherwise, -q
quiet when all is well, and secrets never printed."""

from __future__ import annotations

import json
import os
import re
import subprocess

from conftest import PALHM, backup_task, inline, write_config
from timers_util import GUARD, palhm_env

SECRET = "hunter2-s3cr3t"


def run_with_stderr_file(tmp_path, args, config, journal: str | None = "match", **env_extra):
    """Run PALHM with stderr redirected to a file; JOURNAL_STREAM set to that
    file's device:inode ("match"), to another file ("other"), or unset."""
    err_path = tmp_path / "stderr.log"
    env = palhm_env(tmp_path, **env_extra)
    with open(err_path, "wb") as err:
        st = os.fstat(err.fileno())
        if journal == "match":
            env["JOURNAL_STREAM"] = f"{st.st_dev}:{st.st_ino}"
        elif journal == "other":
            other = os.stat(config)
            env["JOURNAL_STREAM"] = f"{other.st_dev}:{other.st_ino}"
        result = subprocess.run(
            [PALHM, "-f", str(config), *map(str, args)],
            stdout=subprocess.PIPE,
            stderr=err,
            env=env,
            timeout=GUARD,
            text=True,
        )
    return result.returncode, err_path.read_text()


def two_tasks(tmp_path):
    good = backup_task(
        "good",
        objects=[{"path": "x", "pipeline": [inline("echo", "x")]}],
        root=str(tmp_path / "root"),
    )
    bad = backup_task(
        "bad",
        objects=[{"path": "x", "pipeline": [inline("false")]}],
        root=str(tmp_path / "root-bad"),
    )
    return write_config(tmp_path, {"tasks": [good, bad]})


TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d")


def test_priority_prefixes_under_the_journal(tmp_path):
    config = two_tasks(tmp_path)
    rc, err = run_with_stderr_file(tmp_path, ["run", "good"], config)
    assert rc == 0
    lines = err.splitlines()
    assert lines, "info lines are logged at the default verbosity"
    assert all(line.startswith("<6>") for line in lines), err
    # No timestamp of PALHM's own in front of a message (journald adds one).
    assert not any(TIMESTAMP.match(line[3:]) for line in lines)
    assert not any("palhm:" in line for line in lines)

    rc, err = run_with_stderr_file(tmp_path, ["run", "bad"], config)
    assert rc == 1
    lines = err.splitlines()
    assert all(re.match(r"<[0-7]>", line) for line in lines), err
    errors = [line for line in lines if line.startswith("<3>")]
    assert errors and "exited with status 1" in errors[-1]
    assert any(line.startswith("<6>") for line in lines)


def test_verbose_lines_are_debug_priority(tmp_path):
    config = two_tasks(tmp_path)
    rc, err = run_with_stderr_file(tmp_path, ["-vv", "run", "good"], config)
    assert rc == 0
    assert any(line.startswith("<7>") for line in err.splitlines()), err


def test_plain_lines_off_the_journal(tmp_path):
    config = two_tasks(tmp_path)
    for journal in (None, "other"):  # not set, or naming another file
        rc, err = run_with_stderr_file(tmp_path, ["run", "bad"], config, journal=journal)
        assert rc == 1
        lines = err.splitlines()
        assert lines and all(line.startswith("palhm: ") for line in lines), err
        assert not any(line.startswith("<") for line in lines)


def test_quiet_says_nothing_when_all_is_well(tmp_path):
    config = two_tasks(tmp_path)
    rc, err = run_with_stderr_file(tmp_path, ["-q", "run", "good"], config, journal=None)
    assert (rc, err) == (0, "")
    rc, err = run_with_stderr_file(tmp_path, ["-q", "run", "bad"], config)
    assert rc == 1
    assert len(err.splitlines()) == 1 and err.startswith("<3>")


def secret_config(tmp_path):
    url = f"https://backup:{SECRET}@dav.example.net/upload/"
    failing = inline(
        "sh",
        "-c",
        "exit 3",
        "sh",
        url,
        f"--password={SECRET}",
        env={"AWS_SECRET_ACCESS_KEY": SECRET},
    )
    routine = {"id": "r", "type": "routine", "routine": [failing]}
    dump = inline("mysqldump", "-uroot", f"-p{SECRET}", "--all-databases")
    upload = inline("curl", "-T", "-", url, "--token", SECRET)
    backup = backup_task(
        "b",
        objects=[{"path": "db.sql", "pipeline": [dump, upload]}],
        root=str(tmp_path / "r"),
    )
    return write_config(tmp_path, {"tasks": [routine, backup]})


def test_secrets_never_reach_the_log(tmp_path):
    config = secret_config(tmp_path)
    report = tmp_path / "report.json"
    rc, err = run_with_stderr_file(
        tmp_path, ["-vvv", "run", "--report", report, "r"], config, journal=None
    )
    assert rc == 1
    assert "running" in err and "<hidden>" in err, err  # the debug line naming the command
    assert SECRET not in err
    assert SECRET not in report.read_text()


def test_secrets_never_reach_the_plan(tmp_path):
    config = secret_config(tmp_path)
    for task in ("r", "b"):
        for extra in ([], ["--json"]):
            result = subprocess.run(
                [PALHM, "-f", str(config), "plan", *extra, task],
                capture_output=True,
                text=True,
                env=palhm_env(tmp_path),
                timeout=GUARD,
            )
            assert result.returncode == 0, result.stderr
            assert SECRET not in result.stdout
            assert "<hidden>" in result.stdout
            if extra:
                json.loads(result.stdout)
    plan = subprocess.run(
        [PALHM, "-f", str(config), "plan", "r"],
        capture_output=True,
        text=True,
        env=palhm_env(tmp_path),
        timeout=GUARD,
    ).stdout
    assert "AWS_SECRET_ACCESS_KEY=<set>" in plan
    assert "https://backup:<hidden>@dav.example.net/upload/" in plan


def test_redact_rules():
    from palhm_core.redact import redact, redact_argv

    assert redact("git clone https://u:pw@h/x") == "git clone https://u:<hidden>@h/x"
    assert redact("x --password=pw --passphrase-file /k") == (
        "x --password=<hidden> --passphrase-file /k"
    )
    assert redact("pg_dump --no-password db") == "pg_dump --no-password db"
    assert redact("PGPASSWORD=pw X=<set> PATH=/bin") == "PGPASSWORD=<hidden> X=<set> PATH=/bin"
    assert redact("http://host:8080/path") == "http://host:8080/path"
    assert redact("tar -cpf - /etc") == "tar -cpf - /etc"
    assert redact_argv(["mysql", "-ppw", "--secret-key", "k", "-uroot"]) == [
        "mysql",
        "-p<hidden>",
        "--secret-key",
        "<hidden>",
        "-uroot",
    ]
