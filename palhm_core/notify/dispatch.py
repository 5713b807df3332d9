"""Sending a run's notifications: a plugin of the core's own events.

``palhm run`` registers one :class:`Dispatcher` for the run. The top-level
``notify`` list hears of the run of the task the command line names: its
start, then, when the run has ended (``palhm_run_finished``), its success or
failure with the run's exit status and every copy made and rotated by the
tasks it ran. A task's own ``notify`` list hears of that task each time it
runs, also through a routine's ``task`` step; a backup whose copy was kept but
whose rotation failed is a failure. A run that found its task's lock taken
sends nothing (the run holding it does), and a dry run sends nothing: it
stores nothing either, and a success ping would say a backup was made.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from palhm_core.errors import LockBusy
from palhm_core.hookspecs import hookimpl
from palhm_core.manifest import this_host
from palhm_core.notify import Subscription, deliver
from palhm_core.notify.message import exit_status_of, task_message

log = logging.getLogger("palhm")


class Dispatcher:
    """The notifications of one run.

    :param top: the top-level subscriptions, for the run of task ``top_id``.
    :param per_task: each task's own subscriptions, by task id.
    """

    def __init__(
        self, top: list[Subscription], per_task: dict[str, list[Subscription]], top_id: str
    ):
        self.top = top
        self.per_task = per_task
        self.top_id = top_id
        self.host = this_host()
        #: When the run's task started, once it did.
        self.top_started: float | None = None
        self.top_type = ""
        #: (task id, report) of every task that finished with a report.
        self.reports: list[tuple[str, dict[str, Any]]] = []
        #: For each task running: its id, when it started and how many
        #: reports there were then (a stack: a routine's task steps nest).
        self.running: list[tuple[str, float, int]] = []
        #: Why a task's rotation failed, by task id, until the task ends.
        self.rotation_failed: dict[str, BaseException] = {}

    @hookimpl
    def palhm_task_started(self, task) -> None:
        started = time.time()
        subs = list(self.per_task.get(task.id, ()))
        if not self.running and task.id == self.top_id:
            self.top_started, self.top_type = started, task.name
            subs += self.top
        self.running.append((task.id, started, len(self.reports)))
        if subs:
            message = task_message(
                host=self.host, task_id=task.id, task_type=task.name, event="start", started=started
            )
            deliver(subs, message, log)

    @hookimpl
    def palhm_rotation_failed(self, task, error) -> None:
        self.rotation_failed[task.id] = error

    @hookimpl
    def palhm_task_finished(self, task, report) -> None:
        if report is not None:
            self.reports.append((task.id, report))
        self._ended(task, self.rotation_failed.pop(task.id, None))

    @hookimpl
    def palhm_task_failed(self, task, error) -> None:
        self._ended(task, error)

    def _ended(self, task, error: BaseException | None) -> None:
        """The task's own notifications of its end."""
        task_id, started, first = self.running.pop()
        subs = self.per_task.get(task.id)
        if not subs:
            return
        message = task_message(
            host=self.host,
            task_id=task.id,
            task_type=task.name,
            event="failure" if error is not None else "success",
            started=started,
            finished=time.time(),
            error=None if error is None else str(error) or type(error).__name__,
            exit_status=0 if error is None else exit_status_of(error),
            reports=self.reports[first:],
        )
        deliver(subs, message, log)

    @hookimpl
    def palhm_run_finished(self, exit_status: int, report: dict[str, Any]) -> None:
        if not self.top or self.top_started is None or exit_status == LockBusy.exit_status:
            return
        message = task_message(
            host=self.host,
            task_id=self.top_id,
            task_type=self.top_type,
            event="failure" if exit_status != 0 else "success",
            started=self.top_started,
            finished=time.time(),
            error=report.get("error") if exit_status != 0 else None,
            exit_status=exit_status,
            reports=self.reports,
        )
        deliver(self.top, message, log)


def attach(plugins, conf, task_id: str, dry_run: bool) -> None:
    """Register the run's dispatcher on ``plugins`` when the config asks for
    notifications (and the run is not a dry run)."""
    if not (conf.notify or conf.task_notify):
        return
    if dry_run:
        log.info("dry run: no notification is sent")
        return
    plugins.pm.register(Dispatcher(conf.notify, conf.task_notify, task_id), name="palhm-notify")
