"""A complete third-party PALHM plugin in one module: what a newcomer copies.

- backend ``example-dir``: each copy is a directory ``DIR/PREFIX`` of plain
  files, written under ``DIR/.PREFIX.partial``, fsynced and renamed when
  complete, renamed back before it is deleted;
- task type ``touch``: create a file, or update its modification time;
- prefix generator ``epoch-us``: ``LABEL`` and the microseconds since the epoch,
  zero-padded so that the names sort oldest first;
- event hooks: every event is appended as one JSON line to the file named by
  ``$PALHM_EXAMPLE_EVENTS`` (nothing is written when it is unset).

Installed with ``[project.entry-points.palhm] example = "palhm_example"``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import threading
from datetime import datetime, timezone

from palhm_core.api import (
    MANIFEST_NAME,
    SUMS_NAME,
    Backend,
    BackendError,
    CopyInfo,
    CopyWriter,
    PlanStep,
    PrefixExists,
    Sink,
    Task,
    TaskError,
    hookimpl,
)

PARTIAL = ".partial"


@contextlib.contextmanager
def _errors(what: str):
    """Every storage error is a BackendError: one line, no traceback."""
    try:
        yield
    except OSError as e:
        raise BackendError(f"example-dir: cannot {what}: {e.strerror or e}") from None


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class FileSink(Sink):
    def __init__(self, path: str):
        with _errors(f"create {path}"):
            self.file = open(path, "xb")  # noqa: SIM115 - closed by close()/abort()

    def write(self, data: memoryview) -> None:
        with _errors(f"write {self.file.name}"):
            self.file.write(data)

    def close(self) -> None:
        with _errors(f"write {self.file.name}"):
            self.file.flush()
            os.fsync(self.file.fileno())
            self.file.close()

    def abort(self) -> None:
        self.file.close()


class ExampleCopy(CopyWriter):
    """``DIR/.PREFIX.partial`` until committed, then ``DIR/PREFIX``."""

    def __init__(self, dir: str, prefix: str):
        self.dir = dir
        self.staging = os.path.join(dir, f".{prefix}{PARTIAL}")
        self.final = os.path.join(dir, prefix)
        self.renamed = self.done = False
        self.lock = threading.Lock()  # sink() runs in several threads at once

    def sink(self, path: str, alloc_size: int | None) -> Sink:
        full = os.path.join(self.staging, *path.split("/"))
        with self.lock, _errors(f"create {os.path.dirname(full)}"):
            os.makedirs(os.path.dirname(full), exist_ok=True)
        return FileSink(full)

    def commit(self) -> None:
        with _errors(f"commit {self.final}"):
            for top, dirs, _ in os.walk(self.staging, topdown=False):
                for d in dirs:
                    _fsync_dir(os.path.join(top, d))
            _fsync_dir(self.staging)
            os.rename(self.staging, self.final)
            self.renamed = True
            _fsync_dir(self.dir)
        self.done = True

    def rollback(self) -> None:
        if not self.done:  # even after a commit() that failed late
            shutil.rmtree(self.final if self.renamed else self.staging, ignore_errors=True)
            self.done = True


class ExampleDirBackend(Backend):
    name = "example-dir"
    description = "Copies as plain directories under DIR (an example plugin)."
    schema = {
        "properties": {
            "dir": {"type": "string", "description": "The directory holding the copies."},
        },
        "required": ["dir"],
    }

    def __init__(self, params, place):
        super().__init__(params, place)
        self.dir = os.path.abspath(params["dir"])

    def describe(self) -> str:
        return f"example-dir:{self.dir}"

    def open(self) -> None:
        with _errors(f"create {self.dir}"):
            os.makedirs(self.dir, exist_ok=True)

    def clean_leftovers(self) -> list[str]:
        gone = []
        with _errors(f"clean {self.dir}"):
            for name in os.listdir(self.dir):
                if name.startswith(".") and name.endswith(PARTIAL):
                    shutil.rmtree(os.path.join(self.dir, name))
                    gone.append(name)
        return gone

    def begin(self, prefix: str) -> CopyWriter:
        if os.path.lexists(os.path.join(self.dir, prefix)):
            raise PrefixExists(f"{prefix} exists in {self.dir}")
        copy = ExampleCopy(self.dir, prefix)
        with _errors(f"create {copy.staging}"):
            os.mkdir(copy.staging)
        return copy

    def list_copies(self) -> list[CopyInfo]:
        # What the storage holds, measured: the core reads the manifests.
        # A copy's size is the bytes of its objects, PALHM's files left out.
        copies = []
        with _errors(f"list {self.dir}"):
            for name in os.listdir(self.dir):
                top = os.path.join(self.dir, name)
                if name.startswith(".") or os.path.islink(top) or not os.path.isdir(top):
                    continue
                files = {
                    os.path.relpath(os.path.join(d, f), top): os.lstat(os.path.join(d, f)).st_size
                    for d, _, names in os.walk(top)
                    for f in names
                }
                complete = files.pop(MANIFEST_NAME, None) is not None
                files.pop(SUMS_NAME, None)
                copies.append(CopyInfo(name, complete, sum(files.values()), len(files), files))
        return copies

    def delete_copies(self, prefixes, deleted) -> None:
        for prefix in prefixes:
            # Renamed first: an interrupted deletion leaves a leftover, not a copy.
            doomed = os.path.join(self.dir, f".{prefix}{PARTIAL}")
            with _errors(f"delete {prefix}"):
                os.rename(os.path.join(self.dir, prefix), doomed)
                _fsync_dir(self.dir)
                shutil.rmtree(doomed)
            deleted(prefix)

    def open_object(self, prefix: str, path: str):
        return open(os.path.join(self.dir, prefix, *path.split("/")), "rb")  # noqa: SIM115


class TouchTask(Task):
    name = "touch"
    description = "Create a file, or update its modification time (an example plugin)."
    schema = {
        "properties": {
            "path": {"type": "string", "description": "The file to touch."},
        },
        "required": ["path"],
    }

    def __init__(self, conf, place, ctx):
        super().__init__(conf, place, ctx)
        if not conf["path"]:
            raise (place / "path").error("empty path")
        self.path = conf["path"]

    def run(self, ctx):
        try:
            with open(self.path, "a"):
                os.utime(self.path)
        except OSError as e:
            raise TaskError(f"task {self.id!r}: cannot touch {self.path}: {e.strerror}") from None
        return None

    def plan(self):
        return [PlanStep("touch", f"touch {self.path}")]


class EpochMicroseconds:
    name = "epoch-us"
    description = "LABEL and the microseconds since the epoch, zero-padded (an example plugin)."
    schema = {
        "properties": {
            "label": {"type": "string", "description": 'Text before the number. Default "copy-".'},
        },
    }

    def __init__(self, params, place):
        self.label = params.get("label", "copy-")
        if "/" in self.label:
            raise (place / "label").error("a prefix must not contain '/'")

    def __call__(self, now: datetime) -> str:
        delta = now.astimezone(timezone.utc) - datetime(1970, 1, 1, tzinfo=timezone.utc)
        return f"{self.label}{delta // _MICROSECOND:020d}"


_MICROSECOND = datetime.resolution


@hookimpl
def palhm_backends():
    return [ExampleDirBackend]


@hookimpl
def palhm_task_types():
    return [TouchTask]


@hookimpl
def palhm_prefix_generators():
    return [EpochMicroseconds]


def _event(event: str, **fields) -> None:
    path = os.environ.get("PALHM_EXAMPLE_EVENTS")
    if path:
        with open(path, "a") as f:
            f.write(json.dumps({"event": event, **fields}) + "\n")


@hookimpl
def palhm_task_started(task):
    _event("task-started", task=task.id, type=task.name)


@hookimpl
def palhm_task_finished(task, report):
    _event("task-finished", task=task.id, prefix=(report or {}).get("prefix"))


@hookimpl
def palhm_task_failed(task, error):
    _event("task-failed", task=task.id, error=str(error))


@hookimpl
def palhm_copy_committed(task, prefix, manifest):
    _event("copy-committed", task=task.id, prefix=prefix, objects=len(manifest["objects"]))


@hookimpl
def palhm_copy_rotated(task, backend, copy):
    _event("copy-rotated", task=task.id, backend=backend.name, prefix=copy.prefix)
