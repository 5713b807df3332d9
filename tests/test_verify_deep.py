"""``palhm backups verify --deep``: besides the SHA-256 of every object, each
object's ``check`` pipeline reads it and must exit 0; an object whose bytes
match its manifest but cannot be restored is caught, naming the object and
the check."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import backup_task, copies, inline, run_palhm, write_config
from restore_util import make_database, need, pg_object, unique

ROOT_DIR = Path(__file__).resolve().parent.parent


def _config(tmp_path, objects):
    return write_config(
        tmp_path, {"tasks": [backup_task(root=str(tmp_path / "root"), objects=objects)]}
    )


def _run(cfg):
    done = run_palhm("run", "backup", "--lock-dir", Path(cfg).parent / "locks", config=cfg)
    assert done.returncode == 0, done.stderr


def test_garbage_that_matches_its_manifest_fails_the_deep_check(tmp_path):
    need("zstd")
    objects = [
        {
            # A pipeline that wrote garbage into x.zst: stored and hashed as written.
            "path": "x.zst",
            "pipeline": [inline("head", "-c", "100000", "/dev/urandom")],
            "check": [inline("zstd", "-tq")],
        },
        {
            "path": "good.zst",
            "pipeline": [inline("head", "-c", "100000", "/dev/zero"), inline("zstd", "-q")],
            "check": [inline("zstd", "-tq")],
        },
        {"path": "plain", "pipeline": [inline("echo", "no check")]},
    ]
    cfg = _config(tmp_path, objects)
    _run(cfg)
    (prefix,) = copies(tmp_path / "root")
    shallow = run_palhm("backups", "verify", "backup", config=cfg)
    assert shallow.returncode == 0, shallow.stderr
    deep = run_palhm("backups", "verify", "--deep", "backup", config=cfg)
    assert deep.returncode == 1
    assert f"{prefix}: 3 objects, 1 bad" in deep.stdout
    errors = [line for line in deep.stderr.splitlines() if line.startswith("palhm: ")]
    _recorded(tmp_path, cfg, prefix, ok=False)
    assert errors == [
        f"palhm: {prefix}/x.zst: check `zstd -tq` failed: stage 1/1 'zstd' exited with status 1 "
        "(accepted: ==0)"
    ]


def _recorded(tmp_path, cfg, prefix, ok):
    """--report and --metrics-dir record the result of the last deep verify."""
    out = tmp_path / "verify-out"
    out.mkdir(exist_ok=True)
    args = ["--report", out / "v.json", "--metrics-dir", out]
    done = run_palhm("backups", "verify", "--deep", "backup", *args, config=cfg)
    assert done.returncode == (0 if ok else 1)
    doc = json.loads((out / "v.json").read_text())
    assert (doc["task"], doc["deep"], doc["success"]) == ("backup", True, ok)
    assert doc["copies"] == [{"prefix": prefix, "objects": 3}]
    assert len(doc["problems"]) == (0 if ok else 1)
    metrics = (out / "palhm_verify_backup.prom").read_text().splitlines()
    assert f'palhm_last_verify_success{{task="backup"}} {int(ok)}' in metrics
    assert 'palhm_last_verify_deep{task="backup"} 1' in metrics
    assert f'palhm_last_verify_bad_objects{{task="backup"}} {0 if ok else 1}' in metrics


def test_deep_verify_still_checks_every_sha256(tmp_path):
    need("zstd")
    objects = [
        {
            "path": "a.zst",
            "pipeline": [inline("head", "-c", "50000", "/dev/zero"), inline("zstd", "-q")],
            "check": [inline("zstd", "-tq")],
        },
        {"path": "b", "pipeline": [inline("head", "-c", "50000", "/dev/zero")]},
    ]
    cfg = _config(tmp_path, objects)
    _run(cfg)
    (prefix,) = copies(tmp_path / "root")
    ok = run_palhm("backups", "verify", "--deep", "backup", config=cfg)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.strip() == f"{prefix}: 2 objects, OK"
    stored = tmp_path / "root" / prefix / "b"
    stored.write_bytes(b"\1" * 50000)
    bad = run_palhm("backups", "verify", "--deep", "backup", config=cfg)
    assert bad.returncode == 1
    assert f"{prefix}/b: SHA-256" in bad.stderr and "its manifest says" in bad.stderr


def test_pg_restore_list_checks_a_database_dump(tmp_path, postgres):
    need("zstd")
    source = make_database(postgres)
    obj = pg_object(postgres, source, unique("palhm_unused"))
    cfg = _config(tmp_path, [obj])
    _run(cfg)
    done = run_palhm("backups", "verify", "--deep", "backup", config=cfg)
    assert done.returncode == 0, done.stderr
    # the same bytes under a name whose check expects another format
    (prefix,) = copies(tmp_path / "root")
    stored = tmp_path / "root" / prefix / obj["path"]
    data = stored.read_bytes()
    obj["check"] = [inline("gzip", "-t")]
    cfg = _config(tmp_path, [obj])
    done = run_palhm("backups", "verify", "--deep", "backup", config=cfg)
    assert done.returncode == 1
    assert f"{prefix}/db/dump.pgc.zst: check `gzip -t` failed" in done.stderr
    assert stored.read_bytes() == data  # verify never writes


def use(exec_id: str, *argv: str) -> dict:
    """A step running the exec ``exec_id``, with ``argv`` appended."""
    if argv:
        return {"type": "exec-append", "exec-id": exec_id, "argv": list(argv)}
    return {"type": "exec", "exec-id": exec_id}


def test_the_checks_and_restores_of_core_json_work_on_its_filters(tmp_path):
    """A config using the shipped conf.d/core.json: a tar.gz and a .zst
    object checked by ``check-tar``/``check-gzip``/``check-zstd`` and
    restored with ``restore-gzip | restore-tar``."""
    need("gzip", "zstd", "tar")
    src, out = tmp_path / "src", tmp_path / "out"
    (src / "d").mkdir(parents=True)
    out.mkdir()
    (src / "d" / "f").write_text("data\n")
    objects = [
        {
            "path": "tree.tar.gz",
            "pipeline": [use("tar", "-C", str(src), "."), use("filter-gzip-plain")],
            "check": [use("restore-gzip"), use("check-tar")],
            "restore": [use("restore-gzip"), use("restore-tar", "-C", str(out))],
        },
        {
            "path": "list.zst",
            "pipeline": [inline("seq", "100000"), use("filter-zstd-plain")],
            "check": [use("check-zstd")],
        },
        {
            "path": "list.gz",
            "pipeline": [inline("seq", "100000"), use("filter-gzip-plain")],
            "check": [use("check-gzip")],
        },
    ]
    task = backup_task(root=str(tmp_path / "root"), objects=objects)
    core = ROOT_DIR / "palhm_core" / "data" / "conf.d" / "core.json"
    cfg = write_config(tmp_path, {"include": [str(core)], "tasks": [task]})
    _run(cfg)
    done = run_palhm("backups", "verify", "--deep", "backup", config=cfg)
    assert done.returncode == 0, done.stderr
    assert "./d/f" not in done.stdout  # tar's listing is not shown at the default verbosity
    done = run_palhm("restore", "backup", "latest", "tree.tar.gz", config=cfg)
    assert done.returncode == 0, done.stderr
    assert (out / "d" / "f").read_text() == "data\n"


def test_a_checks_listing_is_shown_only_with_verbose(tmp_path):
    need("tar")
    src = tmp_path / "src"
    src.mkdir()
    (src / "listed-file").write_text("x\n")
    obj = {
        "path": "t.tar",
        "pipeline": [inline("tar", "-C", str(src), "-cf", "-", ".")],
        "check": [inline("tar", "-tf", "-")],
    }
    cfg = _config(tmp_path, [obj])
    _run(cfg)
    quiet = run_palhm("backups", "verify", "--deep", "backup", config=cfg)
    assert quiet.returncode == 0, quiet.stderr
    assert "listed-file" not in quiet.stdout + quiet.stderr
    verbose = run_palhm("-v", "backups", "verify", "--deep", "backup", config=cfg)
    assert verbose.returncode == 0, verbose.stderr
    assert "./listed-file" in verbose.stdout
