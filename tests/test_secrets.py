"""Secrets stay out of what PALHM prints and stores: `config show` (unless
--show-secrets), config errors, stderr tails, run reports and metrics (mode
0600), and the argv forms that carry a password."""

from __future__ import annotations

import json
import os
import stat

import pytest
from conftest import backup_task, inline, run_palhm, write_config

from palhm_core.redact import HIDDEN, redact, redact_argv

SECRETS = ("hunter2", "s3cr3tT0ken", "Pa55word", "123456789")


def shown_config():
    return {
        "execs": [
            {
                "id": "dump",
                "argv": ["mysqldump", "-pPa55word", "--all-databases"],
                "env": {"DB_PASSWORD": "hunter2", "PLAIN": "123456789"},
            }
        ],
        "tasks": [
            {
                "id": "r",
                "type": "routine",
                "routine": [
                    {"type": "exec", "exec-id": "dump"},
                    inline(
                        "curl",
                        "-H",
                        "Authorization: Bearer s3cr3tT0ken",
                        "https://backup:hunter2@dav.example.net/x",
                    ),
                    {"type": "exec-append", "exec-id": "dump", "env": {"MORE": "hunter2"}},
                ],
            }
        ],
    }


def test_config_show_hides_env_values_and_passwords(tmp_path):
    config = write_config(tmp_path, shown_config())
    result = run_palhm("config", "show", config=config)
    assert result.returncode == 0, result.stderr
    for secret in SECRETS:
        assert secret not in result.stdout
    doc = json.loads(result.stdout)
    dump = doc["execs"][0]
    assert dump["env"] == {"DB_PASSWORD": HIDDEN, "PLAIN": HIDDEN}
    assert dump["argv"] == ["mysqldump", f"-p{HIDDEN}", "--all-databases"]
    steps = doc["tasks"][0]["routine"]
    assert steps[1]["argv"] == [
        "curl",
        "-H",
        f"Authorization: Bearer {HIDDEN}",
        f"https://backup:{HIDDEN}@dav.example.net/x",
    ]
    assert steps[2]["env"] == {"MORE": HIDDEN}

    shown = run_palhm("config", "show", "--show-secrets", config=config)
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout) == shown_config() | {}  # as written
    for secret in SECRETS:
        assert secret in shown.stdout


def test_config_show_hides_secret_keys_of_backends(tmp_path):
    task = backup_task(
        "b",
        backend="aws-s3",
        bucket="b",
        root="r",
        **{"endpoint-url": "https://key:hunter2@s3.example.net"},
    )
    config = write_config(tmp_path, {"tasks": [task]})
    result = run_palhm("config", "show", config=config)
    if result.returncode == 2 and "aws-s3" in result.stderr:
        pytest.skip("palhm-s3 is not installed")
    assert result.returncode == 0, result.stderr
    assert "hunter2" not in result.stdout
    assert "https://key:<hidden>@s3.example.net" in result.stdout


@pytest.mark.parametrize(
    "env",
    [{"DB_PASSWORD": 123456789}, {"DB_PASSWORD": ["123456789"]}, {"X": "123456789\u0000"}],
)
def test_config_errors_never_echo_an_env_value(tmp_path, env):
    config = write_config(
        tmp_path,
        {"tasks": [{"id": "r", "type": "routine", "routine": [inline("true", env=env)]}]},
    )
    result = run_palhm("config", "check", config=config)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "123456789" not in result.stderr
    line = result.stderr.strip()
    assert "env" in line and len(line.splitlines()) == 1, result.stderr


def test_config_errors_never_echo_a_secret_key_value():
    """A plugin's key named as a secret (``api-token``) is treated as ``env``."""
    from palhm_core.config.schema import validate

    schema = {
        "type": "object",
        "properties": {
            "api-token": {"type": "string", "minLength": 40},
            "auth": {"type": "object", "properties": {"password": {"enum": ["a", "b"]}}},
        },
    }
    doc = {"api-token": "123456789", "auth": {"password": "123456789"}}
    lines = validate(schema, doc, "f.json")
    assert len(lines) == 2 and all("123456789" not in line for line in lines), lines
    lines = validate(schema, {"api-token": 123456789}, "f.json")
    assert lines == ["f.json: api-token: expected string, got a number"]


def test_report_and_metrics_are_mode_0600(tmp_path):
    config = write_config(
        tmp_path, {"tasks": [{"id": "r", "type": "routine", "routine": [inline("true")]}]}
    )
    report, metrics = tmp_path / "report.json", tmp_path / "metrics"
    metrics.mkdir()

    def run():
        return run_palhm(
            "run",
            "--report",
            report,
            "--metrics-dir",
            metrics,
            "r",
            config=config,
            env={"PALHM_LOCK_DIR": str(tmp_path / "locks")},
        )

    old = os.umask(0o022)
    try:
        result = run()
    finally:
        os.umask(old)
    assert result.returncode == 0, result.stderr
    (prom,) = metrics.iterdir()
    assert stat.S_IMODE(report.stat().st_mode) == 0o600
    assert stat.S_IMODE(prom.stat().st_mode) == 0o600
    # An administrator's chmod for a node exporter of another user stays;
    # an old world-readable report does not.
    os.chmod(prom, 0o644)
    os.chmod(report, 0o644)
    again = run()
    assert again.returncode == 0, again.stderr
    assert stat.S_IMODE(prom.stat().st_mode) == 0o644
    assert stat.S_IMODE(report.stat().st_mode) == 0o600


