"""The files that make a copy checkable: ``palhm-manifest.json`` (written last,
its presence marks the copy complete) and ``SHA256SUMS`` (for ``sha256sum -c``
run inside the copy, without PALHM)."""

from __future__ import annotations

import json
from typing import Any

MANIFEST_NAME = "palhm-manifest.json"
SUMS_NAME = "SHA256SUMS"
#: What a backend may keep in a copy being written (the aws-s3 backend's
#: marker of an incomplete copy): no object may be named so either.
PARTIAL_NAME = ".palhm-partial"
RESERVED_NAMES = frozenset({MANIFEST_NAME, SUMS_NAME, PARTIAL_NAME})
FORMAT = 1


def make_manifest(
    *, task: str, prefix: str, version: str, started: str, finished: str, objects: list[dict]
) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "palhm-version": version,
        "task": task,
        "prefix": prefix,
        "started": started,
        "finished": finished,
        "objects": objects,
        "size": sum(o["size"] for o in objects),
    }


def manifest_bytes(manifest: dict[str, Any]) -> bytes:
    return (json.dumps(manifest, indent=2, ensure_ascii=False) + "\n").encode()


def parse_manifest(data: bytes) -> dict[str, Any] | None:
    """The manifest, or None if ``data`` is not one PALHM wrote."""
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(doc, dict) or not isinstance(doc.get("objects"), list):
        return None
    return doc


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
