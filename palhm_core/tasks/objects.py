"""Backup objects and object groups as configured: paths that cannot escape
the copy, and a group DAG without unknown ids or cycles."""

from __future__ import annotations

from dataclasses import dataclass, field

from palhm_core.config.place import Place
from palhm_core.execs import Exec
from palhm_core.manifest import RESERVED_NAMES

DEFAULT_GROUP = "default"
MAX_COMPONENT_BYTES = 255


@dataclass
class BackupObject:
    path: str
    group: str
    execs: list[Exec]
    alloc_size: int | None
    place: Place
    #: Commands that read the object on stdin to restore it (``palhm restore``).
    restore: list[Exec] = field(default_factory=list)
    #: Commands that read the object on stdin and exit 0 only if it can be
    #: restored (``palhm backups verify --deep``).
    check: list[Exec] = field(default_factory=list)


def check_path(path: str, place: Place, reserved: frozenset[str] = frozenset()) -> str:
    """A relative ``/``-separated path that stays inside ROOT/PREFIX, whose
    first component is none of PALHM's own files nor of ``reserved`` (the
    backend's :attr:`~palhm_core.backend.Backend.reserved_names`)."""
    if not path:
        raise place.error("empty path")
    bad = next((c for c in path if ord(c) < 0x20 or ord(c) == 0x7F), None)
    if bad is not None:
        raise place.error(f"control character {bad!r} in path {path!r}")
    if path.startswith("/"):
        raise place.error(f"absolute path {path!r}: paths are relative to ROOT/PREFIX")
    parts = path.split("/")
    for part in parts:
        if part == "":
            raise place.error(f"empty path component in {path!r}")
        if part in (".", ".."):
            raise place.error(f"{part!r} in path {path!r}: objects stay inside ROOT/PREFIX")
        try:
            encoded = part.encode("utf-8")
        except UnicodeEncodeError:
            raise place.error(f"path {path!r} is not valid unicode") from None
        if len(encoded) > MAX_COMPONENT_BYTES:
            raise place.error(f"path component longer than {MAX_COMPONENT_BYTES} bytes")
    if parts[0] in RESERVED_NAMES:
        raise place.error(f"{parts[0]!r} is reserved for PALHM's own files")
    if parts[0] in reserved:
        raise place.error(f"{parts[0]!r} is reserved by the backend")
    return path


def check_paths_distinct(objects: list[BackupObject]) -> None:
    """No two objects share a path, and no path is a directory of another."""
    seen: dict[str, BackupObject] = {}
    for obj in objects:
        if obj.path in seen:
            raise (obj.place / "path").error(
                f"path {obj.path!r} is already used at {seen[obj.path].place}"
            )
        seen[obj.path] = obj
    for obj in objects:
        parts = obj.path.split("/")
        for n in range(1, len(parts)):
            parent = "/".join(parts[:n])
            if parent in seen:
                raise (obj.place / "path").error(
                    f"path {obj.path!r} needs {parent!r} as a directory, but it is "
                    f"the object at {seen[parent].place}"
                )


def build_groups(conf: list[dict], place: Place) -> dict[str, list[str]]:
    """group id -> ids it depends on; forward references allowed."""
    groups: dict[str, list[str]] = {}
    where: dict[str, Place] = {}
    for i, g in enumerate(conf):
        gid = g["id"]
        if gid in groups:
            raise (place / i / "id").error(f"duplicate group id {gid!r}, first at {where[gid]}")
        groups[gid] = list(g.get("depends", []))
        where[gid] = place / i
    groups.setdefault(DEFAULT_GROUP, [])
    for gid, deps in groups.items():
        for j, dep in enumerate(deps):
            if dep not in groups:
                known = ", ".join(groups)
                raise (where[gid] / "depends" / j).error(f"unknown group {dep!r}; groups: {known}")
    state: dict[str, int] = {}

    def visit(gid: str, path: list[str]) -> None:
        state[gid] = 1
        for j, dep in enumerate(groups[gid]):
            if state.get(dep) == 1:
                cycle = " -> ".join([*path[path.index(dep) :], dep])
                raise (where[gid] / "depends" / j).error(f"group dependency cycle: {cycle}")
            if state.get(dep) != 2:
                visit(dep, [*path, dep])
        state[gid] = 2

    for gid in groups:
        if gid not in state:
            visit(gid, [gid])
    return groups


def build_order(groups: dict[str, list[str]]) -> list[str]:
    """Groups in an order where each comes after its dependencies."""
    order: list[str] = []
    placed: set[str] = set()
    while len(order) < len(groups):
        for gid, deps in groups.items():
            if gid not in placed and all(d in placed for d in deps):
                order.append(gid)
                placed.add(gid)
    return order
