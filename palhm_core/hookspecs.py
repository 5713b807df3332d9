"""The hooks a PALHM plugin may implement: the plugin author's reference.

A plugin is a module registered under the entry point group ``palhm``::

    [project.entry-points.palhm]
    mystore = "palhm_mystore"

It implements any of the hooks below with the ``hookimpl`` marker it imports
from ``palhm_core.api`` (the only module of the core a plugin imports).
Implementations may accept fewer arguments than a hook offers (pluggy passes
only the ones named), so hooks can grow without breaking plugins.

*Registry hooks* return a list of classes. The core collects every plugin's
classes into one registry per kind, keyed by each class's ``name``, and refuses
two plugins that claim the same name. Every class carries:

- ``name`` (str): what a config file writes to select it;
- ``description`` (str): one line, shown by ``palhm plugins``;
- ``schema`` (dict): the JSON Schema of its parameters (``"properties"`` and
  ``"required"``, each property with a ``"description"``). The core composes
  these into the one schema every config file is validated against.

Each class is checked when plugins load: a class (not an instance) of its
kind's base, a ``name`` a config can write, a one-line ``description``, a
``schema`` valid against the JSON Schema Draft 2020-12 metaschema with a
description on every property and none of the keys the core adds, no
abstract method left unimplemented. A registry hook must return a list and
not raise. A plugin that fails one check is disabled whole, with one warning
line naming it and the problem; configs that do not use it keep working.

*Event hooks* are broadcast to every plugin while a run goes on; they return
nothing and must not raise: an exception in one is logged as one warning and
the other plugins still hear of the event. Every event carries ``dry_run``:
in ``palhm run --dry-run`` the events fire as in a real run (tasks start and
end, the pipelines run) but nothing is stored, so ``palhm_copy_committed``
names a copy that does not exist; a plugin that records or announces copies
returns at once when ``dry_run`` is true.

*Settings*: a plugin that takes settings declares their schema with
:func:`palhm_settings_schema` and gets them in :func:`palhm_configure`.

What the core checks when plugins load, and what a plugin imports
(``palhm_core.api`` only), is in doc/plugins.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from palhm_core.backend import Backend, CopyInfo
    from palhm_core.config.place import Place
    from palhm_core.notify import Notifier
    from palhm_core.pipeline import Progress
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
    strings oldest first, because rotation deletes the first ones: a new copy
    that does not sort after the task's newest copy is kept, but the run fails
    before rotation deletes anything. The core's own generator is ``iso8601``.

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
def palhm_notifiers() -> list[type[Notifier]]:
    """Register notifiers: how PALHM tells a person that a run started,
    succeeded or failed, and sends the boot report.

    Each class subclasses :class:`palhm_core.notify.Notifier`; its ``name`` is
    what an entry of a ``notify`` list names in ``"type"``, and its ``schema``
    describes the entry's other keys (the core adds ``on``, the events to
    send, and ``timeout``, the seconds one delivery may take). It is built
    with the entry as ``cls(params, place)`` when the config loads (raise
    ``(place / key).error(...)`` for a bad value). Its ``send(message)`` gets
    a :class:`palhm_core.notify.Message` (``event``, ``subject``, ``text`` and
    the JSON document ``doc``: host, task, outcome, exit status, error line,
    copies made and rotated, durations; secrets already hidden) and raises
    when it cannot deliver it. A failure is a warning line and never changes
    the run's exit status; ``send`` must bound every wait by ``self.timeout``,
    and the core stops waiting for it shortly after. The core's own notifiers
    are ``mail``, ``webhook`` and ``stdout``.

    :returns: the notifier classes this plugin provides.
    """


@hookspec
def palhm_settings_schema() -> dict[str, Any]:
    """Declare the plugin's settings: what a config writes under
    ``plugins.NAME``, where NAME is the plugin's entry point name (the name
    ``palhm plugins`` lists and ``modules`` takes)::

        {"plugins": {"mystore": {"api-url": "https://...", "api-token": "..."}}}

    The schema describes the settings object the way a class's ``schema``
    describes its parameters: ``"properties"`` (each with a
    ``"description"``) and ``"required"``; it is checked when plugins load
    (valid JSON Schema, Draft 2020-12) and a config is validated against it,
    with unknown keys refused. A config naming a plugin that declares no
    settings, or none that is installed, is a config error. Values of keys
    whose names say they are secret (``password``, ``token``, ``secret``...)
    are hidden by ``palhm config show``.

    :returns: the JSON Schema of the settings object.
    """


@hookspec
def palhm_configure(settings: dict[str, Any], place: Place) -> None:
    """Take the settings of ``plugins.NAME``, once the config has loaded.

    Called for every plugin implementing it, by every command that loads a
    config (``config check`` too), so it must only keep the values: no
    network, no files written.

    :param settings: the plugin's settings object, valid against its
        :func:`palhm_settings_schema`; ``{}`` when the config has none.
    :param place: where the settings are: raise ``(place / key).error(...)``
        for a value the schema cannot refuse; PALHM prints it as one config
        error and exits with status 2. Any other exception is reported the
        same way, naming the plugin, when the config has settings for it;
        without any, the plugin is disabled with one warning, so that
        configs that do not use it keep working.
    """


@hookspec
def palhm_task_started(task: Task, dry_run: bool) -> None:
    """A task is about to run.

    :param task: the task, with ``task.id`` and ``task.name`` (its type).
    :param dry_run: true in ``palhm run --dry-run`` (see :func:`palhm_run_finished`).
    """


@hookspec
def palhm_task_finished(task: Task, report: dict[str, Any] | None, dry_run: bool) -> None:
    """A task ended and kept what it made: it succeeded, or it failed only
    after (a backup whose copy was committed but whose rotation failed: then
    ``report`` holds ``rotation-error``, :func:`palhm_rotation_failed` came
    first and the run still fails).

    :param task: the task.
    :param report: for a backup task, the run report (objects with path, bytes,
        SHA-256, seconds and exit codes; totals; copies rotated away; the
        copies rotation kept with the rules that keep each, in ``kept-by``;
        the PREFIXes of the copies rotation left alone, in ``future-copies``,
        ``damaged-copies`` and ``foreign-copies``); ``None`` for task types
        that make none.
    :param dry_run: true in ``palhm run --dry-run`` (see :func:`palhm_run_finished`).
    """


@hookspec
def palhm_task_failed(task: Task, error: BaseException, dry_run: bool) -> None:
    """A task failed or was interrupted; a backup copy being made has been
    rolled back (a failed rotation is ``palhm_rotation_failed`` instead).

    :param task: the task.
    :param error: why; ``str(error)`` is the line PALHM prints.
    :param dry_run: true in ``palhm run --dry-run`` (see :func:`palhm_run_finished`).
    """


@hookspec
def palhm_objects_started(task: Task, progress: list[Progress], dry_run: bool) -> None:
    """A backup task starts building its objects (in a dry run too: the
    pipelines run).

    :param task: the backup task.
    :param progress: one live counter per object, in config order:
        ``path``, and ``bytes`` stored so far, which the threads building the
        objects raise until the task ends. Read them (from any thread), never
        write them. PALHM's progress line on a terminal is drawn from them.
    :param dry_run: true in ``palhm run --dry-run`` (see :func:`palhm_run_finished`).
    """


@hookspec
def palhm_copy_committed(
    task: Task, backend: Backend, prefix: str, manifest: dict[str, Any], dry_run: bool
) -> None:
    """A backup copy is complete on its backend.

    :param task: the backup task.
    :param backend: the backend holding the copy.
    :param prefix: the copy's PREFIX.
    :param manifest: the manifest written into the copy.
    :param dry_run: true in ``palhm run --dry-run`` (see :func:`palhm_run_finished`).
    """


@hookspec
def palhm_copy_rotated(task: Task, backend: Backend, copy: CopyInfo, dry_run: bool) -> None:
    """An old copy was deleted by rotation.

    :param task: the backup task that rotated it.
    :param backend: the backend it was deleted from.
    :param copy: the deleted copy (prefix, size, object count).
    :param dry_run: true in ``palhm run --dry-run`` (see :func:`palhm_run_finished`).
    """


@hookspec
def palhm_rotation_failed(
    task: Task, backend: Backend, error: BaseException, dry_run: bool
) -> None:
    """A backup copy was made and is kept, but deleting old copies failed
    (the copies rotated before the failure had their ``palhm_copy_rotated``).
    ``palhm_task_finished`` follows with the report, whose ``rotation-error``
    is ``str(error)``, and the run exits non-zero.

    :param task: the backup task.
    :param backend: the backend rotation failed on.
    :param error: why; ``str(error)`` is the line PALHM logs.
    :param dry_run: true in ``palhm run --dry-run`` (see :func:`palhm_run_finished`).
    """


@hookspec
def palhm_run_finished(exit_status: int, report: dict[str, Any], dry_run: bool) -> None:
    """``palhm run`` has ended; called once, last, whatever the outcome, when
    the config has loaded (a config error ends the run before any plugin is
    configured).

    :param exit_status: the run's exit status: 0 success, 1 a task failed, 75
        another run holds the lock, 128+N stopped by signal N.
    :param report: the run report, as ``palhm run --report FILE`` writes it
        (task, type, times, ``success``, ``exit-status``, ``error`` and the
        reports of the backups made).
    :param dry_run: true in ``palhm run --dry-run``: the tasks ran but no copy
        was stored and none was deleted.
    """
