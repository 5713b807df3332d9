"""The shipped quick-start config makes a real, checkable copy."""

import shutil
import subprocess
from pathlib import Path

from conftest import copies, run_palhm

REPO = Path(__file__).resolve().parent.parent


def test_quickstart_makes_a_copy_sha256sum_accepts(tmp_path):
    shutil.copytree(REPO / "conf", tmp_path / "conf", symlinks=False)
    result = run_palhm("run", config="conf/quickstart.jsonc", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    made = copies(tmp_path / "palhm-backups")
    assert len(made) == 1
    copy = tmp_path / "palhm-backups" / made[0]
    check = subprocess.run(["sha256sum", "-c", "SHA256SUMS"], cwd=copy, capture_output=True)
    assert check.returncode == 0, check.stdout
    listed = subprocess.run(
        ["tar", "-tzf", str(copy / "conf.tar.gz")], capture_output=True, text=True
    )
    assert "./quickstart.jsonc" in listed.stdout.splitlines()
