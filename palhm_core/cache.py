"""What PALHM remembers between runs, to start faster.

Two things cost more at start-up than the rest of ``palhm run``: importing
jsonschema to check a config file against the config schema (and each
plugin's schemas against the JSON Schema metaschema), and importing every
installed plugin to learn what it provides. PALHM remembers both, keyed by
everything their answer depends on, so that any change is a new key and is
worked out afresh:

- checks that passed (never failures, which jsonschema explains each time),
  keyed by the SHA-256 of PALHM's version, the installed distributions and
  the documents checked, as canonical JSON (:func:`key`, :func:`passed`,
  :func:`remember`): a changed config file, include or plugin schema, or an
  upgraded jsonschema, is a new key;
- what a plugin that loaded and passed its checks provides (names,
  descriptions and schemas of its classes, and the hooks it implements),
  keyed by a fingerprint of its files and of the installed distributions
  (:mod:`palhm_core.plugins` makes it; :func:`summary`, :func:`keep_summary`).

Both are files in ``$CACHE_DIRECTORY`` when systemd sets it (the unit's
``CacheDirectory=palhm``), else ``$XDG_CACHE_HOME/palhm`` (``~/.cache/palhm``
by default), each keeping its most recent entries. A forged entry could let a
config skip its checks, so the directory and the files are used only if
they belong to the user running PALHM and no other user can write them;
otherwise, or when they cannot be read or written, PALHM remembers nothing
and works everything out each time, as without a cache.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from typing import Any

CHECKS = "checks"
PLUGINS = "plugins"
#: How many entries each file keeps (the most recent).
KEEP = {CHECKS: 512, PLUGINS: 64}

_loaded: dict[str, dict[str, Any]] = {}


def key(kind: str, *documents: Any) -> str | None:
    """The key of checking ``documents`` (schema and instance) as ``kind``
    with this PALHM and the distributions installed (jsonschema's version
    among them); None if a document is not plain JSON (then it is always
    checked)."""
    from palhm_core import __version__, entrypoints

    h = hashlib.sha256(f"{kind}\0{__version__}\0{entrypoints.installed()}\0".encode())
    for doc in documents:
        try:
            text = json.dumps(doc, sort_keys=True, separators=(",", ":"), allow_nan=False)
        except (TypeError, ValueError, RecursionError):
            return None
        h.update(text.encode())
        h.update(b"\0")
    return h.hexdigest()


def passed(check_key: str | None) -> bool:
    """Whether the check of this key passed before."""
    return check_key is not None and check_key in _entries(CHECKS)


def remember(check_key: str | None) -> None:
    """Note that the check of this key passed."""
    if check_key is not None and not passed(check_key):
        _put(CHECKS, check_key, 1)


def summary(fingerprint: str) -> dict | None:
    """What the plugin of this fingerprint provides, if remembered."""
    found = _entries(PLUGINS).get(fingerprint)
    return found if isinstance(found, dict) else None


def keep_summary(fingerprint: str, what: dict) -> None:
    """Remember what the plugin of this fingerprint provides."""
    if summary(fingerprint) != what:
        _put(PLUGINS, fingerprint, what)


def _entries(name: str) -> dict[str, Any]:
    if name not in _loaded:
        _loaded[name] = _read(name)
    return _loaded[name]


def _put(name: str, entry_key: str, value: Any) -> None:
    """Add an entry, to this process's view and to the file (read again
    first, for what other runs added since)."""
    _entries(name)[entry_key] = value
    directory = _directory(create=True)
    if directory is None:
        return
    entries = _read(name)
    entries.pop(entry_key, None)
    entries[entry_key] = value
    kept = dict(list(entries.items())[-KEEP[name] :])
    tmp = os.path.join(directory, f".{name}.{os.getpid()}")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        with open(fd, "w", encoding="utf-8") as f:
            json.dump(kept, f, separators=(",", ":"))
        os.replace(tmp, os.path.join(directory, name))
    except (OSError, TypeError, ValueError):
        try:
            os.unlink(tmp)
        except OSError:
            pass


def _read(name: str) -> dict[str, Any]:
    """The entries of a file, oldest first; none if it is not to be trusted."""
    directory = _directory(create=False)
    if directory is None:
        return {}
    try:
        # O_NONBLOCK: a FIFO in its place must not make PALHM wait for a writer.
        fd = os.open(os.path.join(directory, name), os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return {}
    with open(fd, encoding="utf-8", errors="replace") as f:
        if not _own(os.fstat(fd), stat.S_ISREG):
            return {}
        try:
            entries = json.load(f)
        except (OSError, ValueError, RecursionError):
            return {}
    return entries if isinstance(entries, dict) else {}


def _directory(create: bool) -> str | None:
    """The cache directory if it is the user's own; made if ``create``."""
    systemd = os.environ.get("CACHE_DIRECTORY", "").split(":")[0]
    if systemd:
        directory = systemd
    else:
        home = os.path.join(os.path.expanduser("~"), ".cache")
        directory = os.path.join(os.environ.get("XDG_CACHE_HOME") or home, "palhm")
    if not os.path.isabs(directory):  # a relative XDG_CACHE_HOME is ignored, as XDG says
        return None
    try:
        if create and not os.path.lexists(directory):
            os.makedirs(directory, mode=0o700)
        st = os.lstat(directory)
    except OSError:
        return None
    return directory if _own(st, stat.S_ISDIR) else None


def _own(st: os.stat_result, is_kind) -> bool:
    """A file of that kind, the user's own, that no other user can write."""
    return is_kind(st.st_mode) and st.st_uid == os.geteuid() and not st.st_mode & 0o022
