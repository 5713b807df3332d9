"""Reading copies back: find them, stream their objects, check them against
the manifest. Used by ``palhm backups list|verify|cat``; memory stays bounded
by one buffer whatever the object's size."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass

from palhm_core.backend import Backend, CopyInfo
from palhm_core.config.place import Place
from palhm_core.errors import ConfigError, PalhmError
from palhm_core.manifest import MANIFEST_NAME, parse_manifest
from palhm_core.tasks.objects import check_path

CHUNK = 1 << 20


@dataclass
class Problem:
    prefix: str
    path: str
    what: str

    def __str__(self) -> str:
        return f"{self.prefix}/{self.path}: {self.what}"


def sorted_copies(backend: Backend) -> list[CopyInfo]:
    return sorted(backend.list_copies(), key=lambda c: c.prefix)


def pick_copies(backend: Backend, prefix: str | None, everything: bool) -> list[CopyInfo]:
    """The copies a command names: all complete ones, one PREFIX, or the
    newest complete one (``None`` or ``latest``)."""
    copies = sorted_copies(backend)
    complete = [c for c in copies if c.complete]
    if everything:
        return complete
    if prefix is None or prefix == "latest":
        if not complete:
            raise PalhmError(f"no complete copy on {backend.describe()}")
        return [complete[-1]]
    for c in copies:
        if c.prefix == prefix:
            if not c.complete:
                raise PalhmError(f"copy {prefix!r} on {backend.describe()} is incomplete")
            return [c]
    raise PalhmError(f"no copy {prefix!r} on {backend.describe()}")


def read_manifest(backend: Backend, prefix: str) -> dict:
    try:
        with backend.open_object(prefix, MANIFEST_NAME) as f:
            data = f.read()
    except FileNotFoundError:
        raise PalhmError(f"copy {prefix!r} has no manifest: it is incomplete") from None
    manifest = parse_manifest(data)
    if manifest is None:
        raise PalhmError(f"copy {prefix!r}: {MANIFEST_NAME} is not a PALHM manifest")
    for i, entry in enumerate(manifest["objects"]):
        try:
            check_path(entry["path"], Place(f"{prefix}/{MANIFEST_NAME}", ("objects", i)))
        except (ConfigError, KeyError, TypeError):
            raise PalhmError(f"copy {prefix!r}: manifest entry {i} has a bad path") from None
    return manifest


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


def verify_copy(backend: Backend, prefix: str) -> tuple[int, list[Problem]]:
    """Check every object of a copy; the number checked and the problems."""
    manifest = read_manifest(backend, prefix)
    problems = []
    for entry in manifest["objects"]:
        path = entry["path"]
        try:
            size, digest = stream(backend, prefix, path, None)
        except FileNotFoundError:
            problems.append(Problem(prefix, path, "missing"))
            continue
        if size != entry.get("size"):
            problems.append(
                Problem(prefix, path, f"size {size}, manifest says {entry.get('size')}")
            )
        elif digest != entry.get("sha256"):
            problems.append(
                Problem(
                    prefix, path, f"SHA-256 mismatch: {digest}, manifest says {entry.get('sha256')}"
                )
            )
    return len(manifest["objects"]), problems
