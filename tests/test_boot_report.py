"""``palhm boot-report`` through each MUA of the ``boot-report`` key: mailx
and sendmail (programs written by the test that record their argv and
stdin), stdout; the shipped unit verifies. (aws-sns: tests/s3/test_notify_sns.py.)"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from conftest import PALHM, run_palhm, write_config
from notify_servers import calls, fake_mua, path_with

HOST = os.uname().nodename
UNIT = Path(__file__).resolve().parent.parent / "conf" / "systemd" / "palhm-boot-report.service"


def report_of(text: str) -> dict:
    """The YAML document of a report body (its # header lines are comments)."""
    return yaml.safe_load(text)["boot-report"]


def test_mailx_gets_subject_recipients_options_and_the_report(tmp_path):
    bindir = tmp_path / "bin"
    log = fake_mua(bindir, "mailx")
    config = write_config(
        tmp_path,
        {
            "boot-report": {
                "mua": "mailx",
                "mail-to": ["root", "ops@example.invalid"],
                "mua-param": {"int-opts": ["sendwait"]},
            }
        },
    )
    result = run_palhm("-q", "boot-report", config=config, env=path_with(bindir))
    assert result.returncode == 0, result.stderr
    assert result.stdout == result.stderr == ""
    (call,) = calls(log)
    assert call["argv"][1:] == [
        "-s",
        f"Boot Report from {HOST}",
        "-S",
        "sendwait",
        "root",
        "ops@example.invalid",
    ]
    body = call["stdin"]
    assert body.startswith("# ") and HOST in body.splitlines()[1]
    report = report_of(body)
    assert report["hostname"] == HOST
    assert report["boot-id"] == Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    assert report["uptime"].startswith("up ")
    assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d$", report["uptime-since"])
    assert isinstance(report["tz"], list) and re.match(r"[+-]\d{4}$", report["tz"][-1])


def test_mailx_program_from_mua_param_and_what_the_report_leaves_out(tmp_path):
    bindir = tmp_path / "elsewhere"
    log = fake_mua(bindir, "my-mailx")
    config = write_config(
        tmp_path,
        {
            "boot-report": {
                "mua": "mailx",
                "mua-param": {"exec": str(bindir / "my-mailx")},
                "mail-to": ["root"],
                "subject": "up again: {hostname}",
                "header": "Hello from {hostname}.\nSecond line.",
                "uptime": False,
                "uptime-since": False,
                "bootid": False,
            }
        },
    )
    result = run_palhm("boot-report", config=config)
    assert result.returncode == 0, result.stderr
    (call,) = calls(log)
    assert call["argv"][1:3] == ["-s", f"up again: {HOST}"]
    body = call["stdin"]
    assert body.splitlines()[:2] == [f"# Hello from {HOST}.", "# Second line."]
    assert set(report_of(body)) == {"hostname", "tz"}


def test_sendmail_gets_headers_and_the_report(tmp_path):
    bindir = tmp_path / "bin"
    log = fake_mua(bindir, "sendmail")
    config = write_config(
        tmp_path, {"boot-report": {"mua": "sendmail", "mail-to": ["root"], "delay": 0.2}}
    )
    result = run_palhm("boot-report", config=config, env=path_with(bindir))
    assert result.returncode == 0, result.stderr
    (call,) = calls(log)
    assert call["argv"][1:] == ["-t", "-oi"]
    head, _, body = call["stdin"].partition("\n\n")
    assert f"Subject: Boot Report from {HOST}" in head and "To: root" in head
    assert report_of(body)["hostname"] == HOST


def test_stdout_prints_subject_recipients_and_the_report(tmp_path):
    config = write_config(tmp_path, {"boot-report": {"mua": "stdout", "mail-to": ["root"]}})
    result = run_palhm("boot-report", config=config)
    assert result.returncode == 0, result.stderr
    subject, rcpt, blank, *body = result.stdout.splitlines()
    assert (subject, rcpt, blank) == (f"Boot Report from {HOST}", "root", "")
    assert report_of("\n".join(body))["hostname"] == HOST


def test_boot_wait_systemd_waits_for_systemctl_and_reports_its_answer(tmp_path):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    systemctl = bindir / "systemctl"
    systemctl.write_text(f'#!{shutil.which("sh")}\necho "$@" > {tmp_path}/asked\necho degraded\n')
    systemctl.chmod(0o755)
    config = write_config(
        tmp_path,
        {"boot-report": {"mua": "stdout", "mail-to": ["root"], "boot-wait": "systemd"}},
    )
    result = run_palhm("boot-report", config=config, env=path_with(bindir))
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "asked").read_text().split() == ["is-system-running", "--wait"]
    subject, rcpt, blank, *body = result.stdout.splitlines()
    assert report_of("\n".join(body))["system-state"] == "degraded"


