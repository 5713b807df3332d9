"""``palhm backups list | verify | cat`` on localfs."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys

import pytest
from conftest import PALHM, backup_task, copies, inline, run_palhm, write_config


def _make(tmp_path, root, objects, runs=1, **params):
    conf = write_config(
        tmp_path, {"tasks": [backup_task(objects=objects, root=str(root), **params)]}
    )
    for _ in range(runs):
        result = run_palhm("run", "backup", config=conf)
        assert result.returncode == 0, result.stderr
    return conf


OBJECTS = [
    {"path": "a", "pipeline": [inline("seq", "1", "50000")]},
    {"path": "dir/b", "pipeline": [inline("head", "-c", "300000", "/dev/urandom")]},
]


def test_list_shows_complete_and_incomplete_copies_oldest_first(tmp_path):
    root = tmp_path / "root"
    conf = _make(tmp_path, root, OBJECTS, runs=2)
    (root / "0000-incomplete").mkdir()
    result = run_palhm("backups", "list", "backup", "--json", config=conf)
    assert result.returncode == 0, result.stderr
    listed = json.loads(result.stdout)["copies"]
    assert [c["prefix"] for c in listed] == ["0000-incomplete", *copies(root)]
    assert [c["complete"] for c in listed] == [False, True, True]
    assert listed[1]["objects"] == 2
    assert listed[1]["size"] == len(subprocess.check_output(["seq", "1", "50000"])) + 300000
    assert listed[1]["age-seconds"] is not None and listed[1]["age-seconds"] < 600
    text = run_palhm("backups", "list", "backup", config=conf).stdout.splitlines()
    assert text[0].split() == ["PREFIX", "STATE", "OBJECTS", "SIZE", "AGE", "NOTE"]
    assert text[1].split()[:2] == ["0000-incomplete", "incomplete"]
    assert text[2].split()[1:3] == ["complete", "2"]


def test_verify_passes_then_names_exactly_the_flipped_object(tmp_path):
    root = tmp_path / "root"
    conf = _make(tmp_path, root, OBJECTS, runs=2)
    ok = run_palhm("backups", "verify", "backup", "--all", config=conf)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.count("2 objects, OK") == 2
    first, latest = copies(root)
    target = root / latest / "dir" / "b"
    data = bytearray(target.read_bytes())
    data[12345] ^= 0x01
    target.write_bytes(bytes(data))
    bad = run_palhm("backups", "verify", "backup", config=conf)  # --latest by default
    assert bad.returncode == 1
    lines = [line for line in bad.stderr.splitlines() if "mismatch" in line or "missing" in line]
    assert lines == [
        f"palhm: {latest}/dir/b: SHA-256 mismatch: {hashlib.sha256(data).hexdigest()}, "
        f"manifest says {_manifest_sha(root, latest, 'dir/b')}"
    ]
    assert run_palhm("backups", "verify", "backup", first, config=conf).returncode == 0
    cat = run_palhm("backups", "cat", "backup", "latest", "dir/b", config=conf, text=False)
    assert cat.returncode == 1
    assert cat.stdout == bytes(data)  # streamed, then refused
    assert b"does not match the manifest" in cat.stderr
    (root / latest / "a").unlink()
    gone = run_palhm("backups", "verify", "backup", latest, config=conf)
    assert gone.returncode == 1 and f"{latest}/a: missing" in gone.stderr


def _manifest_sha(root, prefix, path):
    manifest = json.loads((root / prefix / "palhm-manifest.json").read_text())
    return next(o["sha256"] for o in manifest["objects"] if o["path"] == path)


def test_cat_refuses_unknown_copies_and_objects(tmp_path):
    root = tmp_path / "root"
    conf = _make(tmp_path, root, OBJECTS)
    (prefix,) = copies(root)
    for args, problem in [
        (("nope", "a"), "no copy 'nope'"),
        ((prefix, "zzz"), f"copy '{prefix}' has no object 'zzz'"),
        ((prefix, "../../etc/passwd"), "has no object"),
    ]:
        result = run_palhm("backups", "cat", "backup", *args, config=conf)
        assert result.returncode == 1 and problem in result.stderr, result.stderr
        assert result.stdout == ""


def test_null_backend_has_nothing_to_verify(tmp_path):
    task = backup_task(backend="null", objects=OBJECTS)
    conf = write_config(tmp_path, {"tasks": [task]})
    result = run_palhm("backups", "verify", "backup", config=conf)
    assert result.returncode == 0 and "nothing to check" in result.stderr


CAT_RSS = """
import resource, subprocess, sys, hashlib
h = hashlib.sha256()
n = 0
with subprocess.Popen(sys.argv[1:], stdout=subprocess.PIPE) as p:
    while chunk := p.stdout.read(1 << 20):
        h.update(chunk)
        n += len(chunk)
print(p.returncode, n, h.hexdigest(), resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""


def test_cat_round_trips_128_mib_with_bounded_memory(tmp_path):
    root = tmp_path / "root"
    size = 128 << 20  # more than the bound: a cat that held the object would fail
    objects = [{"path": "big", "pipeline": [inline("head", "-c", str(size), "/dev/urandom")]}]
    conf = _make(tmp_path, root, objects)
    (prefix,) = copies(root)
    expected = _manifest_sha(root, prefix, "big")
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            CAT_RSS,
            PALHM,
            "-f",
            str(conf),
            "backups",
            "cat",
            "backup",
            "latest",
            "big",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    rc, n, digest, rss_kib = out.stdout.split()
    assert (int(rc), int(n), digest) == (0, size, expected)
    print(f"palhm backups cat, 128 MiB object: peak RSS {int(rss_kib) / 1024:.1f} MiB")
    assert int(rss_kib) < 100 * 1024


@pytest.mark.parametrize("cmd", [["list"], ["verify"], ["cat", "latest", "x"]])
def test_routine_tasks_have_no_copies(tmp_path, cmd):
    doc = {"tasks": [{"id": "r", "type": "routine", "routine": [inline("true")]}]}
    result = run_palhm("backups", cmd[0], "r", *cmd[1:], config=write_config(tmp_path, doc))
    assert result.returncode == 2 and "makes no copies" in result.stderr
