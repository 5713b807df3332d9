"""Sending a run's notifications: a plugin of the core's own task events.

``palhm run`` registers one :class:`Dispatcher` for the run. The top-level
``notify`` list hears of the task the command line names: its start, then its
success or failure (with every copy made and rotated by the tasks it ran). A
task's own ``notify`` list hears of that task each time it runs, also through
a routine's ``task`` step. A dry run sends nothing: it stores nothing either,
and a success ping would say a backup was made.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from palhm_core.hookspecs import hookimpl
from palhm_core.manifest import this_host
from palhm_core.notify import Subscription, deliver
from palhm_core.notify.message import task_message

log = logging.getLogger("palhm")


class Dispatcher:
    """The notifications of one run.

    :param top: the top-level subscriptions, for the task ``top_id``.
    :param per_task: each task's own subscriptions, by task id.
    """

    def __init__(
        self, top: list[Subscription], per_task: dict[str, list[Subscription]], top_id: str
    ):
        self.top = top
        self.per_task = per_task
        self.top_id = top_id
        self.host = this_host()
        #: (task id, report) of every task that finished with a report.
        self.reports: list[tuple[str, dict[str, Any]]] = []
        #: For each task running: when it started and how many reports
        #: there were then (a stack: a routine's task steps nest).
        self.running: list[tuple[str, float, int]] = []

    def _subs(self, task_id: str) -> list[Subscription]:
        subs = list(self.per_task.get(task_id, ()))
        if task_id == self.top_id and len(self.running) <= 1:
            subs += self.top
        return subs

    @hookimpl
    def palhm_task_started(self, task) -> None:
        started = time.time()
        self.running.append((task.id, started, len(self.reports)))
        subs = self._subs(task.id)
        if subs:
            message = task_message(
                host=self.host, task_id=task.id, task_type=task.name, event="start", started=started
            )
            deliver(subs, message, log)

    @hookimpl
    def palhm_task_finished(self, task, report) -> None:
        if report is not None:
            self.reports.append((task.id, report))
        self._ended(task, None)

    @hookimpl
    def palhm_task_failed(self, task, error) -> None:
        self._ended(task, error)

    def _ended(self, task, error: BaseException | None) -> None:
        subs = self._subs(task.id)
        task_id, started, first = self.running[-1]
        if subs:
            message = task_message(
                host=self.host,
                task_id=task.id,
                task_type=task.name,
                event="failure" if error is not None else "success",
                started=started,
                finished=time.time(),
                error=error,
                reports=self.reports[first:],
            )
            deliver(subs, message, log)
        if task_id == task.id:
            self.running.pop()


def attach(plugins, conf, task_id: str, dry_run: bool) -> None:
    """Register the run's dispatcher on ``plugins`` when the config asks for
    notifications (and the run is not a dry run)."""
    if not (conf.notify or conf.task_notify):
        return
    if dry_run:
        log.info("dry run: no notification is sent")
        return
    plugins.pm.register(Dispatcher(conf.notify, conf.task_notify, task_id), name="palhm-notify")
