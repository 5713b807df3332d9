"""The files that make a copy checkable: ``palhm-manifest.json`` (written last,
its presence marks the copy complete) and ``SHA256SUMS`` (for ``sha256sum -c``
run inside the copy, without PALHM).

A manifest names the task that made the copy (``task``) and the host it ran on
(``host``, the node name): a copy belongs to the task of that name on that
host, and to no other. Manifests written before ``host`` was recorded belong
to the task they name on any host."""

from __future__ import annotations

import json
import os
import re
from datetime import datetime
from typing import Any

MANIFEST_NAME = "palhm-manifest.json"
SUMS_NAME = "SHA256SUMS"
#: PALHM's own files in every copy: no object may be named so (a backend
#: adds its own names with ``Backend.reserved_names``).
RESERVED_NAMES = frozenset({MANIFEST_NAME, SUMS_NAME})
FORMAT = 1
#: A manifest larger than this is not read (about 100,000 objects).
MANIFEST_MAX_BYTES = 16 << 20
_SHA256 = re.compile(r"[0-9a-f]{64}")


def this_host() -> str:
    """The name the manifests of this host record."""
    return os.uname().nodename


def make_manifest(
    *,
    task: str,
    prefix: str,
    version: str,
    started: str,
    finished: str,
    objects: list[dict],
    host: str | None = None,
) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "palhm-version": version,
        "task": task,
        "host": this_host() if host is None else host,
        "prefix": prefix,
        "started": started,
        "finished": finished,
        "objects": objects,
        "size": sum(o["size"] for o in objects),
    }


def manifest_bytes(manifest: dict[str, Any]) -> bytes:
    return (json.dumps(manifest, indent=2, ensure_ascii=False) + "\n").encode()


def check_manifest(data: bytes) -> tuple[dict[str, Any] | None, str]:
    """Parse and check a manifest: ``(manifest, "")``, or ``(None, why)``
    when it is not a well-formed PALHM manifest. Checked: JSON object,
    ``task`` and ``prefix`` strings, ``finished`` an ISO 8601 time with a
    zone, ``objects`` a list of ``{path, size, sha256}`` with relative paths,
    whole non-negative sizes and hex digests, and ``size`` their sum."""
    from palhm_core.config.place import Place
    from palhm_core.errors import ConfigError
    from palhm_core.tasks.objects import check_path

    if len(data) > MANIFEST_MAX_BYTES:
        return None, f"larger than {MANIFEST_MAX_BYTES} bytes"
    try:
        doc = json.loads(data, parse_constant=_no_constant)
    except (ValueError, UnicodeDecodeError, RecursionError) as e:
        return None, f"not JSON ({str(e).splitlines()[0][:80]})"
    if not isinstance(doc, dict):
        return None, "not a JSON object"
    for key in ("task", "prefix"):
        if not isinstance(doc.get(key), str):
            return None, f"{key!r} is not a string"
    if "host" in doc and not isinstance(doc["host"], str):
        return None, "'host' is not a string"
    if finished_time(doc) is None:
        return None, "'finished' is not a time with a zone"
    objects = doc.get("objects")
    if not isinstance(objects, list):
        return None, "'objects' is not a list"
    total = 0
    paths = set()
    for i, entry in enumerate(objects):
        if not isinstance(entry, dict):
            return None, f"objects[{i}] is not an object"
        path = entry.get("path")
        try:
            check_path(path, Place(MANIFEST_NAME, ("objects", i, "path")))
        except (ConfigError, TypeError, AttributeError):
            return None, f"objects[{i}].path is not a path inside the copy"
        if path in paths:
            return None, f"objects[{i}].path {path!r} is listed twice"
        paths.add(path)
        if not _whole(entry.get("size")):
            return None, f"objects[{i}].size is not a whole number of bytes"
        if not isinstance(entry.get("sha256"), str) or not _SHA256.fullmatch(entry["sha256"]):
            return None, f"objects[{i}].sha256 is not a SHA-256 digest"
        total += entry["size"]
    if not _whole(doc.get("size")) or doc["size"] != total:
        return None, "'size' is not the sum of its objects' sizes"
    return doc, ""


def finished_time(doc: dict[str, Any]) -> datetime | None:
    """When the copy was finished, by the manifest; None if it does not say
    so with a zone."""
    value = doc.get("finished")
    if not isinstance(value, str):
        return None
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        return None
    return when if when.tzinfo is not None else None


def _whole(value: Any) -> bool:
    return type(value) is int and value >= 0


def _no_constant(name: str):
    raise ValueError(f"{name} is not a number")


def sums_bytes(objects: list[dict]) -> bytes:
    """``sha256sum`` output for the objects, with its escaping of ``\\`` and
    newlines in names."""
    lines = []
    for o in objects:
        path = o["path"]
        if "\\" in path or "\n" in path or "\r" in path:
            esc = path.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r")
            lines.append(f"\\{o['sha256']}  {esc}\n")
        else:
            lines.append(f"{o['sha256']}  {path}\n")
    return "".join(lines).encode("utf-8", "surrogateescape")
