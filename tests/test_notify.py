"""Notifications reach real servers on 127.0.0.1: Healthchecks-style pings in
order, JSON webhooks with what the run did, mails through an SMTP server and
through a sendmail program; a notifier that fails or hangs is a warning and
never changes the run's exit status or holds it past its timeout."""

from __future__ import annotations

import os
import shutil
import signal
import ssl
import subprocess

import pytest
from conftest import PALHM, backup_task, inline, run_palhm, write_config
from notify_servers import (
    HttpRecorder,
    SmtpRecorder,
    calls,
    fake_mua,
    path_with,
    self_signed,
    wait_for,
)

HOST = os.uname().nodename


@pytest.fixture
def http():
    server = HttpRecorder().start()
    yield server
    server.stop()


@pytest.fixture
def smtp():
    server = SmtpRecorder().start()
    yield server
    server.stop()


def backup(tmp_path, *, fail=False, **params):
    argv = ("sh", "-c", "echo broken >&2; exit 3") if fail else ("echo", "hello")
    return backup_task(
        "db",
        root=str(tmp_path / "root"),
        # stderr hidden: its last lines follow the error line
        objects=[{"path": "db.txt", "pipeline": [inline(*argv, **{"vl-stderr": 9})]}],
        **params,
    )


def test_healthchecks_pings_start_then_success_with_the_copy(tmp_path, http):
    config = write_config(
        tmp_path,
        {
            "notify": [{"type": "webhook", "preset": "healthchecks", "url": http.url + "/ping/u1"}],
            "tasks": [backup(tmp_path)],
        },
    )
    result = run_palhm("run", "db", config=config)
    assert result.returncode == 0, result.stderr
    assert http.paths() == ["/ping/u1/start", "/ping/u1"]
    prefix = next(p.name for p in (tmp_path / "root").iterdir())
    body = http.requests[1].body.decode()
    assert "task:        db (backup)" in body
    assert f"host:        {HOST}" in body
    assert f"db: {prefix} on " in body
    assert "exit status: 0" in body


def test_healthchecks_pings_start_then_fail_and_the_exit_status_stays(tmp_path, http):
    config = write_config(
        tmp_path,
        {
            "notify": [{"type": "webhook", "preset": "healthchecks", "url": http.url + "/u2/"}],
            "tasks": [backup(tmp_path, fail=True)],
        },
    )
    result = run_palhm("run", "db", config=config)
    assert result.returncode == 1
    assert http.paths() == ["/u2/start", "/u2/fail"]
    body = http.requests[1].body.decode()
    assert "exit status: 1" in body
    assert "broken" in body  # the command's stderr follows the error line


def test_json_webhook_carries_copies_rotated_and_durations(tmp_path, http):
    config = write_config(
        tmp_path,
        {
            "notify": [{"type": "webhook", "url": http.url + "/hook", "on": ["success"]}],
            "tasks": [backup(tmp_path, **{"nb-copy-limit": 1})],
        },
    )
    assert run_palhm("run", "db", config=config).returncode == 0
    first = next(p.name for p in (tmp_path / "root").iterdir())
    assert run_palhm("run", "db", config=config).returncode == 0
    second = next(p.name for p in (tmp_path / "root").iterdir())
    assert first != second
    assert len(http.requests) == 2
    doc = http.requests[1].json()
    assert http.requests[1].headers["content-type"] == "application/json"
    assert doc["host"] == HOST
    assert doc["task"] == "db" and doc["event"] == "success"
    assert doc["exit-status"] == 0 and doc["error"] is None
    assert [c["prefix"] for c in doc["copies"]] == [second]
    assert doc["copies"][0]["bytes"] == len("hello\n")
    assert doc["rotated"] == [{"task": "db", "prefix": first}]
    assert doc["seconds"] >= 0 and doc["started"] <= doc["finished"]


