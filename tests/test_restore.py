"""``palhm restore``: objects streamed back from the backend, hash-checked,
through their restore pipeline or into a directory.

Real programs throughout: a PostgreSQL server of the test session's own
(tests/pg.py) dumped with ``pg_dump -Fc | zstd`` and restored into a new
database with ``zstd -d | pg_restore``; a tar of a directory tree.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import backup_task, copies, inline, run_palhm, write_config
from restore_util import make_database, need, pg_object, rows, unique
from timers_util import marked_processes


def _run(cfg, task="backup"):
    done = run_palhm("run", task, "--lock-dir", Path(cfg).parent / "locks", config=cfg)
    assert done.returncode == 0, done.stderr
    return done


def test_postgres_dump_restored_into_a_new_database_row_for_row(tmp_path, postgres):
    need("zstd")
    source = make_database(postgres)
    target = postgres.create_database(unique("palhm_restored"))
    root = tmp_path / "root"
    cfg = write_config(
        tmp_path,
        {"tasks": [backup_task(root=str(root), objects=[pg_object(postgres, source, target)])]},
    )
    _run(cfg)
    tables = "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"
    assert postgres.psql(target, tables).strip() == "0"  # the run restores nothing
    done = run_palhm("restore", "backup", "latest", config=cfg)
    assert done.returncode == 0, done.stderr
    assert "restored" in done.stderr
    restored, original = rows(postgres, target), rows(postgres, source)
    assert len(original["items"]) == 20000 and len(original["notes"]) == 5000
    assert restored == original


def _tree(top: Path) -> None:
    (top / "etc" / "deep" / "er").mkdir(parents=True)
    (top / "empty").mkdir()
    (top / "etc" / "hosts").write_text("127.0.0.1 localhost\n")
    (top / "etc" / "deep" / "er" / "blob").write_bytes(os.urandom(300_000))
    (top / "etc" / "deep" / "zero").write_bytes(b"")
    (top / "sp ace é").write_text("unicode name\n")
    (top / "link").symlink_to("etc/hosts")
    os.chmod(top / "etc" / "hosts", 0o640)


def _snapshot(top: Path) -> dict[str, tuple]:
    """Every entry under ``top``: kind, mode and content digest or target."""
    found = {}
    for path in sorted(top.rglob("*")):
        rel = str(path.relative_to(top))
        st = path.lstat()
        if path.is_symlink():
            found[rel] = ("link", os.readlink(path))
        elif path.is_dir():
            found[rel] = ("dir", st.st_mode & 0o7777)
        else:
            found[rel] = (
                "file",
                st.st_mode & 0o7777,
                hashlib.sha256(path.read_bytes()).hexdigest(),
            )
    return found


def _tar_task(tmp_path: Path, src: Path, out: Path):
    return backup_task(
        root=str(tmp_path / "root"),
        objects=[
            {
                "path": "files/tree.tar.zst",
                "pipeline": [inline("tar", "-C", str(src), "-cf", "-", "."), inline("zstd", "-q")],
                "restore": [inline("zstd", "-dq"), inline("tar", "-C", str(out), "-xpf", "-")],
                "check": [inline("zstd", "-dq"), inline("tar", "-tf", "-")],
            },
            {"path": "note.txt", "pipeline": [inline("echo", "a plain object")]},
        ],
    )


def test_tar_of_a_tree_restored_with_to_and_through_its_pipeline(tmp_path):
    need("zstd", "tar")
    src, out, dest = tmp_path / "src", tmp_path / "out", tmp_path / "dest"
    src.mkdir()
    out.mkdir()
    _tree(src)
    cfg = write_config(tmp_path, {"tasks": [_tar_task(tmp_path, src, out)]})
    _run(cfg)
    # --to DIR: the objects as they were stored
    done = run_palhm("restore", "backup", "--to", dest, config=cfg)
    assert done.returncode == 0, done.stderr
    assert (dest / "note.txt").read_text() == "a plain object\n"
    assert oct((dest / "note.txt").stat().st_mode & 0o777) == "0o600"
    unpacked = tmp_path / "unpacked"
    unpacked.mkdir()
    archive = dest / "files" / "tree.tar.zst"
    subprocess.run(f"zstd -dc '{archive}' | tar -C '{unpacked}' -xpf -", shell=True, check=True)
    assert _snapshot(unpacked) == _snapshot(src)
    assert not list(dest.rglob(".palhm-partial.*"))
    # through the restore pipeline, one object named
    done = run_palhm("restore", "backup", "latest", "files", config=cfg)
    assert done.returncode == 0, done.stderr
    assert _snapshot(out) == _snapshot(src)


def test_restore_into_a_directory_never_replaces_a_file_unless_forced(tmp_path):
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "note.txt").write_text("mine\n")
    cfg = write_config(
        tmp_path,
        {
            "tasks": [
                backup_task(
                    root=str(tmp_path / "root"),
                    objects=[{"path": "note.txt", "pipeline": [inline("echo", "stored")]}],
                )
            ]
        },
    )
    _run(cfg)
    done = run_palhm("restore", "backup", "--to", dest, config=cfg)
    assert done.returncode == 1
    assert "note.txt exists (give --force to replace it)" in done.stderr
    assert (dest / "note.txt").read_text() == "mine\n"
    done = run_palhm("restore", "backup", "--to", dest, "--force", config=cfg)
    assert done.returncode == 0, done.stderr
    assert (dest / "note.txt").read_text() == "stored\n"


def test_restore_into_a_directory_does_not_follow_a_symlink_out_of_it(tmp_path):
    dest, outside = tmp_path / "dest", tmp_path / "outside"
    dest.mkdir()
    outside.mkdir()
    (dest / "sub").symlink_to(outside)
    obj = {"path": "sub/f", "pipeline": [inline("echo", "x")]}
    cfg = write_config(
        tmp_path, {"tasks": [backup_task(root=str(tmp_path / "root"), objects=[obj])]}
    )
    _run(cfg)
    done = run_palhm("restore", "backup", "--to", dest, config=cfg)
    assert done.returncode == 1
    assert "is not a directory" in done.stderr
    assert list(outside.iterdir()) == []


def _corrupt(root: Path, path: str) -> None:
    """Flip one byte of a stored object: same size, another SHA-256."""
    (copy,) = copies(root)
    target = root / copy / path
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0xFF
    target.write_bytes(bytes(data))


#: A restore "pipeline" that records how its input ended: ``clean`` after
#: reading it to its end.
RECORDER = (
    "import sys; n = len(sys.stdin.buffer.read()); open(sys.argv[1], 'w').write(f'clean {n}')"
)


def test_a_mismatch_ends_the_restore_pipeline_before_its_input_ends(tmp_path):
    root = tmp_path / "root"
    marker = tmp_path / "marker"
    obj = {
        "path": "data",
        "pipeline": [inline("head", "-c", "3000000", "/dev/urandom")],
        "restore": [inline(sys.executable, "-c", RECORDER, str(marker))],
    }
    cfg = write_config(tmp_path, {"tasks": [backup_task(root=str(root), objects=[obj])]})
    _run(cfg)
    done = run_palhm("restore", "backup", config=cfg)
    assert done.returncode == 0, done.stderr
    assert marker.read_text() == "clean 3000000"
    marker.unlink()
    _corrupt(root, "data")
    done = run_palhm("restore", "backup", config=cfg)
    assert done.returncode == 1
    assert "data: SHA-256" in done.stderr and "its manifest says" in done.stderr
    assert "restored" not in done.stderr.replace("restoring", "")
    assert not marker.exists()  # ended before the end of its input
    # into a directory: nothing is left, not even the partial file
    dest = tmp_path / "dest"
    done = run_palhm("restore", "backup", "--to", dest, config=cfg)
    assert done.returncode == 1
    assert list(dest.iterdir()) == []


def test_a_failing_restore_command_fails_the_restore(tmp_path):
    obj = {
        "path": "data",
        "pipeline": [inline("echo", "x")],
        "restore": [
            inline("cat"),
            inline(sys.executable, "-c", "import sys; sys.stdin.read(); sys.exit(3)"),
        ],
    }
    cfg = write_config(
        tmp_path, {"tasks": [backup_task(root=str(tmp_path / "root"), objects=[obj])]}
    )
    _run(cfg)
    done = run_palhm("restore", "backup", config=cfg)
    assert done.returncode == 1
    assert "stage 2/2" in done.stderr and "exited with status 3" in done.stderr


def test_objects_without_a_restore_pipeline_need_a_directory(tmp_path):
    objs = [{"path": "a", "pipeline": [inline("echo", "a")]}]
    cfg = write_config(
        tmp_path, {"tasks": [backup_task(root=str(tmp_path / "root"), objects=objs)]}
    )
    _run(cfg)
    done = run_palhm("restore", "backup", config=cfg)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "palhm: task 'backup': no restore pipeline for 'a' (declare \"restore\" for the object, "
        "or give --to DIR)"
    ]
    done = run_palhm("restore", "backup", "latest", "nope", "--to", tmp_path / "d", config=cfg)
    assert done.returncode == 2
    assert "has no object 'nope'" in done.stderr


def test_plan_shows_how_each_object_is_restored(tmp_path):
    src, out = tmp_path / "src", tmp_path / "out"
    cfg = write_config(tmp_path, {"tasks": [_tar_task(tmp_path, src, out)]})
    done = run_palhm("plan", "--restore", "backup", config=cfg)
    assert done.returncode == 0, done.stderr
    assert f"restore: zstd -dq | tar -C {out} -xpf -" in done.stdout
    assert "check: zstd -dq | tar -tf -" in done.stdout
    assert "restore: none: palhm restore --to DIR writes the file" in done.stdout
    as_json = run_palhm("plan", "--restore", "--json", "backup", config=cfg)
    assert as_json.returncode == 0, as_json.stderr
    assert json.loads(as_json.stdout)["objects"] == [
        {
            "path": "files/tree.tar.zst",
            "restore": f"zstd -dq | tar -C {out} -xpf -",
            "check": "zstd -dq | tar -tf -",
        },
        {"path": "note.txt", "restore": None, "check": None},
    ]


def test_sigterm_ends_the_restore_pipeline_before_its_input_ends(tmp_path):
    root = tmp_path / "root"
    started, marker = tmp_path / "started", tmp_path / "marker"
    slow = (
        "import pathlib, sys, time; pathlib.Path(sys.argv[1]).touch(); time.sleep(60); "
        "n = len(sys.stdin.buffer.read()); open(sys.argv[2], 'w').write(f'clean {n}')"
    )
    obj = {
        "path": "data",
        "pipeline": [inline("head", "-c", "20000000", "/dev/zero")],
        "restore": [inline(sys.executable, "-c", slow, str(started), str(marker))],
    }
    cfg = write_config(tmp_path, {"tasks": [backup_task(root=str(root), objects=[obj])]})
    _run(cfg)
    proc = subprocess.Popen(
        [sys.executable.rsplit("/", 1)[0] + "/palhm", "-f", str(cfg), "restore", "backup"],
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while not started.exists():
        assert proc.poll() is None and time.monotonic() < deadline, "the restore did not start"
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "stopped by SIGTERM" in err
    assert not marker.exists()


@pytest.mark.parametrize(
    "script",
    ["time.sleep(30)", "sys.stdin.read(); time.sleep(30)"],
    ids=["not reading", "after its input"],
)
def test_a_restore_command_past_its_timeout_is_ended(tmp_path, script):
    """The command would touch its file after 30 s: the timeout ended it
    before, and PALHM left nothing of it running."""
    ended = tmp_path / "ran to its end"
    argv = [sys.executable, "-c", f"import sys, time; {script}; open(sys.argv[1], 'w')", str(ended)]
    obj = {
        "path": "data",
        "pipeline": [inline("head", "-c", "5000000", "/dev/zero")],
        "restore": [inline(*argv, timeout=1)],
    }
    cfg = write_config(
        tmp_path, {"tasks": [backup_task(root=str(tmp_path / "root"), objects=[obj])]}
    )
    _run(cfg)
    done = run_palhm("restore", "backup", config=cfg)
    assert done.returncode == 1
    assert "data: restore" in done.stderr and "stage 1/1" in done.stderr
    assert "timed out after 1 s" in done.stderr
    assert not ended.exists()
    assert marked_processes(str(ended)) == []


def test_restore_into_a_directory_never_removes_another_object_of_the_copy(tmp_path):
    # An object may be named as another's file in the making would be: each
    # restored file stays as stored, whatever the order.
    dest = tmp_path / "dest"
    objects = [
        {"path": "a.palhm-partial", "pipeline": [inline("echo", "first")]},
        {"path": "a", "pipeline": [inline("echo", "second")]},
    ]
    cfg = write_config(
        tmp_path, {"tasks": [backup_task(root=str(tmp_path / "root"), objects=objects)]}
    )
    _run(cfg)
    done = run_palhm("restore", "backup", "--to", dest, config=cfg)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in dest.iterdir()) == ["a", "a.palhm-partial"]
    assert (dest / "a.palhm-partial").read_text() == "first\n"
    assert (dest / "a").read_text() == "second\n"


def test_restore_into_a_directory_names_what_it_cannot_write_in_one_line(tmp_path):
    # A directory where a file goes (even with --force), and a name as long
    # as a file system allows: one line and exit 1, never a traceback.
    dest = tmp_path / "dest"
    (dest / "d").mkdir(parents=True)
    objects = [
        {"path": "d", "pipeline": [inline("echo", "x")]},
        {"path": "n" * 255, "pipeline": [inline("echo", "long")]},
    ]
    cfg = write_config(
        tmp_path, {"tasks": [backup_task(root=str(tmp_path / "root"), objects=objects)]}
    )
    _run(cfg)
    done = run_palhm("restore", "backup", "latest", "d", "--to", dest, "--force", config=cfg)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert f"cannot write {dest / 'd'}: Is a directory" in done.stderr
    assert [p.name for p in dest.iterdir()] == ["d"] and not list((dest / "d").iterdir())
    done = run_palhm("restore", "backup", "latest", "n" * 255, "--to", dest, config=cfg)
    assert done.returncode == 0, done.stderr
    assert (dest / ("n" * 255)).read_text() == "long\n"


def test_latest_names_a_newer_damaged_copy_it_passes_over(tmp_path):
    root, dest = tmp_path / "root", tmp_path / "dest"
    counter = tmp_path / "n"
    counter.write_text("0")
    bump = f"n=$(($(cat {counter}) + 1)); echo $n > {counter}; echo run $n"
    obj = {"path": "note.txt", "pipeline": [inline("sh", "-c", bump)]}
    cfg = write_config(tmp_path, {"tasks": [backup_task(root=str(root), objects=[obj])]})
    _run(cfg)
    _run(cfg)
    older, newer = copies(root)
    (root / newer / "note.txt").write_text("")  # the storage holds less than the manifest
    done = run_palhm("restore", "backup", "--to", dest, config=cfg)
    assert done.returncode == 0, done.stderr
    assert (dest / "note.txt").read_text() == "run 1\n"
    assert f"copy {newer} is damaged" in done.stderr
    assert f"restored {older}/note.txt" in done.stderr


def test_a_to_that_is_no_directory_is_one_line_and_exit_2(tmp_path):
    obj = {"path": "note.txt", "pipeline": [inline("echo", "x")]}
    cfg = write_config(
        tmp_path, {"tasks": [backup_task(root=str(tmp_path / "root"), objects=[obj])]}
    )
    _run(cfg)
    afile = tmp_path / "afile"
    afile.write_text("mine\n")
    for to, problem in [
        (afile, "not a directory"),
        (afile / "sub", "cannot make the directory: Not a directory"),
    ]:
        done = run_palhm("restore", "backup", "--to", to, config=cfg)
        assert done.returncode == 2, done.stderr
        assert done.stderr == f"palhm: --to {to}: {problem}\n"
    assert afile.read_text() == "mine\n"
