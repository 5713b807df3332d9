"""Running one task with its events: started, then finished or failed.

Every report a task returns is also kept, in the order the tasks finished, in
``ctx.options["reports"]`` as (task id, report), so that a routine task that
runs backups through ``task`` steps can report each of them
(``palhm run --report``).
"""

from __future__ import annotations

from palhm_core.task import RunContext, Task, TaskTimedOut


def run_task(task: Task, ctx: RunContext):
    """Run ``task``, telling plugins; returns its report."""
    ctx.log.debug("task %r (%s) starting", task.id, task.name)
    ctx.plugins.emit("palhm_task_started", task=task)
    try:
        with ctx.signals.deadline(task.timeout, lambda: _timed_out(task)):
            report = task.run(ctx)
    except BaseException as e:
        ctx.plugins.emit("palhm_task_failed", task=task, error=e)
        raise
    if report is not None:
        ctx.options.setdefault("reports", []).append((task.id, report))
    ctx.plugins.emit("palhm_task_finished", task=task, report=report)
    return report


def _timed_out(task: Task) -> TaskTimedOut:
    return TaskTimedOut(f"task {task.id!r}: timed out after {task.timeout:g} s (its timeout)")
