"""Configs written as for the original PALHM (tests/configs/original: the
layout and keys of its sample configs) load unchanged, and the localfs and
null ones run with only paths and programs this host lacks changed."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest
from conftest import run_palhm

ORIGINAL = Path(__file__).resolve().parent / "configs" / "original"
DEBUG = ORIGINAL / "py-debug"
SAMPLE = ORIGINAL / "py-sample"
#: The name the original gave every copy: ``date --utc --iso-8601=seconds``.
ORIGINAL_PREFIX = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00$")
#: An absolute program in an argv list of a config file.
PROGRAM = re.compile(r'"argv": \[ "(/[^"]+)"')


def installed(dist: str) -> bool:
    from importlib import metadata

    try:
        metadata.distribution(dist)
    except metadata.PackageNotFoundError:
        return False
    return True


def copy_tree(tmp_path: Path, replace: dict[str, str]) -> Path:
    """The original configs copied into ``tmp_path`` with ``replace``
    applied to their text: paths, and nothing else."""
    target = tmp_path / "original"
    shutil.copytree(ORIGINAL, target)
    for path in target.rglob("*.json*"):
        text = path.read_text()
        for old, new in replace.items():
            text = text.replace(old, new)
        path.write_text(text)
    return target


def stubs_for_missing_programs(tmp_path: Path) -> dict[str, str]:
    """For each program the configs name that this host lacks, a stand-in
    (it prints a line, then copies stdin to stdout, so it works as a command
    and as a filter)."""
    bindir = tmp_path / "stubs"
    bindir.mkdir()
    replace = {}
    for path in ORIGINAL.rglob("*.json*"):
        for program in PROGRAM.findall(path.read_text()):
            if os.access(program, os.X_OK) or program in replace:
                continue
            stub = bindir / Path(program).name
            stub.write_text(f'#!{shutil.which("sh")}\necho "stand-in for $0 $*"\nexec cat\n')
            stub.chmod(0o755)
            replace[f'"{program}"'] = json.dumps(str(stub))
    return replace


@pytest.mark.parametrize("name", ["localfs", "null", "aws"])
def test_the_debug_configs_pass_config_check_as_they_are(name):
    if name == "aws" and not installed("palhm-s3"):
        pytest.skip("palhm-s3 is not installed: the aws config needs the aws-s3 backend")
    config = DEBUG / f"{name}.jsonc"
    result = run_palhm("config", "check", config=config)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{config}: ok (2 files, 11 execs, 3 tasks)\n"


def test_the_sample_passes_config_check_with_its_include_where_it_is(tmp_path):
    tree = copy_tree(tmp_path, {"/etc/palhm/conf.d/core.json": str(SAMPLE / "conf.d/core.json")})
    config = tree / "py-sample" / "sample.jsonc"
    result = run_palhm("config", "check", config=config)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{config}: ok (2 files, 13 execs, 5 tasks)\n"
    plan = run_palhm("plan", "check-dnssec", config=config)
    assert "dig +dnssec +noall +answer ANY example.com | /bin/grep -q ." in plan.stdout


def test_the_localfs_config_runs_its_default_routine(tmp_path):
    root = tmp_path / "backup-root"
    replace = {"/var/tmp/palhm-backup-root": str(root), **stubs_for_missing_programs(tmp_path)}
    tree = copy_tree(tmp_path, replace)
    config = tree / "py-debug" / "localfs.jsonc"
    result = run_palhm("run", config=config, timeout=300)
    assert result.returncode == 0, result.stderr
    (copy,) = [p for p in root.iterdir()]
    assert ORIGINAL_PREFIX.match(copy.name), copy.name
    objects = {p.name for p in copy.iterdir()}
    assert objects >= {
        "pm-list.gz",
        "lsblk.json.gz",
        "random-dump.sql.xz",
        "random-dump.0.xz",
        "random-dump.1.xz",
    }
    listed = run_palhm("backups", "list", "backup", "--json", config=config)
    (entry,) = json.loads(listed.stdout)["copies"]
    assert entry["prefix"] == copy.name and entry["state"] == "complete"


def test_the_null_config_runs_its_default_routine(tmp_path):
    tree = copy_tree(tmp_path, stubs_for_missing_programs(tmp_path))
    config = tree / "py-debug" / "null.jsonc"
    result = run_palhm("run", config=config, timeout=300)
    assert result.returncode == 0, result.stderr
    # vl 3: the update routine's commands print on PALHM's stdout
    assert result.stdout.split() == ["0", "1"]
