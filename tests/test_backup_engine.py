"""The backup engine on localfs: bytes, groups, workers, failure and rollback."""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import PALHM, backup_task, copies, inline, run_palhm, write_config
from timers_util import GUARD, wait_for

STAMP = str(Path(__file__).parent / "tools" / "stamp.py")
PY = sys.executable


def tree(root: Path) -> dict[str, tuple]:
    """Every entry under root with its type, mode and content hash."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            st = p.lstat()
            digest = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else None
            out[str(p.relative_to(root))] = (st.st_mode, digest)
    return out


def stamp(log, name, nbytes=10, awaits=()):
    """A stage that logs its start, waits for the start of the ``awaits``
    stages, writes ``nbytes`` and logs its end (tests/tools/stamp.py)."""
    return inline(PY, STAMP, str(log), name, str(nbytes), *awaits)


def events(log: Path) -> list[str]:
    """``NAME start`` and ``NAME end`` lines, in the order they happened."""
    return log.read_text().splitlines()


def logged(log: Path, line: str) -> bool:
    return log.exists() and line in events(log)


def test_objects_equal_the_shell_pipelines(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.txt").write_bytes(os.urandom(300_000))
    (src / "b.bin").write_bytes(b"x" * 5_000_000)
    root = tmp_path / "root"
    pipelines = {
        "data/a.gz": [["gzip", "-c", "-n", str(src / "a.txt")]],
        "data/b.zst": [["cat", str(src / "b.bin")], ["zstd", "-q", "-c"]],
        "meta/sorted": [["printf", "c\\nb\\na\\n"], ["sort"], ["tr", "a-z", "A-Z"]],
        "empty": [["true"]],
    }
    groups = [{"id": "meta"}, {"id": "data", "depends": ["meta"]}]
    objects = [
        {
            "path": path,
            "group": "meta" if path.startswith("meta") or path == "empty" else "data",
            "pipeline": [inline(*argv) for argv in stages],
        }
        for path, stages in pipelines.items()
    ]
    conf = write_config(
        tmp_path, {"tasks": [backup_task(objects=objects, groups=groups, root=str(root))]}
    )
    result = run_palhm("run", "backup", config=conf)
    assert result.returncode == 0, result.stderr
    (copy,) = copies(root)
    manifest = json.loads((root / copy / "palhm-manifest.json").read_text())
    listed = {o["path"]: o for o in manifest["objects"]}
    for path, stages in pipelines.items():
        shell = " | ".join(shlex.join(a) for a in stages)
        expected = subprocess.run(["sh", "-c", shell], capture_output=True, check=True).stdout
        stored = (root / copy / path).read_bytes()
        assert stored == expected, path
        assert listed[path]["size"] == len(expected)
        assert listed[path]["sha256"] == hashlib.sha256(expected).hexdigest()
    check = subprocess.run(["sha256sum", "-c", "SHA256SUMS"], cwd=root / copy, capture_output=True)
    assert check.returncode == 0, check.stdout


def test_groups_run_in_dependency_order_and_overlap_within_a_group(tmp_path):
    log = tmp_path / "events.log"
    groups = [
        {"id": "last", "depends": ["middle"]},  # a forward reference
        {"id": "first"},
        {"id": "middle", "depends": ["first"]},
    ]
    # f1 and f2 end only once both started, and f1 once d1 started too: the
    # run can succeed only if the objects of a group, and independent
    # groups, are built at the same time.
    objects = [
        {"path": "f1", "group": "first", "pipeline": [stamp(log, "f1", awaits=["f2", "d1"])]},
        {"path": "f2", "group": "first", "pipeline": [stamp(log, "f2", awaits=["f1"])]},
        {"path": "m1", "group": "middle", "pipeline": [stamp(log, "m1")]},
        {"path": "l1", "group": "last", "pipeline": [stamp(log, "l1")]},
        {"path": "d1", "pipeline": [stamp(log, "d1")]},  # implicit "default" group
    ]
    conf = write_config(
        tmp_path,
        {
            "nb-workers": 4,
            "tasks": [backup_task(objects=objects, groups=groups, root=str(tmp_path / "r"))],
        },
    )
    result = run_palhm("run", "backup", config=conf)
    assert result.returncode == 0, result.stderr
    at = {line: i for i, line in enumerate(events(log))}
    assert at["m1 start"] > max(at["f1 end"], at["f2 end"])
    assert at["l1 start"] > at["m1 end"]


def test_one_worker_builds_one_object_at_a_time(tmp_path):
    log = tmp_path / "events.log"
    objects = [{"path": f"o{i}", "pipeline": [stamp(log, f"o{i}", 100_000)]} for i in range(4)]
    conf = write_config(
        tmp_path,
        {"nb-workers": 1, "tasks": [backup_task(objects=objects, root=str(tmp_path / "r"))]},
    )
    result = run_palhm("run", "backup", config=conf)
    assert result.returncode == 0, result.stderr
    assert events(log) == [f"o{i} {what}" for i in range(4) for what in ("start", "end")]


def test_a_failing_stage_leaves_the_root_exactly_as_before(tmp_path):
    root = tmp_path / "root"
    good = write_config(
        tmp_path,
        {
            "tasks": [
                backup_task(
                    objects=[{"path": "x", "pipeline": [inline("echo", "hi")]}], root=str(root)
                )
            ]
        },
        "good.jsonc",
    )
    assert run_palhm("run", "backup", config=good).returncode == 0
    (root / "unrelated").mkdir()
    (root / "unrelated" / "keep.txt").write_text("mine")
    before = tree(root)
    objects = [
        {"path": "ok", "pipeline": [inline("seq", "1", "100000")]},
        {
            "path": "sub/bad",
            "pipeline": [inline("seq", "1", "10"), inline("sh", "-c", "cat; exit 3")],
        },
    ]
    bad = write_config(
        tmp_path, {"tasks": [backup_task(objects=objects, root=str(root))]}, "bad.jsonc"
    )
    result = run_palhm("run", "backup", config=bad)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "object 'sub/bad': stage 2/2 'sh' exited with status 3 (accepted: ==0)" in result.stderr
    assert tree(root) == before


def test_accepted_exit_codes_and_sigpipe_blame(tmp_path):
    root = tmp_path / "root"
    objects = [
        {"path": "grep-none", "pipeline": [inline("echo", "x"), inline("grep", "y", ec="<2")]},
    ]
    conf = write_config(
        tmp_path, {"tasks": [backup_task(objects=objects, root=str(root))]}, "ok.jsonc"
    )
    assert run_palhm("run", "backup", config=conf).returncode == 0
    objects = [{"path": "early", "pipeline": [inline("yes"), inline("head", "-c", "10")]}]
    conf = write_config(
        tmp_path, {"tasks": [backup_task(objects=objects, root=str(root))]}, "pipe.jsonc"
    )
    result = run_palhm("run", "backup", config=conf)
    assert result.returncode == 1
    assert (
        "stage 1/2 'yes' killed by SIGPIPE: stage 2/2 'head' stopped reading its input"
        in result.stderr
    )
    assert len(copies(root)) == 1


def test_missing_program_is_one_line(tmp_path):
    root = tmp_path / "root"
    objects = [{"path": "x", "pipeline": [inline("/nonexistent/prog")]}]
    conf = write_config(tmp_path, {"tasks": [backup_task(objects=objects, root=str(root))]})
    result = run_palhm("run", "backup", config=conf)
    assert result.returncode == 1
    assert (
        result.stderr.strip()
        .splitlines()[-1]
        .endswith("cannot run '/nonexistent/prog': No such file or directory")
    )
    assert copies(root) == [] and not [p for p in root.iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_stop_signal_rolls_back_and_exits_128_plus_n(tmp_path, sig):
    root = tmp_path / "root"
    log = tmp_path / "events.log"
    objects = [
        {"path": "fast", "pipeline": [inline("seq", "1", "1000")]},
        {"path": "slow", "pipeline": [stamp(log, "slow", awaits=["never"])]},
    ]
    conf = write_config(tmp_path, {"tasks": [backup_task(objects=objects, root=str(root))]})
    proc = subprocess.Popen(
        [PALHM, "-f", str(conf), "run", "backup"], stderr=subprocess.PIPE, text=True
    )
    wait_for(lambda: logged(log, "slow start"), "the slow stage to start", proc=proc)
    proc.send_signal(sig)
    proc.wait(timeout=GUARD)
    assert proc.returncode == 128 + sig, proc.stderr.read()
    assert events(log) == ["slow start"]  # ended by PALHM, not on its own
    assert list(root.iterdir()) == []


def test_kill_9_is_never_a_copy_and_the_next_run_cleans_it(tmp_path):
    root = tmp_path / "root"
    quick = [{"path": "q", "pipeline": [inline("echo", "good")]}]
    good = write_config(
        tmp_path, {"tasks": [backup_task(objects=quick, root=str(root))]}, "good.jsonc"
    )
    assert run_palhm("run", "backup", config=good).returncode == 0
    (kept,) = copies(root)
    log = tmp_path / "events.log"
    slow = [{"path": "part", "pipeline": [stamp(log, "slow", 100, awaits=["never"])]}]
    conf = write_config(
        tmp_path, {"tasks": [backup_task(objects=slow, root=str(root))]}, "slow.jsonc"
    )
    proc = subprocess.Popen([PALHM, "-f", str(conf), "run", "backup"])
    wait_for(lambda: logged(log, "slow start"), "the slow stage to start", proc=proc)
    proc.kill()
    proc.wait()
    leftovers = [p for p in root.iterdir() if p.name.startswith(".palhm-partial.")]
    assert leftovers, "the killed run's staging directory should still be there"
    assert copies(root) == [kept]
    listed = run_palhm("run", "backup", config=good)
    assert listed.returncode == 0, listed.stderr
    assert not [p for p in root.iterdir() if p.name.startswith(".")]
    assert copies(root)[0] == kept and len(copies(root)) == 2
    assert (root / kept / "q").read_text() == "good\n"


def test_modes_are_applied_whatever_the_umask(tmp_path):
    root = tmp_path / "root"
    objects = [{"path": "a/b/c", "pipeline": [inline("echo", "x")]}]
    conf = write_config(
        tmp_path,
        {"tasks": [backup_task(objects=objects, root=str(root), dmode="705", fmode="604")]},
    )
    result = subprocess.run(
        ["sh", "-c", 'umask 077 && exec "$@"', "sh", PALHM, "-f", str(conf), "run", "backup"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    (copy,) = copies(root)
    base = root / copy
    assert (base / "a").stat().st_mode & 0o7777 == 0o705
    assert (base / "a" / "b").stat().st_mode & 0o7777 == 0o705
    assert (base / "a" / "b" / "c").stat().st_mode & 0o7777 == 0o604
    assert (base / "palhm-manifest.json").stat().st_mode & 0o7777 == 0o604
    assert base.stat().st_mode & 0o7777 == 0o705


def test_alloc_size_preallocates_and_trims(tmp_path):
    root = tmp_path / "root"
    objects = [{"path": "x", "alloc-size": 10_000_000, "pipeline": [inline("seq", "1", "1000")]}]
    conf = write_config(tmp_path, {"tasks": [backup_task(objects=objects, root=str(root))]})
    assert run_palhm("run", "backup", config=conf).returncode == 0
    (copy,) = copies(root)
    expected = subprocess.run(["seq", "1", "1000"], capture_output=True).stdout
    assert (root / copy / "x").read_bytes() == expected


def test_relative_root_is_taken_from_the_working_directory(tmp_path):
    objects = [{"path": "x", "pipeline": [inline("echo", "x")]}]
    conf = write_config(tmp_path / "etc", {"tasks": [backup_task(objects=objects, root="backups")]})
    work = tmp_path / "work"
    work.mkdir()
    assert run_palhm("run", "backup", config=conf, cwd=work).returncode == 0
    assert len(copies(work / "backups")) == 1


def test_unusable_roots_are_one_line(tmp_path):
    objects = [{"path": "x", "pipeline": [inline("echo", "x")]}]
    afile = tmp_path / "afile"
    afile.write_text("")
    for root, problem in [
        (tmp_path / "no" / "parent", "its parent directory"),
        (afile, "is not a directory"),
    ]:
        conf = write_config(tmp_path, {"tasks": [backup_task(objects=objects, root=str(root))]})
        result = run_palhm("run", "backup", config=conf)
        assert result.returncode == 1
        assert problem in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "no").exists()


def test_quiet_run_shows_a_failing_stages_stderr_only_when_it_fails(tmp_path):
    root = tmp_path / "root"
    noisy = "echo 'warming up' >&2; echo 'Access denied for user root' >&2; exit {}"
    for code, expected in [(0, 0), (2, 1)]:
        objects = [{"path": "x", "pipeline": [inline("sh", "-c", noisy.format(code))]}]
        conf = write_config(tmp_path, {"tasks": [backup_task(objects=objects, root=str(root))]})
        result = run_palhm("-q", "run", "backup", config=conf)
        assert result.returncode == expected
        if expected == 0:
            assert result.stderr == ""
        else:
            assert result.stderr.splitlines() == [
                "palhm: task 'backup': object 'x': stage 1/1 'sh' exited with status 2 "
                "(accepted: ==0); its stderr ended with:",
                "palhm:   | warming up",
                "palhm:   | Access denied for user root",
            ]