def test_a_mua_that_fails_fails_the_command(tmp_path):
    bindir = tmp_path / "bin"
    fake_mua(bindir, "mailx", status=2)
    config = write_config(tmp_path, {"boot-report": {"mua": "mailx", "mail-to": ["root"]}})
    result = run_palhm("boot-report", config=config, env=path_with(bindir))
    assert result.returncode == 1
    assert result.stderr.startswith("palhm: boot report via mail via mailx: ")
    assert "exited with status 2" in result.stderr


def test_boot_report_mistakes_and_its_absence(tmp_path):
    config = write_config(
        tmp_path,
        {
            "boot-report": {
                "mua": "pigeon",
                "mail-to": [],
                "subject": "{host}",
                "delay": -1,
            }
        },
    )
    result = run_palhm("config", "check", config=config)
    assert result.returncode == 2
    text = result.stderr
    for place in ("boot-report.mua", "boot-report.mail-to", "boot-report.delay"):
        assert f"{config}: {place}: " in text, text
    config = write_config(
        tmp_path,
        {"boot-report": {"mua": "stdout", "mail-to": ["x"], "subject": "{host}"}},
        "two.jsonc",
    )
    result = run_palhm("config", "check", config=config)
    assert result.stderr.startswith(f"palhm: {config}: boot-report.subject: only {{hostname}}")
    config = write_config(tmp_path, {}, "none.jsonc")
    result = run_palhm("boot-report", config=config)
    assert result.returncode == 2
    assert result.stderr == f"palhm: {config}: no boot-report key: nothing to send\n"


@pytest.mark.skipif(
    shutil.which("systemd-analyze") is None,
    reason="systemd-analyze not found: install the Debian/Ubuntu package systemd",
)
def test_the_boot_report_unit_verifies(tmp_path):
    text = UNIT.read_text()
    assert "ExecStart=/usr/local/bin/palhm -q boot-report" in text
    (tmp_path / UNIT.name).write_text(text.replace("/usr/local/bin/palhm", PALHM))
    result = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", UNIT.name],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    ours = [line for line in (result.stdout + result.stderr).splitlines() if "palhm" in line]
    assert result.returncode == 0 and ours == [], result.stdout + result.stderr


def test_recipients_of_included_files_join_as_in_the_original(tmp_path):
    write_config(tmp_path, {"boot-report": {"mail-to": ["ops@example.invalid"]}}, "more.jsonc")
    config = write_config(
        tmp_path,
        {"include": ["more.jsonc"], "boot-report": {"mua": "stdout", "mail-to": ["root"]}},
    )
    result = run_palhm("boot-report", config=config)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[1] == "root ops@example.invalid"
    write_config(tmp_path, {"boot-report": {"mua": "mailx", "mail-to": ["x"]}}, "more.jsonc")
    result = run_palhm("config", "check", config=config)
    assert result.returncode == 2
    assert result.stderr == (
        f"palhm: {tmp_path / 'more.jsonc'}: boot-report.mua: the mua is already chosen by an "
        "earlier file\n"
    )


def test_a_line_break_in_the_subject_never_makes_a_header(tmp_path):
    bindir = tmp_path / "bin"
    log = fake_mua(bindir, "sendmail")
    subject = "Boot of {hostname}\nBcc: evil@example.com"
    config = write_config(
        tmp_path, {"boot-report": {"mua": "sendmail", "mail-to": ["root"], "subject": subject}}
    )
    result = run_palhm("boot-report", config=config, env=path_with(bindir))
    assert result.returncode == 0, result.stderr
    (call,) = calls(log)
    headers = call["stdin"].split("\n\n")[0].splitlines()
    assert f"Subject: Boot of {HOST} Bcc: evil@example.com" in headers
    assert not any(line.startswith("Bcc:") for line in headers)


def test_a_failing_mua_is_one_line_with_its_secrets_hidden(tmp_path):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    program = bindir / "mailx"
    program.write_text("#!/bin/sh\necho 'relay refused: --password=hunter2' >&2\nexit 3\n")
    program.chmod(0o755)
    config = write_config(tmp_path, {"boot-report": {"mua": "mailx", "mail-to": ["root"]}})
    result = run_palhm("boot-report", config=config, env=path_with(bindir))
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1
    assert "exited with status 3: relay refused: --password=<hidden>" in result.stderr
    assert "hunter2" not in result.stderr


def test_a_recipient_is_never_an_option_of_the_mua(tmp_path):
    bindir = tmp_path / "bin"
    log = fake_mua(bindir, "mailx")
    config = write_config(
        tmp_path, {"boot-report": {"mua": "mailx", "mail-to": ["root", "-Ssendmail=/bin/false"]}}
    )
    result = run_palhm("boot-report", config=config, env=path_with(bindir))
    assert result.returncode == 2
    assert result.stderr.startswith(f"palhm: {config}: boot-report.mail-to[1]: ")
    assert calls(log) == []
