"""The ``routine`` task type: steps run in order, the first failure stops it.

A step runs an exec (its stdout and stderr shown or hidden by verbosity),
another task (``task``), or a builtin function (``builtin``). A dry run
(``palhm run --dry-run``) follows task pointers, so backups run into the null
backend, but runs no exec and calls no builtin: it never updates or reboots.
"""

from __future__ import annotations

import subprocess
from functools import partial

from palhm_core.errors import TaskError
from palhm_core.hookspecs import hookimpl
from palhm_core.pipeline import VL_PREFIX
from palhm_core.process import TimedOut, describe_status
from palhm_core.tail import StderrRelay
from palhm_core.task import PlanStep, RunContext, Task


class RoutineTask(Task):
    name = "routine"
    description = "Run commands, other tasks and builtins in order; stop at the first failure."
    schema = {
        "properties": {"routine": {"$ref": "#/$defs/routine"}},
        "required": ["routine"],
    }

    def __init__(self, conf, place, ctx):
        super().__init__(conf, place, ctx)
        self.steps = []
        self._pointers = []
        for i, step in enumerate(conf["routine"]):
            where = place / "routine" / i
            kind = step["type"]
            if kind == "task":
                self._pointers.append((step["task-id"], where / "task-id"))
                self.steps.append(("task", step["task-id"]))
            elif kind == "builtin":  # each mistake collected: all are reported at once
                cls = ctx.collect(
                    ctx.plugins.lookup, "builtin", step["builtin-id"], where / "builtin-id"
                )
                builtin = cls and ctx.collect(cls, step.get("param"), where / "param")
                self.steps.append(("builtin", builtin))
            else:
                self.steps.append(("exec", ctx.collect(ctx.step_exec, step, where)))

    def pointers(self):
        return list(self._pointers)

    def link(self, tasks):
        self.tasks = tasks

    def run(self, ctx: RunContext):
        from palhm_core.runner import run_task

        for kind, what in self.steps:
            ctx.signals.check()
            if kind == "task":
                run_task(self.tasks[what], ctx)
            elif kind == "builtin":
                if ctx.dry_run:
                    ctx.log.info("%s: dry run, not calling builtin %s", self.id, what.name)
                else:
                    what()
            else:
                self._run_exec(what, ctx)
        ctx.signals.check()
        return None

    def _run_exec(self, ex, ctx: RunContext) -> None:
        if ctx.dry_run:
            ctx.log.info("%s: dry run, not running: %s", self.id, ex.shell_line())
            return
        ctx.log.debug("%s: running %s", self.id, ex.shell_line())
        relay = StderrRelay(ex.label, show=ctx.vl >= ex.vl_stderr, prefix=ctx.vl >= VL_PREFIX)
        try:
            child = ctx.children.spawn(
                ex.argv,
                stdin=subprocess.DEVNULL,
                stdout=None if ctx.vl >= ex.vl_stdout else subprocess.DEVNULL,
                stderr=relay.fd,
                env=ex.env_for_child(),
            )
        except BaseException:
            relay.finish()
            raise
        finally:
            relay.child_started()
        try:
            # Through signals.call: a stop is not held up by a command that
            # cannot be killed at once (uninterruptible sleep).
            rc = ctx.signals.call(partial(ctx.children.wait, child, ex.timeout), ex.label)
        except TimedOut as e:
            raise TaskError(f"task {self.id!r}: {e}{_said(relay)}") from None
        finally:
            relay.finish()
        ctx.signals.check()
        if rc not in ex.ec:
            raise TaskError(
                f"task {self.id!r}: {ex.label!r} {describe_status(rc)} (accepted: {ex.ec.text})"
                + _said(relay)
            )

    def plan(self):
        steps = []
        for kind, what in self.steps:
            if kind == "task":
                steps.append(PlanStep("task", f"task {what}", task=what))
            elif kind == "builtin":
                steps.append(PlanStep("builtin", f"builtin {what.name}"))
            else:
                steps.append(PlanStep("exec", what.shell_line(), commands=[what.argv]))
        return steps


def _said(relay: StderrRelay) -> str:
    """What the command wrote on its hidden stderr, to follow the error line."""
    text = relay.text()
    return f"; its stderr ended with:\n{text}" if text else ""


@hookimpl
def palhm_task_types():
    return [RoutineTask]
