"""What a run killed by SIGKILL leaves in a localfs root is listed by
``palhm backups list`` as an incomplete copy (never complete, never
counted), and the next run removes it."""

from __future__ import annotations

import json
import os
import signal
import subprocess

from conftest import PALHM, backup_task, copies, inline, run_palhm, write_config
from notify_servers import wait_for


def test_the_leftover_of_a_killed_run_is_listed_as_incomplete(tmp_path):
    root = tmp_path / "root"
    pidfile = tmp_path / "stage.pid"
    slow = inline("sh", "-c", f"echo $$ > {pidfile}; echo part; exec sleep 60")
    config = write_config(
        tmp_path,
        {"tasks": [backup_task(root=str(root), objects=[{"path": "p", "pipeline": [slow]}])]},
    )
    proc = subprocess.Popen(
        [PALHM, "-f", str(config), "run", "backup"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        staging = wait_for(
            lambda: (
                [p for p in root.iterdir() if p.name.startswith(".palhm-partial.")]
                if root.exists() and pidfile.exists()
                else None
            ),
            "the copy's staging directory",
        )
        proc.kill()
        proc.wait(timeout=30)
    finally:
        if pidfile.exists():
            os.kill(int(pidfile.read_text()), signal.SIGKILL)
    listed = run_palhm("backups", "list", "backup", "--json", config=config)
    assert listed.returncode == 0, listed.stderr
    (row,) = json.loads(listed.stdout)["copies"]
    assert row["state"] == "incomplete" and not row["complete"]
    assert staging[0].name.startswith(f".palhm-partial.{row['prefix']}.")
    table = run_palhm("backups", "list", "backup", config=config).stdout.splitlines()
    assert table[1].split()[:2] == [row["prefix"], "incomplete"]
    # The next run removes it and makes a complete copy.
    (config.parent / "fast.jsonc").write_text(
        config.read_text().replace(f"echo $$ > {pidfile}; echo part; exec sleep 60", "echo ok")
    )
    again = run_palhm("run", "backup", config=config.parent / "fast.jsonc")
    assert again.returncode == 0, again.stderr
    assert not [p for p in root.iterdir() if p.name.startswith(".")]
    assert len(copies(root)) == 1
