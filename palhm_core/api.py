"""What a PALHM plugin may use of the core: import it from here, and nothing
else of ``palhm_core``; everything else may change in any release.

- ``hookimpl``: the marker of hook implementations (the hooks are in
  :mod:`palhm_core.hookspecs`);
- backends: :class:`Backend`, :class:`CopyWriter`, :class:`Sink`,
  :class:`CopyInfo`, and the errors :class:`BackendError`,
  :class:`PrefixExists`, :class:`StorageFull`;
- key-value stores: :class:`ObjectStoreBackend` (a whole backend over four
  primitives, see :mod:`palhm_core.objectstore`), :class:`StoredKey`, and
  the names it keeps in a store, ``MARKER_NAME`` and ``JOURNAL_NAME``;
- programs a backend runs (rclone): :class:`Children` starts them in process
  groups of their own, which a guardian process ends if PALHM is killed;
- task types: :class:`Task`, :class:`PlanStep`, :class:`RunContext`,
  :class:`FailedWithReport`;
- notifiers: :class:`Notifier`, :class:`Message`, :class:`NotifyError`;
- retention policies: :class:`RetentionPolicy`, :class:`Dated`;
- events: :class:`Progress` (the counters of ``palhm_objects_started``);
- config: :class:`Place` (``place.error(problem)`` is the one-line config
  error to raise for a bad value) and :class:`ConfigError`;
- errors: :class:`PalhmError` (one line, exit status 1), :class:`TaskError`;
- the names of the files the core writes into every copy:
  ``MANIFEST_NAME``, ``SUMS_NAME``;
- threads and reading back: ``start_helper_thread(target, name)``, the only
  way a plugin starts a thread (the stop signals stay with PALHM's main
  thread), and ``READ_BACK_STEP``: a sink that offers ``splice`` is read
  back by the core at least every that many bytes, so a sink that holds
  spliced bytes until they are read back must hold at least that many.

Names are loaded on first use (PEP 562), so importing this module at a
plugin's import costs nothing until a name is used.
"""

from __future__ import annotations

import importlib

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing at start-up
if TYPE_CHECKING:
    from palhm_core.backend import (
        Backend,
        CopyInfo,
        CopyWriter,
        PrefixExists,
        Sink,
        StorageFull,
    )
    from palhm_core.config.place import Place
    from palhm_core.errors import BackendError, ConfigError, PalhmError, TaskError
    from palhm_core.hookspecs import hookimpl
    from palhm_core.manifest import MANIFEST_NAME, SUMS_NAME
    from palhm_core.notify import Message, Notifier, NotifyError
    from palhm_core.objectstore import JOURNAL_NAME, MARKER_NAME, ObjectStoreBackend, StoredKey
    from palhm_core.pipeline import Progress
    from palhm_core.process import Children
    from palhm_core.readback import STEP as READ_BACK_STEP
    from palhm_core.retention import Dated, RetentionPolicy
    from palhm_core.signals import start_helper_thread
    from palhm_core.task import FailedWithReport, PlanStep, RunContext, Task

_EXPORTS = {
    "Backend": "palhm_core.backend",
    "CopyInfo": "palhm_core.backend",
    "CopyWriter": "palhm_core.backend",
    "PrefixExists": "palhm_core.backend",
    "Sink": "palhm_core.backend",
    "StorageFull": "palhm_core.backend",
    "Place": "palhm_core.config.place",
    "BackendError": "palhm_core.errors",
    "ConfigError": "palhm_core.errors",
    "PalhmError": "palhm_core.errors",
    "TaskError": "palhm_core.errors",
    "hookimpl": "palhm_core.hookspecs",
    "MANIFEST_NAME": "palhm_core.manifest",
    "SUMS_NAME": "palhm_core.manifest",
    "Message": "palhm_core.notify",
    "Notifier": "palhm_core.notify",
    "NotifyError": "palhm_core.notify",
    "JOURNAL_NAME": "palhm_core.objectstore",
    "MARKER_NAME": "palhm_core.objectstore",
    "ObjectStoreBackend": "palhm_core.objectstore",
    "StoredKey": "palhm_core.objectstore",
    "Progress": "palhm_core.pipeline",
    "Children": "palhm_core.process",
    "READ_BACK_STEP": ("palhm_core.readback", "STEP"),
    "start_helper_thread": "palhm_core.signals",
    "Dated": "palhm_core.retention",
    "RetentionPolicy": "palhm_core.retention",
    "FailedWithReport": "palhm_core.task",
    "PlanStep": "palhm_core.task",
    "RunContext": "palhm_core.task",
    "Task": "palhm_core.task",
}

__all__ = [
    "Backend",
    "BackendError",
    "Children",
    "ConfigError",
    "CopyInfo",
    "CopyWriter",
    "FailedWithReport",
    "Dated",
    "JOURNAL_NAME",
    "MANIFEST_NAME",
    "MARKER_NAME",
    "Message",
    "Notifier",
    "NotifyError",
    "ObjectStoreBackend",
    "PalhmError",
    "Place",
    "PlanStep",
    "PrefixExists",
    "Progress",
    "READ_BACK_STEP",
    "RetentionPolicy",
    "RunContext",
    "SUMS_NAME",
    "Sink",
    "StorageFull",
    "StoredKey",
    "Task",
    "TaskError",
    "hookimpl",
    "start_helper_thread",
]


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'palhm_core.api' has no attribute {name!r}")
    module, attribute = (
        _EXPORTS[name] if isinstance(_EXPORTS[name], tuple) else (_EXPORTS[name], name)
    )
    value = getattr(importlib.import_module(module), attribute)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
