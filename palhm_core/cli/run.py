"""``palhm run`` and ``palhm plan``."""

from __future__ import annotations

import argparse
import json
import math
import sys

RUN_DESCRIPTION = """\
Run a task. A second run of the same task (same config) exits at once with
status 75 naming the PID of the run in progress, or waits for it with --wait.
SIGINT, SIGTERM and SIGHUP stop the run within 10 seconds: its commands are
ended, a backup copy being made is rolled back, and PALHM exits with 128+N. A
task that runs past its timeout is stopped the same way and fails (status 1).
"""


class _WaitAction(argparse.Action):
    """``--wait``, ``--wait=SECONDS`` or ``--wait SECONDS``; in ``--wait TASK``
    the word is the task, not a number of seconds."""

    def __call__(self, parser, namespace, values, option_string=None):
        if values is None:
            namespace.wait = math.inf
            return
        try:
            seconds = float(values)
        except ValueError:
            namespace.wait = math.inf
            namespace.wait_task = values
            return
        if math.isnan(seconds) or seconds < 0:
            parser.error(f"{option_string}: expected a number of seconds >= 0, not {values!r}")
        namespace.wait = seconds


def add_parsers(sub) -> None:
    p = sub.add_parser(
        "run",
        help="run a task (default: the task named default)",
        description=RUN_DESCRIPTION,
    )
    p.add_argument("task", nargs="?", default=None, metavar="TASK", help="default: default")
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="run every backup into the null backend: pipelines run, nothing is stored and "
        "no backend is touched; routine tasks run no command and call no builtin (they only "
        "log them) and follow their task steps; no notification is sent",
    )
    p.add_argument(
        "--wait",
        nargs="?",
        action=_WaitAction,
        default=None,
        metavar="SECONDS",
        help="if the task is already running, wait for that run to end (at most SECONDS) "
        "instead of exiting with status 75",
    )
    p.add_argument(
        "--lock-dir",
        metavar="DIR",
        help="where lock files go, a directory only this user can write (default: "
        "$PALHM_LOCK_DIR, else /run/palhm as root, $XDG_RUNTIME_DIR/palhm otherwise)",
    )
    p.add_argument(
        "--report",
        metavar="FILE",
        help="write the run report (JSON) to FILE, replacing it in one step",
    )
    p.add_argument(
        "--metrics-dir",
        metavar="DIR",
        help="write a Prometheus node-exporter textfile DIR/palhm_TASK.prom",
    )
    p.set_defaults(func=cmd_run, wait_task=None)
    p = sub.add_parser("plan", help="show what a task would run, in order, running nothing")
    p.add_argument("task", nargs="?", default="default", metavar="TASK")
    p.add_argument("--json", action="store_true", help="as JSON")
    p.add_argument(
        "--restore",
        action="store_true",
        help="show how palhm restore restores each object, and its deep check",
    )
    p.set_defaults(func=cmd_plan)


def _task_id(args) -> str:
    if args.wait_task is not None:
        if args.task is not None:
            from palhm_core.errors import UsageError

            raise UsageError(
                f"--wait: expected a number of seconds, not {args.wait_task!r} (use --wait=SECONDS)"
            )
        return args.wait_task
    return args.task if args.task is not None else "default"


def cmd_run(args) -> int:
    from palhm_core.errors import PalhmError

    run = _Run(args)
    try:
        run.run()
    except PalhmError as e:
        run.finish(e, e.exit_status)
        raise
    except KeyboardInterrupt as e:  # Ctrl-C before the stop signals were caught
        run.finish(e, 130)
        raise
    except BaseException as e:  # a bug in PALHM or a plugin: still say the run failed
        run.finish(e, 1)
        raise
    run.finish(None, 0)
    if run.outputs.error is not None:
        raise run.outputs.error
    return 0


