"""A complete third-party PALHM plugin in one module: what a newcomer copies.

- backend ``example-dir``: each copy is a directory ``DIR/PREFIX`` of plain
  files, written under ``DIR/.PREFIX.partial`` and renamed when complete;
- task type ``touch``: create a file, or update its modification time;
- prefix generator ``epoch-us``: ``LABEL`` and the microseconds since the epoch,
  zero-padded so that the names sort oldest first;
- event hooks: every event is appended as one JSON line to the file named by
  ``$PALHM_EXAMPLE_EVENTS`` (nothing is written when it is unset).

Installed with ``[project.entry-points.palhm] example = "palhm_example"``.
"""

from __future__ import annotations

import json
import os
import shutil
from datetime import datetime, timezone

from palhm_core import Backend, BackendError, CopyInfo, PrefixExists, Sink, TaskError, hookimpl
from palhm_core.manifest import MANIFEST_NAME, SUMS_NAME
from palhm_core.task import Task

PARTIAL = ".partial"


class FileSink(Sink):
    def __init__(self, path: str):
        self.file = open(path, "xb")  # noqa: SIM115 - closed by close()/abort()

    def write(self, data: memoryview) -> None:
        self.file.write(data)

    def close(self) -> None:
        self.file.close()

    def abort(self) -> None:
        self.file.close()


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
        self.prefix: str | None = None

    def describe(self) -> str:
        return f"example-dir:{self.dir}"

    def open(self) -> None:
        try:
            os.makedirs(self.dir, exist_ok=True)
        except OSError as e:
            raise BackendError(f"cannot create {self.dir}: {e.strerror}") from None

    def _staging(self) -> str:
        return os.path.join(self.dir, f".{self.prefix}{PARTIAL}")

    def clean_leftovers(self) -> list[str]:
        gone = []
        for name in os.listdir(self.dir):
            if name.startswith(".") and name.endswith(PARTIAL):
                shutil.rmtree(os.path.join(self.dir, name))
                gone.append(name)
        return gone

    def begin(self, prefix: str) -> None:
        if os.path.exists(os.path.join(self.dir, prefix)):
            raise PrefixExists(f"{prefix} exists in {self.dir}")
        self.prefix = prefix
        os.mkdir(self._staging())

    def sink(self, path: str, alloc_size: int | None) -> Sink:
        full = os.path.join(self._staging(), path)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        return FileSink(full)

    def commit(self) -> None:
        os.rename(self._staging(), os.path.join(self.dir, self.prefix))

    def rollback(self) -> None:
        if self.prefix is not None:
            shutil.rmtree(self._staging(), ignore_errors=True)

    def list_copies(self) -> list[CopyInfo]:
        # What the storage holds, measured: the core reads the manifests.
        copies = []
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

    def delete_copy(self, prefix: str) -> None:
        shutil.rmtree(os.path.join(self.dir, prefix))

    def open_object(self, prefix: str, path: str):
        return open(os.path.join(self.dir, prefix, path), "rb")  # noqa: SIM115


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
        return [f"touch {self.path}"]


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
