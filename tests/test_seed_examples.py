"""The original PALHM README's examples load and run, with only the
executable paths changed to what this machine has."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import copies, run_palhm, write_config

TOOLS = Path(__file__).parent / "tools"
ZSTD = shutil.which("zstd")

# The README's backup object, verbatim but for the executable paths.
SEED_OBJECT = """
{
"path": "all-db.sql.zstd.pgp",
"pipeline": [
{ "type": "exec-inline", "argv": [ "MYSQLDUMP", "-uroot", "--all-databases" ] },
{ "type": "exec-inline", "argv": [ "ZSTD" ] },
{ "type": "exec-inline", "argv": [ "GPG", "-e", "-r", "backup-pub-key", "--compress-algo",
"none" ] }
]
}
"""

# The README's object groups, trailing comma included.
SEED_GROUPS = """
{
"object-groups": [
{ "id": "root" },
{ "id": "http" },
{ "id": "sql", "depends": [ "http" ] },
{ "id": "ldap", "depends": [ "sql" ] },
]
}
"""


def _adapt(text: str) -> str:
    return (
        text.replace("MYSQLDUMP", str(TOOLS / "fake-mysqldump"))
        .replace("ZSTD", ZSTD)
        .replace("GPG", str(TOOLS / "passthrough"))
    )


def _config(backend: str, params: str) -> str:
    groups = SEED_GROUPS.strip()[1:-1].strip()  # the "object-groups" member
    obj = _adapt(SEED_OBJECT).strip()
    obj = obj[:-1].rstrip() + ',\n"group": "sql"\n}'
    return f"""
// The seed README's examples, in one task
{{
  "tasks": [
    {{
      "id": "backup",
      "type": "backup",
      "backend": "{backend}",
      "backend-param": {params},
      {groups},
      "objects": [ {obj} ]
    }}
  ]
}}
"""


@pytest.mark.skipif(ZSTD is None, reason="zstd is not installed")
def test_seed_examples_on_localfs(tmp_path):
    root = tmp_path / "root"
    params = (
        f'{{ "root": "{root}", "dmode": "755", "fmode": "644", '
        '"nb-copy-limit": "Infinity", "root-size-limit": "Infinity" }'
    )
    conf = write_config(tmp_path, _config("localfs", params), "palhm.jsonc")
    result = run_palhm("run", "backup", config=conf)
    assert result.returncode == 0, result.stderr
    (copy,) = copies(root)
    stored = (root / copy / "all-db.sql.zstd.pgp").read_bytes()
    dump = subprocess.run([TOOLS / "fake-mysqldump"], capture_output=True, check=True).stdout
    assert subprocess.run([ZSTD, "-d", "-c"], input=stored, capture_output=True).stdout == dump
    assert (root / copy / "all-db.sql.zstd.pgp").stat().st_mode & 0o777 == 0o644


@pytest.mark.skipif(ZSTD is None, reason="zstd is not installed")
def test_seed_examples_on_null(tmp_path):
    conf = write_config(tmp_path, _config("null", "{}"), "palhm.jsonc")
    result = run_palhm("run", "backup", config=conf)
    assert result.returncode == 0, result.stderr
    assert list(tmp_path.iterdir()) == [conf]


def _dnssec_check(tmp_path, answer: str):
    """The seed's DNSSEC check on null: dig's output piped into grep-any."""
    fake_dig = tmp_path / "dig"
    fake_dig.write_text(f"#!/bin/sh\nprintf '{answer}'\n")
    fake_dig.chmod(0o755)
    doc = {
        "execs": [
            {"id": "dig-dnssec", "argv": [str(fake_dig), "+short", "+dnssec"]},
            {"id": "grep-any", "argv": ["grep", "."]},
        ],
        "tasks": [
            {
                "id": "check-dnssec",
                "type": "backup",
                "backend": "null",
                "objects": [
                    {
                        "path": "example.com",
                        "pipeline": [
                            {
                                "type": "exec-append",
                                "exec-id": "dig-dnssec",
                                "argv": ["ANY", "example.com"],
                            },
                            {"type": "exec", "exec-id": "grep-any"},
                        ],
                    }
                ],
            }
        ],
    }
    return run_palhm("run", "check-dnssec", config=write_config(tmp_path, doc))


def test_null_backend_checks_exit_codes_dnssec_ok(tmp_path):
    result = _dnssec_check(tmp_path, "93.184.216.34\\nA 13 2 86400 ...\\n")
    assert result.returncode == 0, result.stderr


def test_null_backend_checks_exit_codes_dnssec_servfail(tmp_path):
    result = _dnssec_check(tmp_path, "")
    assert result.returncode == 1
    assert "stage 2/2 'grep' exited with status 1" in result.stderr
