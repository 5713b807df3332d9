"""``palhm run --report FILE`` and ``--metrics-dir DIR``: one JSON document
per run, and a node-exporter textfile, both replaced in one step."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import time

from conftest import PALHM, backup_task, copies, inline, write_config
from timers_util import GUARD, palhm_env


def palhm(tmp_path, *args, config):
    return subprocess.run(
        [PALHM, "-q", "-f", str(config), *map(str, args)],
        capture_output=True,
        text=True,
        env=palhm_env(tmp_path),
        timeout=GUARD,
    )


def metrics(path) -> dict[str, float]:
    """``name`` -> value of every sample labelled task="b"."""
    samples = {}
    for line in path.read_text().splitlines():
        if line.startswith("#"):
            continue
        m = re.fullmatch(r'(\w+)\{task="b"\} (\S+)', line)
        assert m, f"unexpected line {line!r}"
        samples[m.group(1)] = float(m.group(2))
    return samples


def objects():
    return [
        {"path": "a.txt", "pipeline": [inline("printf", "hello\\n")]},
        {"path": "sub/b.bin", "pipeline": [inline("head", "-c", "100000", "/dev/zero")]},
        {"path": "c.gz", "pipeline": [inline("echo", "ok"), inline("gzip", "-n")]},
    ]


def test_backup_report_and_metrics(tmp_path):
    root = tmp_path / "root"
    prom_dir = tmp_path / "prom"
    prom_dir.mkdir()
    task = backup_task("b", objects=objects(), root=str(root), **{"nb-copy-limit": 1})
    config = write_config(tmp_path, {"tasks": [task]})
    report = tmp_path / "report.json"

    assert palhm(tmp_path, "run", "b", config=config).returncode == 0
    first = copies(root)
    before = time.time()
    result = palhm(
        tmp_path, "run", "--report", report, "--metrics-dir", prom_dir, "b", config=config
    )
    after = time.time()
    assert result.returncode == 0, result.stderr
    (prefix,) = copies(root)

    doc = json.loads(report.read_text())
    assert doc["task"] == "b" and doc["type"] == "backup"
    assert doc["success"] is True and doc["exit-status"] == 0
    assert doc["prefix"] == prefix
    assert doc["rotated"] == first
    assert [o["path"] for o in doc["objects"]] == ["a.txt", "sub/b.bin", "c.gz"]
    total = 0
    for obj in doc["objects"]:
        data = (root / prefix / obj["path"]).read_bytes()
        assert obj["bytes"] == len(data)
        assert obj["sha256"] == hashlib.sha256(data).hexdigest()
        assert obj["seconds"] >= 0
        total += len(data)
    assert doc["objects"][2]["exit-codes"] == [0, 0]
    assert doc["objects"][1]["bytes"] == 100000
    assert doc["total-bytes"] >= total  # the manifest and SHA256SUMS count too

    assert sorted(os.listdir(prom_dir)) == ["palhm_b.prom"]  # no temporary file left
    assert os.stat(prom_dir / "palhm_b.prom").st_mode & 0o777 == 0o600
    text = (prom_dir / "palhm_b.prom").read_text()
    assert "# TYPE palhm_last_success_timestamp_seconds gauge" in text
    m = metrics(prom_dir / "palhm_b.prom")
    assert m["palhm_last_run_success"] == 1
    assert before <= m["palhm_last_success_timestamp_seconds"] <= after
    assert m["palhm_last_run_timestamp_seconds"] == m["palhm_last_success_timestamp_seconds"]
    assert m["palhm_last_run_bytes"] == doc["total-bytes"]
    assert m["palhm_last_run_duration_seconds"] == doc["seconds"]
    assert m["palhm_last_run_exit_status"] == 0

    # A failed run: success 0, the last success kept, no copy lost.
    failing = backup_task(
        "b", objects=[{"path": "x", "pipeline": [inline("false")]}], root=str(root)
    )
    bad_config = write_config(tmp_path / "bad", {"tasks": [failing]})
    result = palhm(
        tmp_path, "run", "--report", report, "--metrics-dir", prom_dir, "b", config=bad_config
    )
    assert result.returncode == 1
    doc = json.loads(report.read_text())
    assert doc["success"] is False and doc["exit-status"] == 1
    assert "exited with status 1" in doc["error"]
    assert doc["runs"] == []
    m2 = metrics(prom_dir / "palhm_b.prom")
    assert m2["palhm_last_run_success"] == 0
    assert m2["palhm_last_run_exit_status"] == 1
    assert m2["palhm_last_run_bytes"] == 0
    assert m2["palhm_last_success_timestamp_seconds"] == m["palhm_last_success_timestamp_seconds"]
    assert m2["palhm_last_run_timestamp_seconds"] > m["palhm_last_run_timestamp_seconds"]
    assert copies(root) == [prefix]


def test_failure_without_an_earlier_success_has_no_success_timestamp(tmp_path):
    failing = backup_task(
        "b", objects=[{"path": "x", "pipeline": [inline("false")]}], root=str(tmp_path / "root")
    )
    config = write_config(tmp_path, {"tasks": [failing]})
    assert palhm(tmp_path, "run", "--metrics-dir", tmp_path, "b", config=config).returncode == 1
    m = metrics(tmp_path / "palhm_b.prom")
    assert m["palhm_last_run_success"] == 0
    assert "palhm_last_success_timestamp_seconds" not in m


def test_routine_report_has_one_entry_per_backup(tmp_path):
    one = backup_task("one", objects=objects()[:1], root=str(tmp_path / "one"))
    two = backup_task("two", objects=objects()[1:], root=str(tmp_path / "two"))
    routine = {
        "id": "all",
        "type": "routine",
        "routine": [
            {"type": "task", "task-id": "one"},
            inline("true"),
            {"type": "task", "task-id": "two"},
        ],
    }
    config = write_config(tmp_path, {"tasks": [one, two, routine]})
    report = tmp_path / "report.json"
    result = palhm(
        tmp_path, "run", "--report", report, "--metrics-dir", tmp_path, "all", config=config
    )
    assert result.returncode == 0, result.stderr
    doc = json.loads(report.read_text())
    assert doc["task"] == "all" and doc["type"] == "routine" and doc["success"] is True
    assert [r["task"] for r in doc["runs"]] == ["one", "two"]
    assert [o["path"] for o in doc["runs"][1]["objects"]] == ["sub/b.bin", "c.gz"]
    prom = (tmp_path / "palhm_all.prom").read_text()
    total = sum(r["total-bytes"] for r in doc["runs"])
    assert f'palhm_last_run_bytes{{task="all"}} {total}' in prom


def test_no_report_from_a_run_that_found_the_lock_taken(tmp_path):
    from palhm_core.lock import RunLocks

    task = backup_task("b", objects=objects()[:1], root=str(tmp_path / "root"))
    config = write_config(tmp_path, {"tasks": [task]})
    held = RunLocks(str(config), ["b"], str(tmp_path / "locks"))
    held.acquire()
    try:
        report = tmp_path / "report.json"
        result = palhm(
            tmp_path, "run", "--report", report, "--metrics-dir", tmp_path, "b", config=config
        )
        assert result.returncode == 75
        assert not report.exists() and not (tmp_path / "palhm_b.prom").exists()
    finally:
        held.release()


def test_report_on_a_config_error(tmp_path):
    config = write_config(tmp_path, {"tasks": [{"id": "b", "type": "backup"}]})
    report = tmp_path / "report.json"
    result = palhm(tmp_path, "run", "--report", report, "b", config=config)
    assert result.returncode == 2
    doc = json.loads(report.read_text())
    assert doc["success"] is False and doc["exit-status"] == 2 and doc["type"] is None
