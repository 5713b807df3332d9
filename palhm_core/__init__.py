"""PALHM: Periodic Automatic Live Host Maintenance.

The names a plugin needs are importable from here: ``hookimpl`` to mark hook
implementations, the :class:`Backend`/:class:`Sink` contract and the error
classes.
"""

from importlib import metadata

from palhm_core.backend import Backend, CopyInfo, PrefixExists, Sink
from palhm_core.errors import BackendError, ConfigError, PalhmError, TaskError
from palhm_core.hookspecs import hookimpl

try:
    __version__ = metadata.version("palhm")
except metadata.PackageNotFoundError:  # running from a checkout
    __version__ = "0+unknown"

__all__ = [
    "Backend",
    "BackendError",
    "ConfigError",
    "CopyInfo",
    "PalhmError",
    "PrefixExists",
    "Sink",
    "TaskError",
    "hookimpl",
]