def test_a_failing_commands_stderr_tail_is_redacted(tmp_path):
    noisy = (
        "echo 'curl -u admin:hunter2 https://x' >&2; "
        "echo 'Authorization: Bearer s3cr3tT0ken' >&2; "
        "echo 'mysql --password=Pa55word' >&2; exit 3"
    )
    config = write_config(
        tmp_path,
        {
            "tasks": [
                {
                    "id": "r",
                    "type": "routine",
                    "routine": [inline("sh", "-c", noisy, **{"vl-stderr": 9})],
                }
            ]
        },
    )
    report = tmp_path / "report.json"
    result = run_palhm(
        "run",
        "--report",
        report,
        "r",
        config=config,
        env={"PALHM_LOCK_DIR": str(tmp_path / "locks")},
    )
    assert result.returncode == 1
    assert "admin:<hidden>" in result.stderr  # the tail is there, redacted
    for text in (result.stderr, report.read_text()):
        for secret in SECRETS:
            assert secret not in text


@pytest.mark.parametrize(
    "text, expected",
    [
        ("curl -u admin:PW https://x", "curl -u admin:<hidden> https://x"),
        ("curl -uadmin:PW", "curl -uadmin:<hidden>"),
        ("curl --user admin:PW", "curl --user admin:<hidden>"),
        ("curl --user=admin:PW", "curl --user=admin:<hidden>"),
        ("curl --proxy-user 'p:PW'", "curl --proxy-user 'p:<hidden>'"),
        ("curl -H 'Authorization: Bearer PW' x", "curl -H 'Authorization: Bearer <hidden>' x"),
        ("Authorization: Basic UFc6UFc=", "Authorization: Basic <hidden>"),
        ("proxy-authorization: PW", "proxy-authorization: <hidden>"),
        ("x --password=PW --db-password PW", "x --password=<hidden> --db-password <hidden>"),
        ("mysqldump -pPW db", "mysqldump -p<hidden> db"),
        ("mariadb-dump -p'P W' db", "mariadb-dump -p<hidden> db"),
        ("sshpass -p PW ssh host", "sshpass -p <hidden> ssh host"),
        ("sshpass -pPW ssh host", "sshpass -p<hidden> ssh host"),
        # -p is a port, a flag or a path elsewhere: left alone.
        ("ssh -p 2222 host", "ssh -p 2222 host"),
        ("mkdir -p /var/x && tar -cpf - /etc", "mkdir -p /var/x && tar -cpf - /etc"),
        ("pg_dump -p5433 db", "pg_dump -p5433 db"),
        ("curl --user-agent=Mozilla:5", "curl --user-agent=Mozilla:5"),
        # every line on its own: a secret option ending one line does not
        # hide the first word of the next
        ("a --password=PW\nb https://u:PW@h/\nc --token\nd", None),
    ],
)
def test_redact_forms(text, expected):
    if expected is None:
        assert redact(text) == ("a --password=<hidden>\nb https://u:<hidden>@h/\nc --token\nd")
    else:
        assert redact(text) == expected


def test_redact_argv_forms():
    assert redact_argv(
        ["curl", "-u", "admin:PW", "--user=a:PW", "-uadm:PW", "-H", "Authorization: Bearer PW"]
    ) == [
        "curl",
        "-u",
        "admin:<hidden>",
        "--user=a:<hidden>",
        "-uadm:<hidden>",
        "-H",
        "Authorization: Bearer <hidden>",
    ]
    assert redact_argv(["sshpass", "-p", "PW", "ssh"]) == ["sshpass", "-p", HIDDEN, "ssh"]
    assert redact_argv(["mysqldump", "-pPW"]) == ["mysqldump", f"-p{HIDDEN}"]
    assert redact_argv(["ssh", "-p", "22", "-pX"]) == ["ssh", "-p", "22", "-pX"]
    assert redact_argv(["wget", "--password=PW", "--user", "bob"]) == [
        "wget",
        "--password=<hidden>",
        "--user",
        "bob",
    ]


def test_config_init_writes_files_only_root_can_read(tmp_path):
    old = os.umask(0o022)
    try:
        result = run_palhm("config", "init", tmp_path / "etc")
    finally:
        os.umask(old)
    assert result.returncode == 0, result.stderr
    for name in ("palhm.conf", "conf.d/core.json"):
        assert stat.S_IMODE((tmp_path / "etc" / name).stat().st_mode) == 0o600
