"""Running one task with its events: started, then finished or failed.

The report a task returns goes to every plugin with ``palhm_task_finished``:
the run report (:class:`palhm_core.report.RunRecord`) and the notifications
are built from these events, so a routine task that runs backups through
``task`` steps reports each of them.
"""

from __future__ import annotations

from palhm_core.task import FailedWithReport, RunContext, Task, TaskTimedOut


def run_task(task: Task, ctx: RunContext):
    """Run ``task``, telling plugins; returns its report."""
    ctx.log.debug("task %r (%s) starting", task.id, task.name)
    ctx.plugins.emit("palhm_task_started", task=task)
    try:
        with ctx.signals.deadline(task.timeout, lambda: _timed_out(task)):
            report = task.run(ctx)
    except FailedWithReport as e:
        # The task's work is kept but a later step failed (a backup's
        # rotation, which has an event of its own): the run still fails.
        ctx.plugins.emit("palhm_task_finished", task=task, report=e.report)
        raise
    except BaseException as e:
        ctx.plugins.emit("palhm_task_failed", task=task, error=e)
        raise
    ctx.plugins.emit("palhm_task_finished", task=task, report=report)
    return report


def _timed_out(task: Task) -> TaskTimedOut:
    return TaskTimedOut(f"task {task.id!r}: timed out after {task.timeout:g} s (its timeout)")
