"""A rotation that fails after the copy was made: the copy is kept and
reported, the failure is its own line and report field, and the run still
exits non-zero so that cron mails it."""

from __future__ import annotations

import json

from conftest import backup_task, copies, inline, run_palhm, write_config
from palhm_localfs.backend import LocalFsBackend

from palhm_core.testing import TASK, Storage, write_manifest, write_object

#: A PREFIX that sorts before every copy a run makes, and too long to be
#: renamed to localfs's staging name (NAME_MAX is 255): deleting it fails.
UNDELETABLE = "0" * 240


def test_a_failed_rotation_keeps_the_new_copy_and_fails_the_run(tmp_path):
    root = tmp_path / "root"
    backend = LocalFsBackend({"root": str(root)}, Storage.place())
    backend.open()
    try:  # made under a short name: localfs's staging name would be too long too
        with backend.begin("short") as copy:
            write_object(copy, "old", b"old\n")
            write_manifest(copy, UNDELETABLE, {"old": b"old\n"})
            copy.commit()
    finally:
        backend.close()
    (root / "short").rename(root / UNDELETABLE)
    task = backup_task(TASK, objects=[{"path": "new", "pipeline": [inline("echo", "new")]}])
    task["backend-param"].update({"root": str(root), "nb-copy-limit": 1})
    conf = write_config(tmp_path, {"tasks": [task]})
    report = tmp_path / "report.json"
    result = run_palhm("run", TASK, "--report", report, config=conf)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    (new,) = [c for c in copies(root) if c != UNDELETABLE]
    assert copies(root) == [UNDELETABLE, new]
    assert (root / new / "new").read_text() == "new\n"
    (line,) = [ln for ln in result.stderr.splitlines() if "rotation failed" in ln]
    assert f"copy {new} is kept" in line and "File name too long" in line
    assert "rolling back" not in result.stderr
    doc = json.loads(report.read_text())
    text = json.dumps(doc)
    assert new in text and "rotation-error" in text
