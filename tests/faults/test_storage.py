"""A full disk and unusable roots on localfs.

The full disk is a small tmpfs the test mounts (root only; skipped with the
reason otherwise). Unusable roots: not writable (an immutable directory, and
a run as an unprivileged user), on a read-only mount, under a missing or
non-directory parent, a symlink loop, a device. Each run fails with one clear
line and writes nothing anywhere: a sentinel tree around the root is compared
byte for byte before and after.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from conftest import PALHM, inline, write_config

from .util import (
    FIGURES,
    MANIFEST,
    count_tracebacks,
    localfs_fingerprint,
    one_error_line,
    palhm,
    read_only_bind,
    snapshot,
    tmpfs,
)

PREFIX = {"type": "iso8601", "timespec": "microseconds"}
MiB = 1 << 20


def task(root, objects, **params) -> dict:
    return {
        "id": "backup",
        "type": "backup",
        "backend": "localfs",
        "backend-param": {"root": str(root), "prefix": PREFIX, **params},
        "objects": objects,
    }


def conf_for(where: Path, root, objects, name="palhm.jsonc", **params) -> Path:
    return write_config(where, {"vl": 2, "tasks": [task(root, objects, **params)]}, name)


def small_objects() -> list[dict]:
    return [
        {"path": "etc.txt", "pipeline": [inline("seq", "1", "20000")]},
        {"path": "sub/host", "pipeline": [inline("uname", "-a")]},
    ]


def copies(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if (p / MANIFEST).is_file())


# -- a full disk ----------------------------------------------------------------------

#: How the copy that does not fit is made, and what its one line must name.
FULL = {
    # PALHM moves the bytes into the file (os.splice) and names its own
    # write error.
    "direct": (
        [{"path": "big/dump", "pipeline": [inline("head", "-c", str(8 * MiB), "/dev/zero")]}],
        ["big/dump", "No space left on device"],
    ),
    # The same with a preallocation smaller than the stream.
    "relayed": (
        [
            {
                "path": "big/dump",
                "alloc-size": 4096,
                "pipeline": [inline("head", "-c", str(8 * MiB), "/dev/zero")],
            }
        ],
        ["big/dump", "No space left on device"],
    ),
    # The preallocation itself does not fit.
    "preallocated": (
        [
            {
                "path": "big/dump",
                "alloc-size": 64 * MiB,
                "pipeline": [inline("head", "-c", "100", "/dev/zero")],
            }
        ],
        ["big/dump", "No space left on device"],
    ),
    # The objects fit, to the last page; PALHM's own files do not (sized
    # when the test runs, from what the filesystem has left).
    "manifest": (None, ["No space left on device"]),
    # Several objects at once, all failing with the disk full.
    "parallel": (
        [
            {"path": f"part{i}", "pipeline": [inline("head", "-c", str(MiB), "/dev/zero")]}
            for i in range(4)
        ],
        ["No space left on device"],
    ),
}


@pytest.mark.parametrize("how", list(FULL))
def test_disk_full(tmp_path, how):
    objects, names = FULL[how]
    mnt = tmp_path / "mnt"
    with tmpfs(mnt, "2m"):
        root = mnt / "root"
        good = conf_for(tmp_path, root, small_objects(), "good.jsonc")
        assert palhm("run", "backup", config=good).returncode == 0
        (kept,) = copies(root)
        fingerprint = localfs_fingerprint(root)
        before_copy = fingerprint(kept)
        before = snapshot(mnt)
        if objects is None:
            st = os.statvfs(mnt)
            fill = (st.f_bavail - 1) * st.f_frsize
            objects = [
                {"path": "fills-it", "pipeline": [inline("head", "-c", str(fill), "/dev/zero")]},
                {"path": "fits", "pipeline": [inline("head", "-c", "1", "/dev/zero")]},
            ]
        conf = conf_for(tmp_path, root, objects, "full.jsonc")
        result = palhm("run", "backup", config=conf)
        FIGURES.trials += 1
        assert result.returncode == 1, result.stderr
        line = one_error_line(result.stderr)
        for name in names:
            assert name in line, line
        assert str(root) in line, line
        # Older copies intact, nothing of the failed copy left.
        FIGURES.copies_checked += 1
        if fingerprint(kept) != before_copy:
            FIGURES.copies_lost += 1
        assert fingerprint(kept) == before_copy
        assert snapshot(mnt) == before
        # Once there is room again, the next run works.
        again = palhm("run", "backup", config=good)
        assert again.returncode == 0, again.stderr
        assert len(copies(root)) == 2


def test_disk_full_of_inodes(tmp_path):
    """No inode left for the staging directory or an object's directory."""
    mnt = tmp_path / "mnt"
    with tmpfs(mnt, "4m,nr_inodes=12"):
        root = mnt / "root"
        good = conf_for(tmp_path, root, small_objects(), "good.jsonc")
        assert palhm("run", "backup", config=good).returncode == 0
        before = snapshot(mnt)
        many = [{"path": f"d{i}/x", "pipeline": [inline("echo", str(i))]} for i in range(12)]
        conf = conf_for(tmp_path, root, many, "many.jsonc")
        result = palhm("run", "backup", config=conf)
        FIGURES.trials += 1
        assert result.returncode == 1, result.stderr
        line = one_error_line(result.stderr)
        assert str(root) in line and "No space left on device" in line, line
        assert snapshot(mnt) == before