def test_json_webhook_failure_document(tmp_path, http):
    config = write_config(
        tmp_path,
        {
            "notify": [{"type": "webhook", "url": http.url + "/hook"}],
            "tasks": [backup(tmp_path, fail=True)],
        },
    )
    result = run_palhm("run", "db", config=config)
    assert result.returncode == 1
    (request,) = http.requests  # json: success and failure, no start
    doc = request.json()
    assert doc["event"] == "failure" and doc["exit-status"] == 1
    error_line = next(line for line in result.stderr.splitlines() if "exited with" in line)
    assert doc["error"] == error_line.removeprefix("palhm: ")
    assert doc["copies"] == [] and doc["rotated"] == []


def test_a_server_answering_500_is_retried_then_a_warning(tmp_path, http):
    http.status = 500
    config = write_config(
        tmp_path,
        {
            "notify": [
                {"type": "webhook", "url": http.url + "/x", "on": ["success"], "retries": 2}
            ],
            "tasks": [backup(tmp_path)],
        },
    )
    result = run_palhm("run", "db", config=config)
    assert result.returncode == 0, result.stderr
    assert len(http.requests) == 3
    assert "notifier webhook (json) http://127.0.0.1:" in result.stderr
    assert "HTTP 500" in result.stderr and "after 3 attempts" in result.stderr