class _Run:
    """One ``palhm run``, however it ends.

    The run report, the metrics and the progress line are plugins of the
    core's own events (:mod:`palhm_core.report`, :mod:`palhm_core.progress`),
    registered on the plugin manager once the config has loaded.
    """

    def __init__(self, args):
        from palhm_core.report import RunOutputs, RunRecord

        self.args = args
        self.record = RunRecord(_task_id(args))
        self.outputs = RunOutputs(args.report, args.metrics_dir)
        #: The plugins, once the config has loaded and named the task.
        self.plugins = None

    def run(self) -> None:
        from palhm_core.cli import config_path
        from palhm_core.lock import RunLocks
        from palhm_core.process import Children
        from palhm_core.signals import StopSignals
        from palhm_core.task import RunContext

        conf, task, vl = self._load()
        children = Children()
        # The task and every task it runs: two runs of one task never overlap, even
        # when one of them comes through a routine's task pointer. Taken in id order
        # so that two routines sharing tasks cannot each wait for the other.
        locks = RunLocks(config_path(self.args), _reachable(task, conf.tasks), self.args.lock_dir)
        try:
            with StopSignals(children) as signals:
                locks.acquire(self.args.wait, signals)
                ctx = RunContext(
                    plugins=self.plugins,
                    children=children,
                    signals=signals,
                    vl=vl,
                    nb_workers=conf.nb_workers,
                    dry_run=self.args.dry_run,
                )
                _run_task(task, ctx, self._progress())
        finally:
            locks.release()

    def _load(self):
        """The config, the task the run names and the verbosity; registers
        the run's own plugins."""
        from palhm_core.cli import load_config
        from palhm_core.notify import dispatch as notify

        plugins, conf, vl = load_config(self.args)
        task = conf.task(self.record.task_id)
        notify.attach(plugins, conf, task.id, self.args.dry_run)
        self.record.task_type = task.name
        plugins.dry_run = self.args.dry_run
        plugins.pm.register(self.record, name="palhm-run-record")
        plugins.pm.register(self.outputs, name="palhm-run-outputs")
        self.plugins = plugins
        return conf, task, vl

    def _progress(self):
        """The progress line, started and registered, when stderr wants one."""
        from palhm_core import progress

        if not progress.wanted(quiet=self.args.quiet):
            return None
        display = progress.ProgressDisplay()
        self.plugins.pm.register(display, name="palhm-progress")
        return display.start()

    def finish(self, error: BaseException | None, exit_status: int) -> None:
        """Tell the plugins that the run ended (``palhm_run_finished``), with
        its report."""
        report = self.record.document(error, exit_status)
        if self.plugins is not None:
            self.plugins.emit("palhm_run_finished", exit_status=exit_status, report=report)
        else:
            # The config did not load: no plugin was configured to hear of
            # the run, but --report and --metrics-dir still say it failed.
            self.outputs.palhm_run_finished(exit_status=exit_status, report=report)


def _run_task(task, ctx, display) -> None:
    """Run ``task``; end every command it left and the progress line."""
    from palhm_core.errors import PalhmError
    from palhm_core.runner import run_task

    try:
        run_task(task, ctx)
    except PalhmError as e:
        # A command ended by the stop may fail before PALHM notices the
        # stop itself: the run was still stopped by it (a signal, or a
        # task's timeout).
        reason = ctx.signals.pending_error()
        if reason is not None and e is not reason:
            raise reason from e
        raise
    finally:
        ctx.children.stop(grace=2.0)
        if display is not None:
            display.stop()


def _reachable(task, tasks) -> list[str]:
    """The ids of ``task`` and of every task it runs, sorted."""
    seen = {task.id}
    todo = [task]
    while todo:
        for target, _ in todo.pop().pointers():
            if target not in seen:
                seen.add(target)
                todo.append(tasks[target])
    return sorted(seen)


# -- plan -----------------------------------------------------------------


def cmd_plan(args) -> int:
    from palhm_core.cli import load_config

    _, conf, _ = load_config(args)
    task = conf.task(args.task)
    if args.restore:
        from palhm_core.cli.restore import print_restore_plan

        return print_restore_plan(task, args.json)
    if args.json:
        doc = _plan_doc(task)
        nested: dict = {}
        _collect(task, conf.tasks, nested)
        if nested:
            doc["tasks"] = nested
        json.dump(doc, sys.stdout, indent=2)
        print()
    else:
        print(f"{task.id} ({task.name})")
        _print_plan(task, conf.tasks, 1, [task.id])
    return 0


def _lines(steps, depth: int = 0):
    """(depth, step) of every step, a step's own steps after it."""
    for step in steps:
        yield depth, step
        yield from _lines(step.steps, depth + 1)


def _plan_doc(task) -> dict:
    from palhm_core.redact import redact

    steps = ["  " * depth + redact(step.text) for depth, step in _lines(task.plan())]
    return {"task": task.id, "type": task.name, "steps": steps}


def _collect(task, tasks, out: dict) -> None:
    """Every task ``task`` runs through pointers, transitively."""
    for target, _ in task.pointers():
        if target in tasks and target not in out:
            out[target] = _plan_doc(tasks[target])
            _collect(tasks[target], tasks, out)


def _print_plan(task, tasks, depth: int, path: list[str]) -> None:
    """The plan's steps; a task step is followed by that task's plan."""
    from palhm_core.redact import redact

    for level, step in _lines(task.plan(), depth):
        pad = "  " * level
        print(pad + redact(step.text))
        target = tasks.get(step.task) if step.task is not None else None
        if target is not None and target.id not in path:
            print(f"{pad}  {target.id} ({target.name})")
            _print_plan(target, tasks, level + 2, [*path, target.id])
