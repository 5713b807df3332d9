"""The installed distributions' entry points and versions, read from their
``.dist-info`` (or ``.egg-info``) directories on ``sys.path``.

This is what :mod:`importlib.metadata` does, in the few lines PALHM needs:
importing that module (with email, zipfile, csv, pathlib and inspect) costs
more than the rest of ``palhm run``'s start-up. As there, a distribution
found twice counts once, the first on ``sys.path`` winning, and a
distribution inside a zip file on ``sys.path`` is not seen (PALHM's plugins
are installed by pip, into directories).
"""

from __future__ import annotations

import functools
import importlib
import os
import re
import sys
from dataclasses import dataclass

_SUFFIXES = (".dist-info", ".egg-info")


@dataclass(frozen=True)
class EntryPoint:
    """One entry point: ``name = value`` under its group in the
    distribution's ``entry_points.txt``; ``value`` is ``module`` or
    ``module:attribute``."""

    name: str
    value: str
    distribution: str
    version: str

    def load(self):
        """The object the entry point names, importing its module."""
        module, _, attr = self.value.partition(":")
        obj = importlib.import_module(module.strip())
        for part in filter(None, attr.strip().split(".")):
            obj = getattr(obj, part)
        return obj


def entry_points(group: str) -> list[EntryPoint]:
    """Every entry point of ``group``, by distribution in ``sys.path`` order."""
    found = []
    for path in metadata_dirs():
        try:
            with open(os.path.join(path, "entry_points.txt"), encoding="utf-8") as f:
                listed = list(_section(f.read(), group))
        except OSError:
            continue
        if listed:
            name, version = _name_version(path)
            found += [EntryPoint(ep, value, name, version) for ep, value in listed]
    return found


def version(distribution: str) -> str | None:
    """The installed version of ``distribution``, None if it is not installed."""
    wanted = _normalize(distribution)
    for path in metadata_dirs():
        if _dir_name(path) == wanted:
            return _name_version(path)[1]
    return None


def metadata_dirs():
    """The metadata directories of the distributions on ``sys.path``, each
    distribution once."""
    seen = set()
    for entry in sys.path:
        try:
            names = sorted(os.listdir(entry or "."))
        except OSError:  # missing, not a directory, a zip file
            continue
        for dirname in names:
            if dirname.endswith(_SUFFIXES):
                path = os.path.join(entry or ".", dirname)
                name = _dir_name(path)
                if name not in seen:
                    seen.add(name)
                    yield path


@functools.cache
def installed() -> str:
    """The names of the metadata directories on ``sys.path``, which hold
    each distribution's version: any install, upgrade or removal changes it."""
    return "\0".join(os.path.basename(p) for p in metadata_dirs())


def _dir_name(path: str) -> str:
    """The distribution's name as its directory spells it
    (``palhm_s3-0.1.0.dist-info``), normalized."""
    return _normalize(os.path.basename(path).rsplit(".", 1)[0].split("-", 1)[0])


def _name_version(path: str) -> tuple[str, str]:
    """Name and version from the METADATA (or PKG-INFO) headers."""
    headers = {}
    for filename in ("METADATA", "PKG-INFO"):
        try:
            with open(os.path.join(path, filename), encoding="utf-8", errors="replace") as f:
                for line in f:
                    if not line.strip():
                        break
                    key, sep, value = line.partition(":")
                    if sep and key in ("Name", "Version"):
                        headers[key] = value.strip()
            break
        except OSError:
            continue
    return headers.get("Name", _dir_name(path)), headers.get("Version", "?")


def _section(text: str, group: str):
    """The ``name = value`` lines of ``[group]`` in an INI text."""
    inside = False
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            inside = line[1:-1].strip() == group
        elif inside:
            name, sep, value = line.partition("=")
            if sep:
                yield name.strip(), value.strip()


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()
