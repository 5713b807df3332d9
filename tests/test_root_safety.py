"""localfs opens ROOT once and works through its descriptor, and refuses a
ROOT that another user could swap or fill (OpenSSH's StrictModes rule) unless
``allow-unsafe-root`` accepts the risk."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from conftest import PALHM, backup_task, copies, inline, run_palhm, write_config

NOBODY = 65534
DATA = [{"path": "data", "pipeline": [inline("echo", "data")]}]

needs_root = pytest.mark.skipif(
    os.geteuid() != 0, reason="needs root: the test gives a directory to another user"
)


def _config(tmp_path: Path, root: Path, task_id="db", objects=DATA, **params) -> Path:
    task = backup_task(task_id, objects=objects, root=str(root), **params)
    return write_config(tmp_path, {"tasks": [task]}, f"{task_id}.jsonc")


def _tree(top: Path) -> dict[str, bytes | None]:
    return {
        str(p.relative_to(top)): (p.read_bytes() if p.is_file() else None)
        for p in sorted(top.rglob("*"))
    }


def _as_nobody(*argv: str) -> None:
    subprocess.run(argv, user=NOBODY, group=NOBODY, check=True, timeout=30)


@pytest.fixture
def reachable(tmp_path):
    """A directory every user can reach (pytest's own are root's, mode 700),
    removed at the end."""
    top = Path(tempfile.mkdtemp(prefix="palhm-test-", dir="/tmp"))
    os.chmod(top, 0o755)
    try:
        yield top
    finally:
        shutil.rmtree(top)


@needs_root
def test_a_user_owning_the_parent_cannot_redirect_the_backup(tmp_path, reachable):
    """The attack: the owner of ROOT's parent swaps ROOT for a symlink to a
    root-only directory; PALHM running as root must not write or rotate
    there."""
    secret = tmp_path / "secret"
    secret.mkdir(mode=0o700)
    other = _config(tmp_path, secret, "other")
    for _ in range(3):
        assert run_palhm("run", "other", config=other).returncode == 0
    before = _tree(secret)
    parent = reachable / "home"
    parent.mkdir()
    os.chown(parent, NOBODY, NOBODY)
    root = parent / "backup"
    root.mkdir(mode=0o750)
    conf = _config(tmp_path, root, **{"nb-copy-limit": 1})
    _as_nobody("mv", str(root), str(parent / "old"))
    _as_nobody("ln", "-s", str(secret), str(root))
    result = run_palhm("run", "db", config=conf)
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"palhm: backup root {root}: {parent} (a directory above ROOT) is owned by uid "
        f"{NOBODY}, neither root nor PALHM's user: another user could replace or fill the "
        "backup root; fix its owner or mode, or set allow-unsafe-root to accept the risk"
    )
    assert _tree(secret) == before
    listed = run_palhm("backups", "list", "db", config=conf)
    assert listed.returncode == 1 and "is owned by uid 65534" in listed.stderr


@needs_root
def test_allow_unsafe_root_accepts_the_risk(tmp_path):
    parent = tmp_path / "home"
    parent.mkdir()
    os.chown(parent, NOBODY, NOBODY)
    root = parent / "backup"
    conf = _config(tmp_path, root, **{"allow-unsafe-root": True})
    result = run_palhm("run", "db", config=conf)
    assert result.returncode == 0, result.stderr
    assert len(copies(root)) == 1


@needs_root
def test_root_owned_by_another_user_is_refused(tmp_path):
    root = tmp_path / "backup"
    root.mkdir(mode=0o750)
    os.chown(root, NOBODY, NOBODY)
    result = run_palhm("run", "db", config=_config(tmp_path, root))
    assert result.returncode == 1
    assert f"{root} (ROOT) is owned by uid {NOBODY}" in result.stderr
    assert list(root.iterdir()) == []


@pytest.mark.parametrize(
    "parent_mode, root_mode, refused",
    [
        (0o755, 0o750, None),
        (0o1777, 0o750, None),  # sticky, as /tmp: others cannot rename ROOT
        (0o777, 0o750, "(a directory above ROOT) is writable by other users (mode 777)"),
        (0o775, 0o750, "(a directory above ROOT) is writable by other users (mode 775)"),
        (0o755, 0o770, "(ROOT) is writable by other users (mode 770)"),
        (0o755, 0o1777, "(ROOT) is writable by other users (mode 1777)"),
    ],
)
def test_writable_directories_on_the_way_are_refused(tmp_path, parent_mode, root_mode, refused):
    parent = tmp_path / "parent"
    parent.mkdir()
    root = parent / "root"
    root.mkdir()
    os.chmod(parent, parent_mode)
    os.chmod(root, root_mode)
    conf = _config(tmp_path, root)
    result = run_palhm("run", "db", config=conf)
    if refused is None:
        assert result.returncode == 0, result.stderr
        return
    assert result.returncode == 1
    (line,) = result.stderr.splitlines()
    assert refused in line and "allow-unsafe-root" in line
    assert list(root.iterdir()) == []
    unsafe = _config(tmp_path, root, **{"allow-unsafe-root": True})
    assert run_palhm("run", "db", config=unsafe).returncode == 0


def test_a_symlink_in_a_safe_directory_is_followed(tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "link").symlink_to(real)
    result = run_palhm("run", "db", config=_config(tmp_path, tmp_path / "link" / "root"))
    assert result.returncode == 0, result.stderr
    assert len(copies(real / "root")) == 1


def test_root_swapped_mid_run_changes_nothing(tmp_path):
    """ROOT is renamed away and replaced by a symlink while a copy is being
    made: the copy lands in the directory PALHM opened, and rotation works
    there; the symlink's target is not touched."""
    target = tmp_path / "target"
    other = _config(tmp_path, target, "db2")
    assert run_palhm("run", "db2", config=other).returncode == 0
    assert run_palhm("run", "db2", config=other).returncode == 0
    before = _tree(target)
    root = tmp_path / "root"
    go = tmp_path / "go"
    wait_then_write = inline(
        "sh",
        "-c",
        'i=0; while [ ! -e "$1" ] && [ $i -lt 600 ]; do sleep 0.05; i=$((i+1)); done; echo late',
        "sh",
        str(go),
    )
    assert run_palhm("run", "db", config=_config(tmp_path, root)).returncode == 0
    (first,) = copies(root)
    objects = [{"path": "data", "pipeline": [wait_then_write]}]
    conf = _config(tmp_path, root, objects=objects, **{"nb-copy-limit": 1})
    proc = subprocess.Popen(
        [PALHM, "-f", str(conf), "run", "db"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not any(p.name.startswith(".palhm-partial.") for p in root.iterdir()):
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
            time.sleep(0.02)
        moved = tmp_path / "moved"
        root.rename(moved)
        root.symlink_to(target)
        go.touch()
        _, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 0, stderr
    assert _tree(target) == before
    (made,) = copies(moved)  # rotated down to 1 there: the first one went
    assert made != first
    assert (moved / made / "data").read_text() == "late\n"


def test_a_leftover_holding_symlinks_is_removed_without_following_them(tmp_path):
    """A killed run's staging directory, tampered to hold symlinks to a
    directory and to a file elsewhere: the next run removes the links, never
    what they point to."""
    root = tmp_path / "root"
    outside = tmp_path / "outside"
    (outside / "keep").mkdir(parents=True)
    (outside / "keep" / "precious").write_text("precious")
    leftover = root / ".palhm-partial.2026-01-01T00:00:00+00:00.deadbeef"
    (leftover / "sub").mkdir(parents=True)
    (leftover / "sub" / "dirlink").symlink_to(outside)
    (leftover / "filelink").symlink_to(outside / "keep" / "precious")
    (leftover / "sub" / "object").write_text("partial")
    config = _config(tmp_path, root)
    result = run_palhm("-v", "run", "db", config=config)
    assert result.returncode == 0, result.stderr
    assert "leftover" in result.stderr
    assert not leftover.exists()
    assert _tree(outside) == {"keep": None, "keep/precious": b"precious"}
    assert len(copies(root)) == 1
