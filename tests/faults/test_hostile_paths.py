"""Hostile object paths: each is refused when the config loads (exit 2, the
line naming ``tasks[0].objects[N].path``) or stored exactly at
``ROOT/PREFIX/PATH``, never outside: on localfs a sentinel tree around the
root is unchanged; on S3 nothing outside ROOT/PREFIX appears. The ones that
must be refused (``.``, ``..``, absolute, empty components, control
characters, over-long components, PALHM's own names) are checked to be."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from conftest import inline, write_config

from .util import (
    FIGURES,
    MANIFEST,
    one_error_line,
    palhm,
    palhm_in_process,
    snapshot,
)

PREFIX = {"type": "iso8601", "timespec": "microseconds"}
LONG_OK = "l" * 255
DEEP = "/".join(f"{i:02d}" + "d" * 198 for i in range(24))  # > PATH_MAX, > 1024-byte S3 keys

#: Paths that must be refused when the config loads.
REFUSED = [
    "",
    ".",
    "..",
    "./a",
    "a/.",
    "a/./b",
    "../a",
    "a/..",
    "a/../b",
    "../../../../../../etc/passwd",
    "/",
    "/abs",
    "//double",
    "/../x",
    "trailing/",
    "a//b",
    "a/b/",
    "new\nline",
    "cr\rname",
    "tab\tname",
    "nul\0byte",
    "del\x7f",
    "esc\x1b[31mred",
    "\n",
    "c" * 256,
    "é" * 128,  # 256 bytes
    "palhm-manifest.json",
    "SHA256SUMS",
    "\udc80surrogate",
    "\ud800",
]

#: Paths that may be stored (or refused at load): stored, they must land
#: exactly at ROOT/PREFIX/PATH.
MAYBE = [
    "données/été.sql",
    "日本語/ファイル.bin",
    "emoji-\U0001f600.bin",
    "rtl-\u202egpj.exe",
    "zero\u200bwidth",
    "combining-e\u0301",
    "nbsp\u00a0name",
    "line\u2028separator",
    "bom\ufeffname",
    "fullwidth-dots/\uff0e\uff0e",
    "\u2024\u2024",
    "...",
    "....",
    ". dot-space",
    ".. ",
    " ..",
    "..\u200b",
    "sub/...",
    ".hidden",
    ".palhm-partial.2020-01-01T00:00:00+00:00.deadbeef",
    "sub/.palhm-partial",
    "sub/palhm-manifest.json",
    "-rf",
    "--help",
    "~",
    "$HOME",
    "*",
    "?",
    "a\\..\\b",
    "\\",
    "%2e%2e",
    "%2e%2e%2fescape",
    "a?b=c&d",
    "a#frag",
    "+plus",
    " leading-space",
    "trailing-space ",
    "quote'\"",
    "é" * 127,
    LONG_OK,
    f"deep/{LONG_OK}/{LONG_OK}",
    DEEP,
]


def object_for(path: str) -> dict:
    return {"path": path, "pipeline": [inline("printf", "%s", f"bytes of {path!r}")]}


def expected(path: str) -> bytes:
    return f"bytes of {path!r}".encode("utf-8", "surrogateescape")


def config(tmp_path: Path, backend: str, params: dict, paths, name: str) -> Path:
    task = {
        "id": "backup",
        "type": "backup",
        "backend": backend,
        "backend-param": {**params, "prefix": PREFIX},
        "objects": [object_for(p) for p in paths],
    }
    return write_config(tmp_path, {"vl": 2, "tasks": [task]}, name)


def load(conf: Path) -> tuple[int, str]:
    rc, stderr = palhm_in_process("-f", str(conf), "config", "check")
    FIGURES.path_checks += 1
    assert rc != "traceback", stderr
    return rc, stderr


#: Names a backend keeps for itself (``Backend.reserved_names``): the marker
#: of an object store's copy in the making. localfs stages copies elsewhere,
#: so there they are ordinary names.
RESERVED = {"aws-s3": [".palhm-partial"], "localfs": []}


def sort_paths(tmp_path: Path, backend: str, params: dict):
    """Each path alone through ``config check``: the refused and the accepted."""
    refused, accepted = [], []
    must_refuse = REFUSED + RESERVED[backend]
    others = [p for name, kept in RESERVED.items() if name != backend for p in kept]
    for i, path in enumerate(must_refuse + MAYBE + others):
        conf = config(tmp_path, backend, params, [path], f"p{i}.json")
        rc, stderr = load(conf)
        if rc == 2:
            line = stderr.strip().splitlines()[-1]
            assert "tasks[0].objects[0].path" in line, (path, stderr)
            assert str(conf) in line, (path, stderr)
            refused.append(path)
        else:
            assert rc == 0, (path, rc, stderr)
            accepted.append(path)
    wrongly = [p for p in must_refuse if p in accepted]
    assert not wrongly, f"accepted at load, must be refused: {wrongly!r}"
    FIGURES.notes.append(
        f"hostile object paths on {backend}: {len(refused)} refused at load, "
        f"{len(accepted)} accepted"
    )
    return accepted


def test_hostile_paths_on_localfs(tmp_path):
    outer = tmp_path / "outer"
    for d in ("a", "b/c", "root-sibling"):
        (outer / d).mkdir(parents=True)
        (outer / d / "sentinel").write_text(d)
    root = outer / "root"
    root.mkdir()
    params = {"root": str(root)}
    accepted = sort_paths(tmp_path, "localfs", params)
    too_long = [p for p in accepted if len(os.fsencode(str(root) + "/x/" + p)) >= 4096]
    storable = [p for p in accepted if p not in too_long]
    before = snapshot(outer, skip=root)

    conf = config(tmp_path, "localfs", params, storable, "all.json")
    result = palhm("run", "backup", config=conf)
    FIGURES.trials += 1
    assert result.returncode == 0, result.stderr
    (prefix,) = [p.name for p in root.iterdir() if (p / MANIFEST).exists()]
    base = root / prefix
    for path in storable:
        stored = base.joinpath(*path.split("/"))
        assert os.path.realpath(stored).startswith(str(base) + "/"), path
        assert stored.read_bytes() == expected(path), path
    stored_files = {
        str(Path(d, f).relative_to(base)) for d, _, files in os.walk(base) for f in files
    }
    assert stored_files == {*storable, MANIFEST, "SHA256SUMS"}
    verify = palhm("backups", "verify", "backup", "--all", config=conf)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert snapshot(outer, skip=root) == before

    # Longer than PATH_MAX: the run fails with one line and leaves nothing.
    for path in too_long:
        before_root = snapshot(root)
        conf = config(tmp_path, "localfs", params, [path], "long.json")
        result = palhm("run", "backup", config=conf)
        FIGURES.trials += 1
        assert result.returncode == 1, result.stderr
        assert "File name too long" in one_error_line(result.stderr)
        assert snapshot(root) == before_root
    assert snapshot(outer, skip=root) == before


@pytest.mark.parametrize("root", ["palhm/backup", "/"])
def test_hostile_paths_on_s3(tmp_path, fault_bucket, root):
    params = {"bucket": fault_bucket.name, "root": root, "endpoint-url": fault_bucket.endpoint}
    accepted = sort_paths(tmp_path, "aws-s3", params)
    fault_bucket.put("outside/keep", b"keep")
    base = root.strip("/")
    base = f"{base}/" if base else ""
    if base:
        fault_bucket.put("palhm/other/keep", b"keep")
    outside = fault_bucket.objects()

    # S3 keys are at most 1024 bytes; a longer one fails the run (one line).
    fits = [p for p in accepted if len(f"{base}2026-01-01T00:00:00.000000+00:00/{p}") <= 1024]
    conf = config(tmp_path, "aws-s3", params, fits, "all.json")
    result = palhm("run", "backup", config=conf)
    FIGURES.trials += 1
    if result.returncode != 0:
        line = one_error_line(result.stderr)
        pytest.fail(f"the run of the accepted paths failed: {line}")
    keys = fault_bucket.objects()
    new = {k: v for k, v in keys.items() if k not in outside}
    assert {k: v for k, v in keys.items() if k in outside} == outside
    prefixes = {k[len(base) :].split("/", 1)[0] for k in new}
    assert len(prefixes) == 1, prefixes
    (prefix,) = prefixes
    want = {f"{base}{prefix}/{p}" for p in [*fits, MANIFEST, "SHA256SUMS"]}
    assert set(new) == want
    for path in fits:
        assert fault_bucket.get(f"{base}{prefix}/{path}") == expected(path), path
    verify = palhm("backups", "verify", "backup", "--all", config=conf)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    # Keys over 1024 bytes: AWS refuses them (the run then fails with one
    # line and leaves nothing); a server that takes them must get the key.
    for path in [p for p in accepted if p not in fits]:
        before = fault_bucket.objects(), fault_bucket.uploads()
        conf = config(tmp_path, "aws-s3", params, [path], "long.json")
        result = palhm("run", "backup", config=conf)
        FIGURES.trials += 1
        if result.returncode == 0:
            made = set(fault_bucket.objects()) - set(before[0])
            (key,) = [k for k in made if k.endswith(f"/{path}")]
            assert key == f"{base}{key[len(base) :].split('/', 1)[0]}/{path}"
            continue
        assert result.returncode == 1, result.stderr
        one_error_line(result.stderr)
        assert (fault_bucket.objects(), fault_bucket.uploads()) == before
