"""The hooks a PALHM plugin may implement: the plugin author's reference.

A plugin is a module registered under the entry point group ``palhm``::

    [project.entry-points.palhm]
    mystore = "palhm_mystore"

It implements any of the hooks below with the ``hookimpl`` marker it imports
from ``palhm_core``. Implementations may accept fewer arguments than a hook
offers (pluggy passes only the ones named), so hooks can grow without breaking
plugins.

*Registry hooks* return a list of classes. The core collects every plugin's
classes into one registry per kind, keyed by each class's ``name``, and refuses
two plugins that claim the same name. Every class carries:

- ``name`` (str): what a config file writes to select it;
- ``description`` (str): one line, shown by ``palhm plugins``;
- ``schema`` (dict): the JSON Schema of its parameters (``"properties"`` and
  ``"required"``, each property with a ``"description"``). The core composes
  these into the one schema every config file is validated against.

*Event hooks* are broadcast to every plugin while a run goes on; they return
nothing and must not raise: an exception in one is logged and the run goes on.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from palhm_core.backend import Backend, CopyInfo
    from palhm_core.task import Task

hookspec = pluggy.HookspecMarker("palhm")
hookimpl = pluggy.HookimplMarker("palhm")


@hookspec
def palhm_backends() -> list[type[Backend]]:
    """Register storage backends.

    Each class subclasses :class:`palhm_core.backend.Backend`; its ``name`` is
    what a backup task's ``"backend"`` names and its ``schema`` describes the
    task's ``"backend-param"`` object (the core adds the keys it handles for
    every backend: ``nb-copy-limit``, ``root-size-limit`` and ``prefix``).

    A plugin module must not import heavy libraries at import time: import them
    in :meth:`Backend.open`, which runs only when a backup actually starts.

    :returns: the backend classes this plugin provides.
    """


@hookspec
def palhm_task_types() -> list[type[Task]]:
    """Register task types.

    Each class subclasses :class:`palhm_core.task.Task`; its ``name`` is what a
    task's ``"type"`` names (the core provides ``backup`` and ``routine``) and
    its ``schema`` describes the task object's keys beside ``id`` and ``type``.

    :returns: the task classes this plugin provides.
    """


@hookspec
def palhm_prefix_generators() -> list[type]:
    """Register prefix generators: how a backup copy is named.

    A generator is selected by ``backend-param.prefix.type`` and built with the
    other keys of that object as ``cls(params, place)``; calling the instance
    with the run's start time (an aware UTC :class:`datetime.datetime`)
    returns the PREFIX, one path component without ``/``. Prefixes must sort as
    strings oldest first, because rotation deletes the first ones. The core's
    own generator is ``iso8601``.

    :returns: the generator classes this plugin provides.
    """


@hookspec
def palhm_builtins() -> list[type]:
    """Register builtin functions, the ``"builtin"`` steps of a routine task.

    A builtin is selected by ``builtin-id``, built with its ``"param"`` value as
    ``cls(param, place)`` when the config loads (raise ``place.error(...)`` for a
    bad parameter) and called with no argument when its step runs; raise
    :class:`palhm_core.TaskError` to fail the task. The core's own builtin is
    ``sigmask``.

    :returns: the builtin classes this plugin provides.
    """


@hookspec
def palhm_retention_policies() -> list[type]:
    """Register retention policies: which copies rotation keeps.

    A policy subclasses :class:`palhm_core.retention.RetentionPolicy`, is
    selected by ``backend-param.keep.type`` (default ``calendar``, the core's
    own: restic's ``last``, ``hourly`` ... ``yearly`` and ``within`` rules)
    and is built with the other keys of that object as ``cls(params, place)``
    when the config loads. Its ``keep(copies, now)`` gets the task's complete
    copies as :class:`palhm_core.retention.Dated` (PREFIX and time) and
    returns ``{prefix: [rule, ...]}`` for the copies it keeps, naming the
    rules that keep each; it must be a pure function (no clock, no storage).
    The core keeps the copy just made whatever the policy says, then applies
    ``nb-copy-limit`` and ``root-size-limit`` to the copies kept.

    :returns: the policy classes this plugin provides.
    """


@hookspec
def palhm_task_started(task: Task) -> None:
    """A task is about to run.

    :param task: the task, with ``task.id`` and ``task.name`` (its type).
    """


@hookspec
def palhm_task_finished(task: Task, report: dict[str, Any] | None) -> None:
    """A task ended successfully.

    :param task: the task.
    :param report: for a backup task, the run report (objects with path, bytes,
        SHA-256, seconds and exit codes; totals; copies rotated away; the
        PREFIXes of the copies rotation left alone, in ``future-copies``,
        ``damaged-copies`` and ``foreign-copies``); ``None`` for task types
        that make none.
    """


@hookspec
def palhm_task_failed(task: Task, error: BaseException) -> None:
    """A task failed or was interrupted; a backup has been rolled back.

    :param task: the task.
    :param error: why; ``str(error)`` is the line PALHM prints.
    """


@hookspec
def palhm_copy_committed(
    task: Task, backend: Backend, prefix: str, manifest: dict[str, Any]
) -> None:
    """A backup copy is complete on its backend.

    :param task: the backup task.
    :param backend: the backend holding the copy.
    :param prefix: the copy's PREFIX.
    :param manifest: the manifest written into the copy.
    """


@hookspec
def palhm_copy_rotated(task: Task, backend: Backend, copy: CopyInfo) -> None:
    """An old copy was deleted by rotation.

    :param task: the backup task that rotated it.
    :param backend: the backend it was deleted from.
    :param copy: the deleted copy (prefix, size, object count).
    """
