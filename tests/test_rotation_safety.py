"""Rotation deletes only what it can prove is the task's: copies of another
task (or host) are ``foreign``, copies whose manifest is malformed or
disagrees with what the storage holds are ``damaged``; neither is counted,
listed as latest or deleted, and none of it ends in a traceback."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest
from conftest import backup_task, copies, inline, run_palhm, write_config

DATA = [{"path": "data", "pipeline": [inline("head", "-c", "1000", "/dev/zero")]}]


def _config(tmp_path: Path, root: Path, *tasks, name="palhm.jsonc") -> Path:
    return write_config(tmp_path, {"tasks": list(tasks)}, name)


def _task(task_id: str, root: Path, **params) -> dict:
    return backup_task(task_id, objects=DATA, root=str(root), **params)


def _run(conf: Path, task: str) -> str:
    result = run_palhm("run", task, config=conf)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    return result.stderr


def _listed(conf: Path, task: str) -> dict[str, dict]:
    result = run_palhm("backups", "list", task, "--json", config=conf)
    assert result.returncode == 0, result.stderr
    return {c["prefix"]: c for c in json.loads(result.stdout)["copies"]}


def _edit_manifest(copy: Path, edit) -> None:
    path = copy / "palhm-manifest.json"
    doc = json.loads(path.read_text())
    edit(doc)
    path.write_text(json.dumps(doc))


def test_config_check_refuses_two_tasks_on_one_root(tmp_path):
    root = tmp_path / "root"
    conf = _config(tmp_path, root, _task("db", root), _task("etc", root))
    result = run_palhm("config", "check", config=conf)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"palhm: {conf}: tasks[1].backend-param: keeps copies where task 'db' does "
        f"({root} and {root} overlap): give each task a root of its own"
    )


@pytest.mark.parametrize(
    "first, second, refused",
    [
        ({"root": "/srv/b"}, {"root": "/srv/b/db"}, True),
        ({"root": "/srv/b/db"}, {"root": "/srv/b/"}, True),
        ({"root": "/srv/b"}, {"root": "/srv/bb"}, False),
        ({"root": "/srv/b"}, {"root": "/srv/c"}, False),
    ],
)
def test_config_check_refuses_nested_localfs_roots(tmp_path, first, second, refused):
    conf = write_config(
        tmp_path,
        {
            "tasks": [
                backup_task("one", objects=DATA, **first),
                backup_task("two", objects=DATA, **second),
            ]
        },
    )
    result = run_palhm("config", "check", config=conf)
    assert result.returncode == (2 if refused else 0), result.stderr
    if refused:
        assert "tasks[1].backend-param: keeps copies where task 'one' does" in result.stderr


@pytest.mark.parametrize(
    "second, refused",
    [
        ({"bucket": "b", "root": "/palhm/"}, True),
        ({"bucket": "b", "root": "palhm/web1"}, True),
        ({"bucket": "b", "root": "palhm2"}, False),
        ({"bucket": "other", "root": "palhm"}, False),
        ({"bucket": "b", "root": "palhm", "endpoint-url": "http://127.0.0.1:9"}, False),
    ],
)
def test_config_check_refuses_overlapping_s3_roots(tmp_path, second, refused):
    conf = write_config(
        tmp_path,
        {
            "tasks": [
                backup_task("one", "aws-s3", objects=DATA, bucket="b", root="palhm"),
                backup_task("two", "aws-s3", objects=DATA, **second),
            ]
        },
    )
    result = run_palhm("config", "check", config=conf)
    assert result.returncode == (2 if refused else 0), result.stderr


def test_two_configs_on_one_root_never_rotate_each_others_copies(tmp_path):
    root = tmp_path / "root"
    db = _config(tmp_path, root, _task("db", root, **{"nb-copy-limit": 7}), name="db.jsonc")
    etc = _config(tmp_path, root, _task("etc", root, **{"nb-copy-limit": 1}), name="etc.jsonc")
    for _ in range(3):
        _run(db, "db")
    db_copies = copies(root)
    for _ in range(2):
        _run(etc, "etc")
    assert set(db_copies) <= set(copies(root)), "etc's rotation deleted db's copies"
    etc_copies = sorted(set(copies(root)) - set(db_copies))
    assert len(etc_copies) == 1  # etc's own limit still applies to etc's own copies
    listed = _listed(etc, "etc")
    for prefix in db_copies:
        assert listed[prefix]["state"] == "foreign"
        assert listed[prefix]["why"] == "made by task 'db'"
    assert listed[etc_copies[0]]["state"] == "complete"
    # latest is the task's own newest copy, though db's sort after it
    _run(db, "db")
    cat = run_palhm("backups", "cat", "etc", "latest", "data", config=etc, text=False)
    assert cat.returncode == 0, cat.stderr
    verify = run_palhm("backups", "verify", "etc", config=etc)
    assert verify.stdout.split(": ")[0] == etc_copies[0]
    # naming a foreign copy is refused, with whose it is
    foreign = run_palhm("backups", "verify", "etc", db_copies[0], config=etc)
    assert foreign.returncode == 1
    assert "is not this task's: made by task 'db'" in foreign.stderr


def test_a_copy_made_on_another_host_is_foreign(tmp_path):
    root = tmp_path / "root"
    conf = _config(tmp_path, root, _task("db", root, **{"nb-copy-limit": 1}))
    _run(conf, "db")
    (theirs,) = copies(root)
    assert json.loads((root / theirs / "palhm-manifest.json").read_text())["host"] == (
        os.uname().nodename
    )
    _edit_manifest(root / theirs, lambda m: m.update(host=f"not-{socket.gethostname()}"))
    _run(conf, "db")
    _run(conf, "db")
    assert theirs in copies(root)
    listed = _listed(conf, "db")
    assert listed[theirs]["state"] == "foreign"
    assert "on host 'not-" in listed[theirs]["why"]
    assert [p for p, c in listed.items() if c["state"] == "complete"] == copies(root)[-1:]


@pytest.mark.parametrize(
    "size",
    [1e12, 1000000000000, None, "abc", "1e400", float("inf"), -5, True, [1], {"a": 1}],
    ids=lambda s: repr(s),
)
def test_a_manifest_size_claim_never_drives_rotation(tmp_path, size):
    root = tmp_path / "root"
    conf = _config(tmp_path, root, _task("db", root, **{"root-size-limit": "10000"}))
    for _ in range(3):
        _run(conf, "db")
    older = copies(root)[:-1]
    edited = copies(root)[-1]
    path = root / edited / "palhm-manifest.json"
    text = json.dumps({**json.loads(path.read_text()), "size": size})
    text = text.replace("Infinity", "1e400")  # what a hand edit leaves
    path.write_text(text)
    stderr = _run(conf, "db")
    assert set(older) <= set(copies(root)), "rotation trusted the edited size"
    assert f"copy {edited} is damaged" in stderr
    listed = _listed(conf, "db")
    assert listed[edited]["state"] == "damaged"
    assert (
        listed[edited]["why"] == "palhm-manifest.json: 'size' is not the sum of its objects' sizes"
    )
    assert listed[edited]["size"] == 1000  # what the storage holds
    text_list = run_palhm("backups", "list", "db", config=conf)
    assert text_list.returncode == 0 and "Traceback" not in text_list.stderr
    verify = run_palhm("backups", "verify", "db", "--all", config=conf)
    assert verify.returncode == 1 and "Traceback" not in verify.stderr
    assert f"{edited}/palhm-manifest.json: damaged: " in verify.stderr


@pytest.mark.parametrize(
    "edit, why",
    [
        (
            lambda m: m["objects"][0].update(size=10**12) or m.update(size=10**12),
            "'data' holds 1000 bytes, the manifest says 1000000000000",
        ),
        (
            lambda m: m["objects"][0].update(size=None),
            "palhm-manifest.json: objects[0].size is not a whole number of bytes",
        ),
        (
            lambda m: m["objects"][0].update(size="1000"),
            "palhm-manifest.json: objects[0].size is not a whole number of bytes",
        ),
        (lambda m: m.update(task=7), "palhm-manifest.json: 'task' is not a string"),
        (lambda m: m.update(objects="data"), "palhm-manifest.json: 'objects' is not a list"),
        (
            lambda m: m.update(finished="yesterday"),
            "palhm-manifest.json: 'finished' is not a time with a zone",
        ),
        (
            lambda m: m["objects"][0].update(path="../../etc/passwd"),
            "palhm-manifest.json: objects[0].path is not a path inside the copy",
        ),
        (
            lambda m: (
                m["objects"].append(dict(m["objects"][0], path="gone")) or m.update(size=2000)
            ),
            "'gone' missing",
        ),
    ],
)
def test_a_manifest_that_disagrees_with_the_storage_is_damaged(tmp_path, edit, why):
    root = tmp_path / "root"
    conf = _config(tmp_path, root, _task("db", root, **{"nb-copy-limit": 1}))
    _run(conf, "db")
    (edited,) = copies(root)
    _edit_manifest(root / edited, edit)
    _run(conf, "db")
    _run(conf, "db")
    assert edited in copies(root), "a damaged copy was rotated away"
    listed = _listed(conf, "db")
    assert listed[edited]["state"] == "damaged"
    assert why in listed[edited]["why"]
    assert [p for p, c in listed.items() if c["state"] == "complete"] == copies(root)[-1:]


@pytest.mark.parametrize(
    "garbage",
    [b"", b"{", b"[]", b"\xff\xfe", b'{"objects": []}', b"NaN", b"1" * 100 + b"e999999"],
)
def test_an_unreadable_manifest_is_damaged_not_a_traceback(tmp_path, garbage):
    root = tmp_path / "root"
    conf = _config(tmp_path, root, _task("db", root, **{"nb-copy-limit": 1}))
    _run(conf, "db")
    (edited,) = copies(root)
    (root / edited / "palhm-manifest.json").write_bytes(garbage)
    stderr = _run(conf, "db")
    assert f"copy {edited} is damaged, never counted or rotated: palhm-manifest.json: " in stderr
    assert edited in copies(root)
    for args in (("list", "db"), ("verify", "db", "--all"), ("cat", "db", edited, "data")):
        result = run_palhm("backups", *args, config=conf)
        assert "Traceback" not in result.stderr, result.stderr
    assert run_palhm("backups", "cat", "db", "latest", "data", config=conf).returncode == 0


def test_storage_sizes_are_measured_not_read_from_the_manifest(tmp_path):
    root = tmp_path / "root"
    conf = _config(tmp_path, root, _task("db", root, **{"nb-copy-limit": 2}))
    _run(conf, "db")
    _run(conf, "db")
    truncated, extra = copies(root)
    (root / truncated / "data").write_bytes(b"short")
    (root / extra / "planted").write_bytes(b"x" * 10)
    listed = _listed(conf, "db")
    assert listed[truncated]["size"] == 5
    assert listed[truncated]["why"] == "'data' holds 5 bytes, the manifest says 1000"
    assert listed[extra]["size"] == 1010 and listed[extra]["objects"] == 2
    assert listed[extra]["why"] == "'planted' not in the manifest"
    for _ in range(3):
        _run(conf, "db")
    assert {truncated, extra} <= set(copies(root))
    assert len(copies(root)) == 4  # the two damaged ones, and the limit of good ones


def test_a_copy_too_deep_to_measure_is_damaged_not_a_traceback(tmp_path):
    root = tmp_path / "root"
    conf = _config(tmp_path, root, _task("db", root, **{"nb-copy-limit": 1}))
    _run(conf, "db")
    (deep,) = copies(root)
    (root / deep / "/".join(["d"] * 300)).mkdir(parents=True)
    stderr = _run(conf, "db")
    assert f"copy {deep} is damaged, never counted or rotated: " in stderr
    assert deep in copies(root)
    assert _listed(conf, "db")[deep]["why"] == "the backend cannot tell what the copy holds"
