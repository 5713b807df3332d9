"""The task contract and what a running task is given.

A task type is a class registered by :func:`palhm_core.hookspecs.palhm_task_types`.
It is built when the config loads (so every mistake is found before anything
runs), linked once every task exists, and run by ``palhm run``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from palhm_core.errors import PalhmError, TaskError
from palhm_core.process import Children

if TYPE_CHECKING:
    from palhm_core.backend import Backend
    from palhm_core.config.loader import LoadContext
    from palhm_core.config.place import Place
    from palhm_core.plugins import Plugins
    from palhm_core.signals import StopSignals


@dataclass
class RunContext:
    """What a running task may use.

    :param plugins: the plugins: ``plugins.emit("palhm_...", ...)`` tells them of an event.
    :param children: start child processes with ``children.spawn``.
    :param signals: ``signals.check()`` raises once the run is stopping (a stop
        signal, a task's ``timeout``); ``signals.call(fn, what)`` runs a call
        that may block (a request to a server) so that a stop is not held up
        by it.
    :param vl: the verbosity (0 critical ... 3 info, 4+ debug).
    :param nb_workers: the ``nb-workers`` setting.
    :param dry_run: ``palhm run --dry-run``: backups go to a backend that
        stores nothing, routine tasks run no command.
    :param log: PALHM's logger.

    What a run tells plugins goes through events (``plugins.emit``), never
    through this object: the run report, the metrics and the progress line
    are plugins of those events.
    """

    plugins: Plugins
    children: Children
    signals: StopSignals
    vl: int = 3
    nb_workers: int = 0
    dry_run: bool = False
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("palhm"))


#: The ``timeout`` key, which the core gives every task type.
TIMEOUT_SCHEMA = {
    "type": "number",
    "exclusiveMinimum": 0,
    "maximum": 31_536_000,
    "description": "Seconds the task may run (at most a year). When they are up, every command "
    "of the task is ended (SIGTERM, SIGKILL after a grace period), a backup copy being made is "
    "rolled back and the task fails naming its timeout. Default: no limit.",
}


class TaskTimedOut(TaskError):
    """A task ran past its ``timeout``."""


class FailedWithReport(PalhmError):
    """A task failed after making something it keeps (a backup copy whose
    rotation then failed). ``palhm_task_finished`` gets ``report``, since
    the work is there, and the run fails all the same.

    :param report: the task's report, as :meth:`Task.run` returns it.
    """

    def __init__(self, message: str, report: dict[str, Any]):
        super().__init__(message)
        self.report = report


@dataclass
class PlanStep:
    """One step of :meth:`Task.plan`: what ``palhm plan`` shows.

    :param kind: what the step does: ``"exec"`` (a command), ``"task"``
        (another task), ``"builtin"`` (a builtin function), ``"group"`` (a
        group of backup objects), ``"object"`` (a backup object, the output of
        a pipeline); a task type may name kinds of its own.
    :param text: the line shown for the step (the core hides secrets in it).
    :param commands: the argv of every command the step starts, in pipeline
        order.
    :param task: for a ``"task"`` step, the id of the task it runs: ``palhm
        plan`` shows that task's plan beneath it.
    :param steps: the steps within this one (a group's objects), shown
        indented beneath it.
    """

    kind: str
    text: str
    commands: list[list[str]] = field(default_factory=list)
    task: str | None = None
    steps: list[PlanStep] = field(default_factory=list)


class Task:
    """Base class of task types.

    Subclasses set ``name``, ``description`` and ``schema`` (the keys of the
    task object beside ``id``, ``type`` and ``timeout``) and implement
    :meth:`run`. The core stops a task that runs past its ``timeout``: its
    commands are ended and :meth:`RunContext.signals.check` raises.
    """

    name: ClassVar[str]
    description: ClassVar[str] = ""
    schema: ClassVar[dict[str, Any]] = {"properties": {}}

    def __init__(self, conf: dict[str, Any], place: Place, ctx: LoadContext) -> None:
        """Build the task from its config object (valid against ``schema``);
        raise ``(place / key).error(...)`` for a bad value."""
        self.id: str = conf["id"]
        self.place = place
        #: Seconds the task may run, or None.
        self.timeout: float | None = conf.get("timeout")

    def pointers(self) -> list[tuple[str, Place]]:
        """The ids of the tasks this task runs, with where each is named,
        so the core can refuse unknown ids and cycles."""
        return []

    def link(self, tasks: dict[str, Task]) -> None:
        """Called once every task is built: resolve :meth:`pointers`."""

    def run(self, ctx: RunContext) -> dict[str, Any] | None:
        """Run the task. Raise :class:`palhm_core.TaskError` (or another
        :class:`palhm_core.PalhmError`) to fail it.

        :returns: a report for the ``palhm_task_finished`` event, or None.
        """
        raise NotImplementedError

    def plan(self) -> list[PlanStep]:
        """What :meth:`run` would do, step by step, running nothing."""
        return []

    def storage(self) -> Backend | None:
        """The backend holding this task's copies (``palhm backups``), or
        None for a task that makes no copies."""
        return None