def test_a_server_that_never_answers_does_not_hold_the_run(tmp_path, http):
    http.holding = True
    config = write_config(
        tmp_path,
        {
            "notify": [
                {
                    "type": "webhook",
                    "preset": "healthchecks",
                    "url": http.url + "/hc",
                    "timeout": 1,
                    "retries": 5,
                }
            ],
            "tasks": [backup(tmp_path)],
        },
    )
    # The notifier's bound is 1 s per event; the run must end well within
    # the subprocess timeout although the server never answers.
    result = run_palhm("run", "db", config=config, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "could not send the start notification" in result.stderr
    assert "could not send the success notification" in result.stderr
    assert [p.name for p in (tmp_path / "root").iterdir()]  # the copy was made
    assert http.paths()[0] == "/hc/start"


def test_a_log_line_never_shows_the_ping_url_path_or_its_password(tmp_path, http):
    http.status = 404
    config = write_config(
        tmp_path,
        {
            "notify": [
                {
                    "type": "webhook",
                    "url": http.url.replace("//", "//user:s3cret@") + "/secret-uuid?token=tk-9",
                    "headers": {"Authorization": "Bearer tok-123"},
                    "on": ["success"],
                }
            ],
            "tasks": [backup(tmp_path)],
        },
    )
    result = run_palhm("run", "db", config=config)
    assert result.returncode == 0
    assert "HTTP 404" in result.stderr
    for secret in ("secret-uuid", "s3cret", "tok-123", "tk-9"):
        assert secret not in result.stderr
    # the request carried them all: the URL's password as basic auth
    (request,) = http.requests
    assert request.path == "/secret-uuid?token=tk-9"
    assert request.headers["authorization"] == "Bearer tok-123"
    shown = run_palhm("config", "show", config=config)
    assert shown.returncode == 0, shown.stderr
    for secret in ("secret-uuid", "s3cret", "tok-123", "tk-9"):
        assert secret not in shown.stdout
    assert f'"url": "http://{http.url.split("//")[1]}/<hidden>"' in shown.stdout


def test_smtp_mails_for_failure_and_success(tmp_path, smtp):
    mail = {
        "type": "mail",
        "via": "smtp",
        "smtp-host": "127.0.0.1",
        "smtp-port": smtp.port,
        "security": "none",
        "to": ["admin@example.invalid"],
        "from": "palhm@example.invalid",
        "on": ["success", "failure"],
    }
    good = write_config(tmp_path, {"notify": [mail], "tasks": [backup(tmp_path)]})
    assert run_palhm("run", "db", config=good).returncode == 0
    bad = write_config(
        tmp_path, {"notify": [mail], "tasks": [backup(tmp_path, fail=True)]}, "bad.jsonc"
    )
    failed = run_palhm("run", "db", config=bad)
    assert failed.returncode == 1
    assert len(smtp.mails) == 2
    (sender, rcpts, ok), (_, _, ko) = smtp.mails
    assert sender == "palhm@example.invalid" and rcpts == ["admin@example.invalid"]
    assert ok["Subject"] == f"PALHM on {HOST}: task db succeeded"
    assert ko["Subject"] == f"PALHM on {HOST}: task db FAILED"
    assert ok["To"] == "admin@example.invalid"
    ok_body, ko_body = ok.get_content(), ko.get_content()
    prefix = next(p.name for p in (tmp_path / "root").iterdir())
    assert "copies made:" in ok_body and prefix in ok_body
    assert "exit status: 1" in ko_body
    error_line = next(line for line in failed.stderr.splitlines() if "exited with" in line)
    assert error_line.removeprefix("palhm: ") in ko_body
    assert "broken" in ko_body


@pytest.mark.skipif(
    shutil.which("openssl") is None,
    reason="openssl not found: install the Debian package openssl for the server's certificate",
)
def test_smtp_starttls_and_login_with_the_password_from_the_environment(tmp_path):
    cert, key = self_signed(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    server = SmtpRecorder(tls_context=context, auth={"backup": "pw-Zq9"}).start()
    try:
        config = write_config(
            tmp_path,
            {
                "notify": [
                    {
                        "type": "mail",
                        "via": "smtp",
                        "smtp-host": "127.0.0.1",
                        "smtp-port": server.port,
                        "ca-file": str(cert),
                        "user": "backup",
                        "password-env": "PALHM_TEST_SMTP_PASSWORD",
                        "to": ["root@example.invalid"],
                        "on": ["failure"],
                        "timeout": 3,
                    }
                ],
                "tasks": [backup(tmp_path, fail=True)],
            },
        )
        result = run_palhm(
            "-v", "run", "db", config=config, env={"PALHM_TEST_SMTP_PASSWORD": "pw-Zq9"}
        )
        assert result.returncode == 1
        assert server.logins == ["backup"]
        (_, _, msg) = server.mails[0]
        assert "FAILED" in msg["Subject"]
        assert "pw-Zq9" not in result.stderr
        # A wrong password: a warning, the exit status is the task's.
        result = run_palhm("run", "db", config=config, env={"PALHM_TEST_SMTP_PASSWORD": "wrong"})
        assert result.returncode == 1
        assert "notifier mail via smtp 127.0.0.1" in result.stderr
        assert "could not send the failure notification" in result.stderr
        assert "wrong" not in result.stderr
        assert len(server.mails) == 1
    finally:
        server.stop()


def test_sendmail_gets_the_whole_message_on_stdin(tmp_path):
    bindir = tmp_path / "bin"
    log = fake_mua(bindir, "sendmail")
    config = write_config(
        tmp_path,
        {
            "notify": [{"type": "mail", "to": ["root"], "on": ["start", "success"]}],
            "tasks": [backup(tmp_path)],
        },
    )
    result = run_palhm("run", "db", config=config, env=path_with(bindir))
    assert result.returncode == 0, result.stderr
    start, success = calls(log)
    assert start["argv"][1:] == ["-t", "-oi"]
    assert "To: root\n" in start["stdin"]
    assert f"Subject: PALHM on {HOST}: task db started\n" in start["stdin"]
    assert f"Subject: PALHM on {HOST}: task db succeeded\n" in success["stdin"]
    assert "exit status: 0" in success["stdin"]


def test_a_failing_mta_is_a_warning_and_the_run_succeeds(tmp_path):
    bindir = tmp_path / "bin"
    fake_mua(bindir, "mailx", status=4)
    config = write_config(
        tmp_path,
        {
            "notify": [{"type": "mail", "via": "mailx", "to": ["root"], "on": ["success"]}],
            "tasks": [backup(tmp_path)],
        },
    )
    result = run_palhm("run", "db", config=config, env=path_with(bindir))
    assert result.returncode == 0
    assert "notifier mail via mailx: could not send the success notification" in result.stderr
    assert "exited with status 4" in result.stderr


def test_a_task_notifies_of_itself_inside_a_routine(tmp_path, http):
    task = backup(tmp_path)
    task["notify"] = [{"type": "webhook", "preset": "healthchecks", "url": http.url + "/db"}]
    config = write_config(
        tmp_path,
        {
            "notify": [{"type": "webhook", "preset": "healthchecks", "url": http.url + "/all"}],
            "tasks": [
                task,
                {
                    "id": "default",
                    "type": "routine",
                    "routine": [{"type": "task", "task-id": "db"}, inline("false")],
                },
            ],
        },
    )
    result = run_palhm("run", config=config)
    assert result.returncode == 1
    assert http.paths() == ["/all/start", "/db/start", "/db", "/all/fail"]
    # the run's failure still names the copy the backup made
    assert "copies made:" in http.requests[-1].body.decode()


def test_a_dry_run_sends_nothing(tmp_path, http):
    config = write_config(
        tmp_path,
        {
            "notify": [{"type": "webhook", "preset": "healthchecks", "url": http.url + "/d"}],
            "tasks": [backup(tmp_path)],
        },
    )
    result = run_palhm("run", "--dry-run", "db", config=config)
    assert result.returncode == 0, result.stderr
    assert http.requests == []


def test_notifier_mistakes_are_config_errors(tmp_path):
    config = write_config(
        tmp_path,
        {
            "notify": [
                {"type": "pager"},
                {"type": "mail", "via": "smtp", "to": ["a@b"]},
                {"type": "webhook", "url": "ftp://x", "on": ["finish"]},
                {"type": "webhook", "url": "https://hc.example/ping/sec ret"},
                {"type": "webhook", "url": "https://hc.example:99999/ping/secret"},
                {"type": "webhook", "url": "https://hc.example/ping/gr\u00fc\u00dfe"},
                {
                    "type": "webhook",
                    "url": "https://hc.example/x",
                    "headers": {"Authorization": "Bearer tok-5ecret\n"},
                },
                {"type": "webhook", "url": "https://hc.example/x", "headers": {"X Y": "1"}},
                {
                    "type": "mail",
                    "to": ["a@b"],
                    "via": "smtp",
                    "smtp-host": "mail.example.com",
                    "security": "none",
                    "user": "u",
                    "password-env": "P",
                },
            ],
            "tasks": [
                {**backup(tmp_path), "notify": [{"type": "mail", "to": ["root"], "user": "u"}]}
            ],
        },
    )
    result = run_palhm("config", "check", config=config)
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert any("notify[0].type: " in line and "pager" in line for line in lines), lines
    assert any(line.endswith("notify[1].smtp-host: required when via is smtp") for line in lines)
    assert any("notify[2].url: " in line for line in lines), lines
    assert any("notify[2].on[0]: " in line for line in lines), lines
    # a URL urllib would refuse at each run; the line never shows its path
    assert any(
        line.endswith("notify[3].url: ' ' in the URL: write it percent-encoded (such as %20)")
        for line in lines
    ), lines
    assert any(
        line.endswith("notify[4].url: the URL's port is not a number from 1 to 65535")
        for line in lines
    ), lines
    assert any(
        line.endswith("notify[5].url: '\u00fc' in the URL: write it percent-encoded (such as %20)")
        for line in lines
    ), lines
    assert any(
        "notify[8].security: none would send the password in plain text" in line for line in lines
    ), lines
    assert any(
        line.endswith(
            "notify[6].headers: the value of Authorization holds a line break or control character"
        )
        for line in lines
    ), lines
    assert any("notify[7].headers: 'X Y' is not an HTTP header name" in line for line in lines), (
        lines
    )
    assert "/ping/" not in result.stderr and "tok-5ecret" not in result.stderr
    assert any(
        line.endswith("tasks[0].notify[0].user: is for via smtp, not sendmail") for line in lines
    ), lines
    assert "Traceback" not in result.stderr


def test_a_notifier_never_runs_a_shell(tmp_path):
    """The recipient list reaches mailx as separate arguments, untouched."""
    bindir = tmp_path / "bin"
    log = fake_mua(bindir, "mailx")
    config = write_config(
        tmp_path,
        {
            "notify": [
                {
                    "type": "mail",
                    "via": "mailx",
                    "to": ["a;touch x", "b$(id)"],
                    "mailx-options": ["sendwait"],
                    "on": ["success"],
                }
            ],
            "tasks": [backup(tmp_path)],
        },
    )
    result = run_palhm("run", "db", config=config, env=path_with(bindir), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    (call,) = calls(log)
    assert call["argv"][1:3] == ["-s", f"PALHM on {HOST}: task db succeeded"]
    assert call["argv"][3:] == ["-S", "sendwait", "a;touch x", "b$(id)"]
    assert not (tmp_path / "x").exists()


def test_a_stopped_run_sends_its_failure_with_the_signal_status(tmp_path, http):
    stage = inline("sleep", "60")
    config = write_config(
        tmp_path,
        {
            "notify": [{"type": "webhook", "preset": "healthchecks", "url": http.url + "/s"}],
            "tasks": [
                backup_task(
                    "db", root=str(tmp_path / "root"), objects=[{"path": "x", "pipeline": [stage]}]
                )
            ],
        },
    )
    proc = subprocess.Popen(
        [PALHM, "-f", str(config), "run", "db"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    wait_for(lambda: http.paths() == ["/s/start"], "the start ping", seconds=60)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 143, stderr
    assert http.paths() == ["/s/start", "/s/fail"]
    body = http.requests[1].body.decode()
    assert "exit status: 143" in body and "stopped by SIGTERM" in body


def test_ntfy_gets_a_titled_urgent_message_on_failure(tmp_path, http):
    config = write_config(
        tmp_path,
        {
            "notify": [{"type": "webhook", "preset": "ntfy", "url": http.url + "/backups"}],
            "tasks": [backup(tmp_path, fail=True)],
        },
    )
    assert run_palhm("run", "db", config=config).returncode == 1
    (request,) = http.requests
    assert request.path == "/backups"
    assert request.headers["title"] == f"PALHM on {HOST}: task db FAILED"
    assert request.headers["priority"] == "high"
    assert request.body.decode().startswith(f"host:        {HOST}\n")


def test_smtp_password_from_a_file(tmp_path):
    server = SmtpRecorder(auth={"backup": "from-file"}).start()
    try:
        secret = tmp_path / "smtp-password"
        secret.write_text("from-file\n")
        config = write_config(
            tmp_path,
            {
                "notify": [
                    {
                        "type": "mail",
                        "via": "smtp",
                        "smtp-host": "127.0.0.1",
                        "smtp-port": server.port,
                        "security": "none",
                        "user": "backup",
                        "password-file": str(secret),
                        "to": ["root@example.invalid"],
                        "on": ["success"],
                    }
                ],
                "tasks": [backup(tmp_path)],
            },
        )
        result = run_palhm("run", "db", config=config)
        assert result.returncode == 0, result.stderr
        assert server.logins == ["backup"] and len(server.mails) == 1
    finally:
        server.stop()


@pytest.mark.parametrize("status", [302, 307])
def test_a_redirect_is_not_followed_with_the_secrets(tmp_path, http, status):
    # A server that sends the notifier elsewhere gets neither the
    # Authorization header nor the message there: a warning names the answer.
    elsewhere = HttpRecorder().start()
    try:
        http.status, http.location = status, elsewhere.url + "/collect"
        config = write_config(
            tmp_path,
            {
                "notify": [
                    {
                        "type": "webhook",
                        "url": http.url + "/hook",
                        "headers": {"Authorization": "Bearer tok-123"},
                        "on": ["success"],
                    }
                ],
                "tasks": [backup(tmp_path)],
            },
        )
        result = run_palhm("run", "db", config=config)
        assert result.returncode == 0, result.stderr
        assert len(http.requests) == 1
        assert f"HTTP {status}" in result.stderr and "redirect not followed" in result.stderr
        assert elsewhere.requests == []
    finally:
        elsewhere.stop()


def test_a_line_break_in_a_task_id_never_makes_a_header(tmp_path):
    # The subject names the task: a line break in its id is a blank there,
    # for sendmail -t (which reads the recipients from the headers) and
    # mailx -s alike, and the mail is sent.
    bindir = tmp_path / "bin"
    sendmail, mailx = fake_mua(bindir, "sendmail"), fake_mua(bindir, "mailx")
    task_id = "db\nBcc: evil@example.com"
    config = write_config(
        tmp_path,
        {
            "notify": [
                {"type": "mail", "to": ["root"], "on": ["success"]},
                {"type": "mail", "via": "mailx", "to": ["root"], "on": ["success"]},
            ],
            "tasks": [{**backup(tmp_path), "id": task_id}],
        },
    )
    result = run_palhm("run", task_id, config=config, env=path_with(bindir))
    assert result.returncode == 0, result.stderr
    assert "could not send" not in result.stderr
    ((mail,), (mailx_call,)) = calls(sendmail), calls(mailx)
    headers = mail["stdin"].split("\n\n")[0].splitlines()
    assert f"Subject: PALHM on {HOST}: task db Bcc: evil@example.com succeeded" in headers
    assert not any(line.startswith("Bcc:") for line in headers)
    assert mailx_call["argv"][1:3] == [
        "-s",
        f"PALHM on {HOST}: task db Bcc: evil@example.com succeeded",
    ]


def test_a_line_break_in_an_address_is_a_config_error(tmp_path):
    config = write_config(
        tmp_path,
        {
            "notify": [
                {"type": "mail", "to": ["root", "ops\nBcc: evil@example.com"]},
                {"type": "mail", "to": ["root"], "from": "me\r\nX-Evil: 1"},
            ],
            "tasks": [backup(tmp_path)],
        },
    )
    result = run_palhm("config", "check", config=config)
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert any(
        line.endswith("notify[0].to[1]: a line break or control character in an address")
        for line in lines
    ), lines
    assert any(
        line.endswith("notify[1].from: a line break or control character in an address")
        for line in lines
    ), lines


def test_a_hung_mta_is_killed_with_its_children(tmp_path):
    # A sendmail whose queue program never ends: after the timeout neither
    # outlives the warning.
    bindir = tmp_path / "bin"
    bindir.mkdir()
    pids = tmp_path / "pids"
    program = bindir / "sendmail"
    program.write_text(f"#!/bin/sh\nsleep 300 &\necho $$ $! > {pids}\nwait\n")
    program.chmod(0o755)
    config = write_config(
        tmp_path,
        {
            "notify": [
                {
                    "type": "mail",
                    "to": ["root"],
                    "program": str(program),
                    "on": ["success"],
                    "timeout": 1,
                }
            ],
            "tasks": [backup(tmp_path)],
        },
    )
    result = run_palhm("run", "db", config=config, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "did not finish within 1 s" in result.stderr
    for pid in map(int, pids.read_text().split()):
        wait_for(lambda pid=pid: not _running(pid), f"process {pid} ended", seconds=10)


def _running(pid: int) -> bool:
    """True while ``pid`` lives and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_a_huge_answer_makes_one_warning_line_of_bounded_length(tmp_path, http):
    http.status, http.reason = 400, "Bad " + "x" * 50_000
    config = write_config(
        tmp_path,
        {
            "notify": [{"type": "webhook", "url": http.url + "/x", "on": ["success"]}],
            "tasks": [backup(tmp_path)],
        },
    )
    result = run_palhm("run", "db", config=config)
    assert result.returncode == 0, result.stderr
    (line,) = [x for x in result.stderr.splitlines() if "could not send" in x]
    assert "HTTP 400 Bad xxx" in line and line.endswith("...")
    assert len(line) < 1000
