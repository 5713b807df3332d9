"""PALHM: Periodic Automatic Live Host Maintenance.

The names a plugin needs are importable from here: ``hookimpl`` to mark hook
implementations, the :class:`Backend`/:class:`Sink` contract and the error
classes. They are loaded on first use (PEP 562), so that ``palhm --help``
does not pay for pluggy.
"""

from __future__ import annotations

import importlib

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing at start-up
if TYPE_CHECKING:
    from palhm_core.backend import Backend, CopyInfo, CopyWriter, PrefixExists, Sink, StorageFull
    from palhm_core.errors import BackendError, ConfigError, PalhmError, TaskError
    from palhm_core.hookspecs import hookimpl

_EXPORTS = {
    "Backend": "palhm_core.backend",
    "CopyInfo": "palhm_core.backend",
    "CopyWriter": "palhm_core.backend",
    "StorageFull": "palhm_core.backend",
    "PrefixExists": "palhm_core.backend",
    "Sink": "palhm_core.backend",
    "BackendError": "palhm_core.errors",
    "ConfigError": "palhm_core.errors",
    "PalhmError": "palhm_core.errors",
    "TaskError": "palhm_core.errors",
    "hookimpl": "palhm_core.hookspecs",
}

__all__ = [
    "Backend",
    "BackendError",
    "ConfigError",
    "CopyInfo",
    "CopyWriter",
    "PalhmError",
    "PrefixExists",
    "Sink",
    "StorageFull",
    "TaskError",
    "hookimpl",
]


def __getattr__(name: str):
    if name == "__version__":
        from palhm_core.entrypoints import version

        value = version("palhm") or "0+unknown"  # not installed: running from a checkout
    elif name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
    else:
        raise AttributeError(f"module 'palhm_core' has no attribute {name!r}")
    globals()[name] = value
    return value