# -- unusable roots ---------------------------------------------------------------------


def sentinel_tree(top: Path) -> Path:
    """Files around where the root goes, to prove nothing is written
    elsewhere."""
    for d in ("before", "after", "nested/deeper"):
        (top / d).mkdir(parents=True, exist_ok=True)
        (top / d / "sentinel").write_text(f"{d}\n")
    return top


def assert_refused(result, *words) -> str:
    FIGURES.trials += 1
    assert result.returncode not in (0, 75) and result.returncode < 128, result
    line = one_error_line(result.stderr)
    for w in words:
        assert w in line, line
    return line


def run_against(tmp_path: Path, root, **kw):
    conf = conf_for(tmp_path / "etc", root, small_objects())
    return palhm("run", "backup", config=conf, **kw)


def test_root_not_writable_immutable(tmp_path):
    """chattr +i: even root cannot create the staging directory."""
    top = sentinel_tree(tmp_path / "top")
    root = top / "root"
    root.mkdir()
    done = subprocess.run(["chattr", "+i", str(root)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"chattr +i refused here: {done.stderr.strip()}")
    try:
        before = snapshot(top)
        result = run_against(tmp_path, root)
        assert_refused(result, str(root), "Operation not permitted")
        assert snapshot(top) == before
    finally:
        subprocess.run(["chattr", "-i", str(root)], check=True)


def test_root_not_writable_for_an_unprivileged_user(tmp_path):
    """A root owned by root, mode 755, and PALHM run as nobody."""
    import pwd

    setpriv = shutil.which("setpriv")
    if os.geteuid() != 0 or setpriv is None:
        pytest.skip("needs root and setpriv to run palhm as nobody")
    try:
        nobody = pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("no user nobody to run palhm as")
    # tmp_path is private to root: a world-readable place of its own.
    top = Path(tempfile.mkdtemp(prefix="palhm-faults-"))
    try:
        top.chmod(0o755)
        sentinel_tree(top)
        root = top / "root"
        root.mkdir(mode=0o755)
        locks = top / "locks"
        locks.mkdir(mode=0o700)
        os.chown(locks, nobody.pw_uid, nobody.pw_gid)
        conf = conf_for(top, root, small_objects())
        conf.chmod(0o644)
        before = snapshot(top, skip=locks)
        ids = [f"--reuid={nobody.pw_uid}", f"--regid={nobody.pw_gid}", "--clear-groups"]
        argv = [setpriv, *ids, PALHM]
        argv += ["-f", str(conf), "run", "--lock-dir", str(locks), "backup"]
        env = {k: v for k, v in os.environ.items() if k != "PALHM_CONFIG"}
        env["HOME"] = str(top)
        result = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=120)
        FIGURES.palhm_runs += 1
        assert not count_tracebacks(result.stderr), result.stderr
        if not result.stderr.startswith("palhm: "):
            pytest.skip(f"palhm cannot run as nobody here: {result.stderr.strip()}")
        assert_refused(result, str(root), "Permission denied")
        assert snapshot(top, skip=locks) == before
    finally:
        shutil.rmtree(top, ignore_errors=True)


@pytest.mark.parametrize("exists", [True, False])
def test_root_on_a_read_only_bind_mount(tmp_path, exists):
    top = sentinel_tree(tmp_path / "top")
    ro = top / "ro"
    ro.mkdir()
    (ro / "keep").write_text("keep\n")
    root = ro / "root"
    if exists:
        root.mkdir()
    with read_only_bind(ro):
        before = snapshot(top)
        result = run_against(tmp_path, root)
        assert_refused(result, str(root), "Read-only file system")
        assert snapshot(top) == before


def test_root_on_a_read_only_tmpfs(tmp_path):
    top = sentinel_tree(tmp_path / "top")
    mnt = top / "mnt"
    with tmpfs(mnt, "1m", ro=True):
        before = snapshot(top)
        result = run_against(tmp_path, mnt)
        assert_refused(result, str(mnt), "Read-only file system")
        assert snapshot(top) == before


@pytest.mark.parametrize(
    "kind",
    ["missing-grandparent", "under-a-file", "a-file", "symlink-loop", "dangling-symlink", "device"],
)
def test_unusable_root_paths(tmp_path, kind):
    top = sentinel_tree(tmp_path / "top")
    afile = top / "afile"
    afile.write_text("not a directory\n")
    if kind == "missing-grandparent":
        root = top / "no" / "such" / "root"
    elif kind == "under-a-file":
        root = afile / "root"
    elif kind == "a-file":
        root = afile
    elif kind == "symlink-loop":
        root = top / "loop"
        root.symlink_to(root)
    elif kind == "dangling-symlink":
        root = top / "dangling"
        root.symlink_to(top / "nowhere")
    else:
        root = Path("/dev/null")
    before = snapshot(top)
    result = run_against(tmp_path, root)
    assert_refused(result, str(root))
    assert snapshot(top) == before
