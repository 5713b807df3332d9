"""What a plugin provides, known without importing it.

A plugin that loaded and passed its checks (:mod:`palhm_core.plugin_checks`)
is summed up: the name, description and schema of each class it registers,
and the hooks it implements. The summary is kept in PALHM's cache
(:mod:`palhm_core.cache`) under a fingerprint of everything it could depend
on; in a later run with the same fingerprint, a plugin that implements only
registry hooks (it provides classes, and listens to no event) is not
imported: the config schema is built from its summary, and its module is
imported when a config names one of its classes (:mod:`palhm_core.plugins`).

The fingerprint covers the entry point, the Python version, every installed
distribution's name and version (the metadata directories on
``sys.path``), and the name, size and modification time of every file of
PALHM's own package and of the package the entry point names (editable
installs included). So installing, upgrading or removing anything, or
editing the plugin or PALHM, makes a new fingerprint. What it does not see is
a plugin whose classes depend on files outside its package other than
installed distributions (a configuration file it reads at import): such a
plugin must implement an event hook or ``palhm_configure``, which keeps it
imported at every start.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import os
import sys
from typing import Any

from palhm_core import entrypoints

#: The registry hooks: a plugin implementing only these may stay unimported.
REGISTRY_HOOKS = frozenset(
    {
        "palhm_backends",
        "palhm_task_types",
        "palhm_prefix_generators",
        "palhm_builtins",
        "palhm_notifiers",
        "palhm_retention_policies",
    }
)


def fingerprint(ep: entrypoints.EntryPoint) -> str | None:
    """The fingerprint of the plugin an entry point names, None if its
    package cannot be found without importing it."""
    top = ep.value.partition(":")[0].strip().split(".")[0]
    try:
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    places = list(spec.submodule_search_locations or ()) or [spec.origin]
    if not all(isinstance(p, str) and os.path.exists(p) for p in places):
        return None
    h = hashlib.sha256()
    for part in (ep.name, ep.value, ep.distribution, ep.version, sys.version):
        h.update(f"{part}\0".encode())
    h.update(entrypoints.installed().encode())
    h.update(_core_files().encode())
    for place in places:
        h.update(_files(place).encode())
    return h.hexdigest()


def summarize(classes: dict[str, list[type]], hooks: list[str]) -> dict[str, Any] | None:
    """The summary of a plugin: its classes by kind and the hooks it
    implements, as JSON gives it back (None if it is not plain JSON)."""
    summary = {
        "hooks": sorted(hooks),
        "classes": {
            kind: [
                {"name": c.name, "description": c.description, "schema": c.schema} for c in given
            ]
            for kind, given in classes.items()
        },
    }
    try:
        return json.loads(json.dumps(summary, allow_nan=False))
    except (TypeError, ValueError, RecursionError):
        return None


def deferrable(summary: dict[str, Any]) -> bool:
    """Whether the plugin summed up may stay unimported until a config
    names one of its classes: it implements registry hooks only."""
    hooks = summary.get("hooks")
    return isinstance(hooks, list) and set(hooks) <= REGISTRY_HOOKS


@functools.cache
def _core_files() -> str:
    return _files(os.path.dirname(os.path.abspath(__file__)))


def _files(top: str) -> str:
    """Name, size and modification time of every file under ``top``
    (``__pycache__`` left out), or of ``top`` itself if it is a file."""
    found = []
    pending = [top]
    while pending:
        path = pending.pop()
        try:
            st = os.stat(path)
            if not os.path.isdir(path):
                found.append(f"{path}:{st.st_size}:{st.st_mtime_ns}")
                continue
            with os.scandir(path) as it:
                for entry in it:
                    if entry.name == "__pycache__":
                        continue
                    if entry.is_dir():
                        pending.append(entry.path)
                    else:
                        st = entry.stat()
                        found.append(f"{entry.path}:{st.st_size}:{st.st_mtime_ns}")
        except OSError:
            found.append(f"{path}:unreadable")
    return "\n".join(sorted(found))
