"""``palhm run --dry-run`` runs every pipeline into the null backend and
leaves every backend untouched; ``palhm plan`` shows what would run, in build
order, and runs nothing."""

from __future__ import annotations

import json
import subprocess

from conftest import PALHM, backup_task, copies, inline, write_config
from timers_util import GUARD, palhm_env, snapshot


def palhm(tmp_path, *args, config):
    return subprocess.run(
        [PALHM, "-f", str(config), *map(str, args)],
        capture_output=True,
        text=True,
        env=palhm_env(tmp_path),
        timeout=GUARD,
    )


def test_dry_run_leaves_the_backend_untouched(tmp_path):
    root = tmp_path / "root"
    ran = tmp_path / "RAN"
    objects = [
        {"path": "etc/hostname", "pipeline": [inline("echo", "host")]},
        {"path": "ran", "pipeline": [inline("sh", "-c", f'echo yes | tee -a "{ran}"')]},
    ]
    backup = backup_task("b", objects=objects, root=str(root), **{"nb-copy-limit": 1})
    routine = {"id": "r", "type": "routine", "routine": [{"type": "task", "task-id": "b"}]}
    config = write_config(tmp_path, {"tasks": [backup, routine]})
    assert palhm(tmp_path, "-q", "run", "b", config=config).returncode == 0
    # What a crashed run left: a real run would remove it, a dry run must not.
    leftover = root / ".palhm-partial.crashed"
    leftover.mkdir()
    (leftover / "half").write_bytes(b"half an object")
    before = snapshot(root)
    assert len(copies(root)) == 1

    for task in ("b", "r"):
        result = palhm(tmp_path, "run", "--dry-run", task, config=config)
        assert result.returncode == 0, result.stderr
        assert "on null" in result.stderr
        assert snapshot(root) == before
    # The pipelines did run.
    assert ran.read_text().split() == ["yes", "yes", "yes"]


def test_dry_run_still_fails_on_a_failing_pipeline(tmp_path):
    root = tmp_path / "root"
    objects = [{"path": "x", "pipeline": [inline("sh", "-c", "exit 4")]}]
    config = write_config(tmp_path, {"tasks": [backup_task("b", objects=objects, root=str(root))]})
    result = palhm(tmp_path, "-q", "run", "--dry-run", "b", config=config)
    assert result.returncode == 1
    assert "exited with status 4" in result.stderr
    assert not root.exists()


def test_plan_shows_build_order_and_runs_nothing(tmp_path):
    marker = tmp_path / "MARKER"
    root = tmp_path / "root"
    groups = [
        {"id": "sql", "depends": ["http"]},
        {"id": "ldap", "depends": ["sql"]},
        {"id": "http"},
    ]
    objects = [
        {"path": "ldap.ldif", "group": "ldap", "pipeline": [inline("slapcat")]},
        {
            "path": "db.sql.zst",
            "group": "sql",
            "pipeline": [inline("mysqldump", "--all-databases"), inline("zstd")],
        },
        {"path": "touched", "group": "http", "pipeline": [inline("touch", str(marker))]},
        {
            "path": "www.tar",
            "group": "http",
            "pipeline": [inline("tar", "-cf", "-", "/var/www/my site")],
        },
    ]
    backup = backup_task("b", objects=objects, groups=groups, root=str(root))
    routine = {
        "id": "r",
        "type": "routine",
        "routine": [inline("touch", str(marker)), {"type": "task", "task-id": "b"}],
    }
    config = write_config(tmp_path, {"tasks": [backup, routine]})

    result = palhm(tmp_path, "plan", "b", config=config)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "b (backup)",
        "  group http",
        f"    touched: touch {marker}",
        "    www.tar: tar -cf - '/var/www/my site'",
        "  group sql (after http)",
        "    db.sql.zst: mysqldump --all-databases | zstd",
        "  group ldap (after sql)",
        "    ldap.ldif: slapcat",
    ]
    nested = palhm(tmp_path, "plan", "r", config=config)
    assert nested.returncode == 0, nested.stderr
    lines = nested.stdout.splitlines()
    assert lines[:4] == ["r (routine)", f"  touch {marker}", "  task b", "    b (backup)"]
    assert "        db.sql.zst: mysqldump --all-databases | zstd" in lines
    doc = json.loads(palhm(tmp_path, "plan", "--json", "r", config=config).stdout)
    assert doc["steps"] == [f"touch {marker}", "task b"]
    assert doc["tasks"]["b"]["steps"][0] == "group http"

    assert not marker.exists()
    assert not root.exists()
