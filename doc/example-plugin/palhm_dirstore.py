"""palhm-dirstore: a PALHM backend that keeps each copy as a plain directory.

``DIR/PREFIX/PATH`` for every object. A copy is written under the hidden name
``DIR/.partial-PREFIX``, fsynced and renamed to ``DIR/PREFIX`` when complete,
so a half-made copy never looks like one; rotation renames a copy back to a
staging name before removing it. Every storage error is a ``BackendError``.
This is the whole plugin: the entry point in pyproject.toml names this
module, and ``palhm_backends`` returns the class.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import threading

from palhm_core.api import (
    MANIFEST_NAME,
    SUMS_NAME,
    Backend,
    BackendError,
    CopyInfo,
    CopyWriter,
    PrefixExists,
    Sink,
    hookimpl,
)

STAGING = ".partial-"


@contextlib.contextmanager
def os_errors(what: str):
    """An OSError becomes a BackendError: one line for the administrator
    instead of a traceback."""
    try:
        yield
    except OSError as e:
        raise BackendError(f"dirstore: cannot {what}: {e.strerror or e}") from None


def fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def measure(copy_dir: str) -> dict[str, int]:
    """The size of every regular file of a copy, by ``/``-separated path
    (symlinks are not followed, nor counted)."""
    files = {}
    for top, _, names in os.walk(copy_dir):
        for name in names:
            path = os.path.join(top, name)
            if not os.path.islink(path) and os.path.isfile(path):
                files[os.path.relpath(path, copy_dir)] = os.path.getsize(path)
    return files


class FileSink(Sink):
    """One object: PALHM calls write() with the pipeline's output, then
    close() on success or abort() on failure."""

    def __init__(self, path: str):
        with os_errors(f"create {path}"):
            self.file = open(path, "xb")  # noqa: SIM115 - closed by close()/abort()

    def write(self, data: memoryview) -> None:
        with os_errors(f"write {self.file.name}"):
            self.file.write(data)

    def close(self) -> None:
        with os_errors(f"write {self.file.name}"):
            self.file.flush()
            os.fsync(self.file.fileno())
            self.file.close()

    def abort(self) -> None:
        self.file.close()


class DirStoreCopy(CopyWriter):
    """The copy being made: all its state lives here, not in the backend."""

    def __init__(self, dir: str, prefix: str):
        self.dir = dir
        self.staging = os.path.join(dir, STAGING + prefix)
        self.final = os.path.join(dir, prefix)
        self.renamed = self.done = False
        self.lock = threading.Lock()

    def sink(self, path: str, alloc_size: int | None) -> Sink:
        # `path` is checked by the core: relative, no "..", no empty parts.
        # Called from several threads at once, hence the lock.
        full = os.path.join(self.staging, *path.split("/"))
        with self.lock, os_errors(f"create {os.path.dirname(full)}"):
            os.makedirs(os.path.dirname(full), exist_ok=True)
        return FileSink(full)

    def commit(self) -> None:
        # Every object and the manifest are written: one rename makes it all
        # visible, after everything is on disk.
        with os_errors(f"commit {self.final}"):
            for top, dirs, _ in os.walk(self.staging, topdown=False):
                for d in dirs:
                    fsync_dir(os.path.join(top, d))
            fsync_dir(self.staging)
            os.rename(self.staging, self.final)
            self.renamed = True
            fsync_dir(self.dir)
        self.done = True

    def rollback(self) -> None:
        # Any point after begin(), even after a commit() that failed late;
        # nothing once commit() returned.
        if not self.done:
            shutil.rmtree(self.final if self.renamed else self.staging, ignore_errors=True)
            self.done = True


class DirStoreBackend(Backend):
    name = "dirstore"
    description = "Copies as plain directories under DIR."
    schema = {
        "properties": {
            "dir": {
                "type": "string",
                "description": "The directory holding the copies; it must exist.",
            },
        },
        "required": ["dir"],
    }

    def __init__(self, params, place):
        # Check the parameters, touch nothing: this runs for `palhm config check`.
        super().__init__(params, place)
        if not os.path.isabs(params["dir"]):
            raise (place / "dir").error("must be an absolute path")
        self.dir = params["dir"]

    def describe(self) -> str:
        return f"dirstore:{self.dir}"

    def open(self) -> None:
        if not os.path.isdir(self.dir):
            raise BackendError(f"dirstore: {self.dir} is not a directory")

    def clean_leftovers(self) -> list[str]:
        # Runs of one task never overlap, and a DIR belongs to one task, so
        # any staging directory found here was left by a run that died.
        removed = []
        with os_errors(f"list {self.dir}"):
            for name in os.listdir(self.dir):
                if name.startswith(STAGING):
                    shutil.rmtree(os.path.join(self.dir, name))
                    removed.append(os.path.join(self.dir, name))
        return removed

    def begin(self, prefix: str) -> CopyWriter:
        copy = DirStoreCopy(self.dir, prefix)
        if os.path.lexists(copy.final):
            raise PrefixExists(f"{copy.final} exists")
        with os_errors(f"create {copy.staging}"):
            os.mkdir(copy.staging)
        return copy

    def list_copies(self) -> list[CopyInfo]:
        # Report what the storage holds, with the sizes it reports: the core
        # reads each manifest, decides whose copy it is and whether the
        # manifest tells the truth, and rotates only the task's own copies.
        # A copy's size is the bytes of its objects: PALHM's files are left out.
        copies = []
        with os_errors(f"list {self.dir}"):
            for entry in os.scandir(self.dir):
                if entry.name.startswith(".") or not entry.is_dir(follow_symlinks=False):
                    continue  # staging directories, and anything PALHM did not make
                files = measure(entry.path)
                complete = files.pop(MANIFEST_NAME, None) is not None
                files.pop(SUMS_NAME, None)  # PALHM's own files are not objects
                copies.append(
                    CopyInfo(entry.name, complete, sum(files.values()), len(files), files)
                )
        return copies

    def delete_copies(self, prefixes: list[str], deleted) -> None:
        # Rename first, so an interrupted deletion leaves a leftover, not a copy.
        for prefix in prefixes:
            doomed = os.path.join(self.dir, STAGING + prefix)
            with os_errors(f"delete {prefix}"):
                os.rename(os.path.join(self.dir, prefix), doomed)
                fsync_dir(self.dir)
                shutil.rmtree(doomed)
            deleted(prefix)

    def open_object(self, prefix: str, path: str):
        # A plain binary file: reads are bounded by what the caller asks for.
        # A missing object raises FileNotFoundError, as the contract wants.
        return open(os.path.join(self.dir, prefix, *path.split("/")), "rb")  # noqa: SIM115


@hookimpl
def palhm_backends():
    return [DirStoreBackend]
