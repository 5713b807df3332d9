"""-f/-c, -q and -v are accepted after the command too, as administrators
type them (``palhm run -q backup``), and mean the same there."""

from __future__ import annotations

import subprocess

from conftest import PALHM, backup_task, inline, run_palhm, write_config


def config_with_a_chatty_backup(tmp_path):
    return write_config(
        tmp_path,
        {
            "tasks": [
                backup_task(
                    "backup",
                    root=str(tmp_path / "root"),
                    objects=[{"path": "x", "pipeline": [inline("echo", "data")]}],
                )
            ]
        },
    )


def test_quiet_after_the_command(tmp_path):
    config = config_with_a_chatty_backup(tmp_path)
    loud = run_palhm("run", "backup", config=config)
    assert loud.returncode == 0 and "making copy" in loud.stderr
    quiet = subprocess.run(
        [PALHM, "run", "-q", "backup", "-f", str(config)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stdout == quiet.stderr == ""


def test_config_file_after_the_command_with_f_or_c(tmp_path):
    config = config_with_a_chatty_backup(tmp_path)
    for option in ("-f", "-c", "--config"):
        result = subprocess.run(
            [PALHM, "config", "check", option, str(config)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, (option, result.stderr)
        assert result.stdout == f"{config}: ok (1 file, 0 execs, 1 task)\n"


def test_options_before_the_command_still_count_and_after_it_add(tmp_path):
    config = config_with_a_chatty_backup(tmp_path)
    # -f before, -q after: both apply
    result = subprocess.run(
        [PALHM, "-f", str(config), "run", "backup", "-q"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0 and result.stderr == ""
    # -v after a subcommand's subcommand: debug lines
    listed = subprocess.run(
        [PALHM, "backups", "list", "backup", "-v", "-v", "-f", str(config)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert listed.returncode == 0, listed.stderr
    assert len(listed.stdout.splitlines()) == 2  # the header and the copy


def test_a_missing_file_after_the_command_is_one_line(tmp_path):
    result = subprocess.run(
        [PALHM, "plan", "backup", "-c", str(tmp_path / "none.conf")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert (
        result.stderr
        == f"palhm: {tmp_path / 'none.conf'}: cannot read config file: No such file or directory\n"
    )


def test_run_help_says_what_a_dry_run_of_a_routine_does(tmp_path):
    help_text = " ".join(run_palhm("run", "--help").stdout.split())
    assert "routine tasks run no command and call no builtin" in help_text
    assert "still run" not in help_text
    marker = tmp_path / "ran"
    config = write_config(
        tmp_path,
        {"tasks": [{"id": "r", "type": "routine", "routine": [inline("touch", str(marker))]}]},
    )
    result = run_palhm("run", "--dry-run", "r", config=config)
    assert result.returncode == 0, result.stderr
    assert "dry run, not running: touch" in result.stderr
    assert not marker.exists()
