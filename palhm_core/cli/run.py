"""``palhm run`` and ``palhm plan``."""

from __future__ import annotations

import json
import sys


def add_parsers(sub) -> None:
    p = sub.add_parser("run", help="run a task (default: the task named default)")
    p.add_argument("task", nargs="?", default="default", metavar="TASK")
    p.add_argument("--dry-run", action="store_true",
                   help="run every backup into the null backend: nothing is stored")
    p.set_defaults(func=cmd_run)
    p = sub.add_parser("plan", help="show what a task would run, in order, running nothing")
    p.add_argument("task", nargs="?", default="default", metavar="TASK")
    p.add_argument("--json", action="store_true", help="as JSON")
    p.set_defaults(func=cmd_plan)


def cmd_run(args) -> int:
    from palhm_core.cli import load_config
    from palhm_core.process import Children
    from palhm_core.runner import run_task
    from palhm_core.signals import StopSignals
    from palhm_core.task import RunContext

    plugins, conf, vl = load_config(args)
    task = conf.task(args.task)
    children = Children()
    with StopSignals(children) as signals:
        ctx = RunContext(
            plugins=plugins,
            children=children,
            signals=signals,
            vl=vl,
            nb_workers=conf.nb_workers,
            dry_run=args.dry_run,
        )
        try:
            run_task(task, ctx)
        finally:
            children.stop(grace=2.0)
    return 0


def cmd_plan(args) -> int:
    from palhm_core.cli import load_config

    _, conf, _ = load_config(args)
    task = conf.task(args.task)
    lines = task.plan()
    if args.json:
        json.dump({"task": task.id, "type": task.name, "steps": lines}, sys.stdout, indent=2)
        print()
    else:
        print(f"{task.id} ({task.name})")
        for line in lines:
            print(f"  {line}")
    return 0
