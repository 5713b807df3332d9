"""Reading copies back: find them, stream their objects, check them against
the manifest. Used by ``palhm backups list|verify|cat``; memory stays bounded
by one buffer whatever the object's size."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass

from palhm_core.backend import Backend, CopyInfo
from palhm_core.errors import PalhmError
from palhm_core.manifest import MANIFEST_NAME

CHUNK = 1 << 20


@dataclass
class Problem:
    prefix: str
    path: str
    what: str

    def __str__(self) -> str:
        return f"{self.prefix}/{self.path}: {self.what}"


def pick_copies(
    copies: list[CopyInfo],
    backend: Backend,
    prefix: str | None,
    everything: bool,
    *,
    damaged: bool = False,
) -> list[CopyInfo]:
    """The copies a command names among ``copies`` (as
    :func:`palhm_core.copies.judge_copies` gives them): every complete or
    damaged copy (``everything``), one PREFIX, or the newest complete copy
    that is not future-dated (``None`` or ``latest``). With ``damaged``,
    the newest may also be a damaged copy whose manifest is the task's:
    verify reports it rather than pass over it."""
    if everything:
        return [c for c in copies if c.state in ("complete", "damaged")]
    if prefix is None or prefix == "latest":
        wanted = {"complete", "damaged"} if damaged else {"complete"}
        newest = [c for c in copies if c.state in wanted and c.manifest and not c.future]
        if not newest:
            raise PalhmError(f"no complete copy of this task on {backend.describe()}")
        return newest[-1:]
    for c in copies:
        if c.prefix == prefix:
            if c.state == "incomplete":
                raise PalhmError(f"copy {prefix!r} on {backend.describe()} is incomplete")
            if c.state == "foreign":
                raise PalhmError(
                    f"copy {prefix!r} on {backend.describe()} is not this task's: {c.why}"
                )
            return [c]
    raise PalhmError(f"no copy {prefix!r} on {backend.describe()}")


def stream(backend: Backend, prefix: str, path: str, out: Callable[[bytes], object] | None):
    """Read one object through, passing each chunk to ``out``; its size
    and SHA-256."""
    h = hashlib.sha256()
    size = 0
    with backend.open_object(prefix, path) as f:
        while True:
            chunk = f.read(CHUNK)
            if not chunk:
                break
            h.update(chunk)
            size += len(chunk)
            if out is not None:
                out(chunk)
    return size, h.hexdigest()


def verify_copy(backend: Backend, copy: CopyInfo, deep=None) -> tuple[int, list[Problem]]:
    """Check every object of a complete copy; the number checked and the
    problems. A damaged copy whose manifest is unusable is one problem, its
    reason; one whose manifest is this task's is checked object by object,
    and is a problem even if every object it names is whole. ``deep(prefix,
    entry)``, when given, checks each object instead (``--deep``: its
    ``check`` pipeline too) and returns its problem or None."""
    if copy.manifest is None:
        why = copy.why.removeprefix(f"{MANIFEST_NAME}: ")
        return 0, [Problem(copy.prefix, MANIFEST_NAME, f"damaged: {why}")]
    problems = []
    for entry in copy.manifest["objects"]:
        path = entry["path"]
        if deep is not None:
            problem = deep(copy.prefix, entry)
            if problem:
                problems.append(Problem(copy.prefix, path, problem))
            continue
        try:
            size, digest = stream(backend, copy.prefix, path, None)
        except FileNotFoundError:
            problems.append(Problem(copy.prefix, path, "missing"))
            continue
        if size != entry["size"]:
            problems.append(
                Problem(copy.prefix, path, f"size {size}, manifest says {entry['size']}")
            )
        elif digest != entry["sha256"]:
            problems.append(
                Problem(
                    copy.prefix,
                    path,
                    f"SHA-256 mismatch: {digest}, manifest says {entry['sha256']}",
                )
            )
    if copy.state == "damaged" and not problems:
        problems.append(Problem(copy.prefix, MANIFEST_NAME, f"damaged: {copy.why}"))
    return len(copy.manifest["objects"]), problems
